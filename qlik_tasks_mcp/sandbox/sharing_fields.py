"""Sharing-task fields in the sandbox: the checks create and PATCH share, and how each field is stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import local_datetime, rrule_lines, time_zone
from qlik_tasks_mcp.client.sharing_tasks import PATCH_PATHS
from qlik_tasks_mcp.sandbox.core import Sandbox

TEMPLATE_TYPES = {
    "file",
    "chart",
    "story",
    "sheet",
    "multi-sheet",
    "excel",
    "pixel-perfect",
    "html",
    "powerpoint",
    "word",
}
# `/recipient` is in the spec's enum beside `/recipients`; the service treats it as the same field.
PATHS = {p: p[1:] for p in PATCH_PATHS} | {"/recipient": "recipients"}
REMOVABLE = {"description", "sharePointFolder", "dataConnectionID", "bookmarkId", "tags"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def persisted_recipients(value: dict[str, Any]) -> dict[str, Any]:
    """The stored shape of a recipients value given as strings or as objects (`value`, `enabled`, `subscribed`)."""

    def plain(item: Any) -> str:
        return item["value"] if isinstance(item, dict) else item

    def flag(item: Any, *names: str) -> bool:
        found = [item[n] for n in names if isinstance(item, dict) and isinstance(item.get(n), bool)]
        return found[0] if found else True

    out: dict[str, Any] = {
        "userIds": [
            {
                "value": plain(u),
                "enabledByUser": flag(u, "enabledByUser", "enabled"),
                "enabledBySystem": True,
                "subscribed": flag(u, "subscribed"),
                "groups": u.get("groups", []) if isinstance(u, dict) else [],
            }
            for u in value.get("userIds") or []
        ],
        "groupIds": [
            {"value": plain(g), "enabledByUser": flag(g, "enabledByUser", "enabled"), "enabledBySystem": True}
            for g in value.get("groupIds") or []
        ],
        "emailAddresses": [
            {"value": plain(e), "enabled": flag(e, "enabled")} for e in value.get("emailAddresses") or []
        ],
    }
    # Distribution-list members come from the list, not from this call; the service keeps them as sent.
    for key in ("DLUsers", "DLGroups"):
        if value.get(key):
            out[key] = value[key]
    out["netRecipientCount"] = recipient_count(out)
    return out


def recipient_users(task: dict[str, Any]) -> set[str]:
    return {u["value"] for u in (task.get("recipients") or {}).get("userIds") or []}


def recipient_count(recipients: dict[str, Any]) -> int:
    return sum(len(recipients.get(k) or []) for k in ("userIds", "groupIds", "emailAddresses"))


# Field checks, shared by create and patch: each answers with what is wrong, or None.
def _text(limit: int, *, empty: bool = True) -> Callable[[Sandbox, Any], str | None]:
    def check(_: Sandbox, value: Any) -> str | None:
        if not isinstance(value, str) or (not empty and not value.strip()):
            return "must be a non-empty string" if not empty else "must be a string"
        return f"is longer than {limit} characters" if len(value) > limit else None

    return check


def _strings(_: Sandbox, value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    return None if ok else "must be an array of strings"


def _bool(_: Sandbox, value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _object(_: Sandbox, value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _owner(sandbox: Sandbox, value: Any) -> str | None:
    return None if isinstance(value, str) and value in sandbox.users else f"{str(value)[:40]!r} is not a user"


def _channels(_: Sandbox, value: Any) -> str | None:
    if not isinstance(value, list) or not value or not set(value) <= {"email", "sharepoint"}:
        return "must be a non-empty array of email and/or sharepoint"
    return None


def _recipients(sandbox: Sandbox, value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object with userIds, groupIds, emailAddresses"

    def values(key: str) -> list[Any]:
        items = value.get(key) or []
        return [i.get("value") if isinstance(i, dict) else i for i in items] if isinstance(items, list) else [None]

    for user in values("userIds"):
        if user not in sandbox.users:
            return f"userIds: {str(user)[:40]!r} is not a user of this tenant"
    if not all(isinstance(g, str) and g for g in values("groupIds")):
        return "groupIds: every value must be a non-empty group id"
    for email in values("emailAddresses"):
        if not isinstance(email, str) or not EMAIL.match(email):
            return f"emailAddresses: {str(email)[:60]!r} is not an email address"
    return None


def _templates(sandbox: Sandbox, value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(t, dict) for t in value):
        return "must be a non-empty array of templates"
    for index, template in enumerate(value):
        if template.get("type") not in TEMPLATE_TYPES:
            return f"[{index}].type must be one of {', '.join(sorted(TEMPLATE_TYPES))}"
        if "templateId" in template:
            return f"[{index}].templateId is read-only"
        app = template_app(template)
        if app is None or app not in sandbox.apps:
            return f"[{index}] refers to app {app!r}, which does not exist"
    return None


def template_app(template: dict[str, Any]) -> str | None:
    for key in ("chartData", "sheetData", "storyData"):
        if isinstance(template.get(key), dict) and template[key].get("appId"):
            return template[key]["appId"]
    sheets = template.get("multiSheetData")
    return sheets[0].get("appId") if isinstance(sheets, list) and sheets and isinstance(sheets[0], dict) else None


def _schedule(_: Sandbox, value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    lines = value.get("recurrence") or []
    if not isinstance(lines, list) or not 1 <= len(lines) <= 5 or not all(isinstance(x, str) for x in lines):
        return "recurrence must hold 1 to 5 RRULE strings"
    if any("UNTIL=" in x.upper() for x in lines):
        return "recurrence must not contain UNTIL; use endDateTime"
    try:
        rrule_lines(lines)
        time_zone(value.get("timezone") or "")
        for key in ("startDateTime", "endDateTime"):
            if value.get(key):
                local_datetime(value[key], key)
    except InvalidInput as exc:
        return str(exc)
    return None


CHECKS: dict[str, Callable[[Sandbox, Any], str | None]] = {
    "name": _text(255, empty=False),
    "description": _text(255),
    "message": _text(280),
    "tags": _strings,
    "ownerId": _owner,
    "enabled": _bool,
    "executeOnCreation": _bool,
    "scheduleOptions": _schedule,
    "templates": _templates,
    "recipients": _recipients,
    "sharePointFolder": _text(1000),
    "dataConnectionID": _text(128),
    "bookmarkId": _text(128),
    "transportChannels": _channels,
    "state": _object,
    "trigger": _object,
    "emailContent": _object,
    "retentionPolicy": _object,
}


def set_field(sandbox: Sandbox, task: dict[str, Any], name: str, value: Any) -> None:
    if name == "enabled":
        task["enabled"] = task["enabledByUser"] = value
        if value:
            task["enabledBySystem"] = True
    elif name == "ownerId":
        task["owner"], task["ownerName"] = value, sandbox.users[value].name
    elif name == "recipients":
        task["recipients"] = persisted_recipients(value)
    elif name == "scheduleOptions":
        keys = ("timezone", "recurrence", "startDateTime", "endDateTime")
        task["scheduleOptions"] = {k: value[k] for k in keys if k in value}
        task.setdefault("trigger", {})["recurrence"] = list(value["recurrence"])
    elif name == "templates":
        task["templates"] = [t | {"fileAlias": t.get("fileAlias") or sandbox.hex_id(16)} for t in value]
        task["appId"] = template_app(value[0]) or task["appId"]
        task["appName"] = sandbox.apps[task["appId"]].name
    else:
        task[name] = value


def whole_problem(task: dict[str, Any], max_recipients: int) -> str | None:
    """What the task as a whole would get wrong once every field is set."""
    if "sharepoint" in (task.get("transportChannels") or []) and not (
        task.get("sharePointFolder") and task.get("dataConnectionID")
    ):
        return "transportChannels sharepoint needs sharePointFolder and dataConnectionID"
    count = recipient_count(task.get("recipients") or {})
    if count > max_recipients:
        return f"{count} recipients exceed the tenant's maxRecipients of {max_recipients}"
    trigger = task.get("trigger") or {}
    if not (task.get("scheduleOptions") or {}).get("recurrence") and not trigger.get("executeOnAppReload"):
        return "a task needs scheduleOptions.recurrence or trigger.executeOnAppReload"
    return None


def patch_problem(sandbox: Sandbox, ops: Any) -> str | None:
    if not isinstance(ops, list) or not ops:
        return "body must be a non-empty JSON Patch array"
    for index, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in ("replace", "remove"):
            return f"[{index}].op must be replace or remove"
        name = PATHS.get(op.get("path", ""))
        if name is None:
            return f"[{index}].path {str(op.get('path'))[:40]!r} is not one of {', '.join(PATHS)}"
        if op["op"] == "remove":
            if name not in REMOVABLE:
                return f"[{index}]: {op['path']} cannot be removed, only replaced"
        elif "value" not in op:
            return f"[{index}]: replace {op['path']} needs a value"
        else:
            problem = CHECKS[name](sandbox, op["value"])
            if problem:
                return f"[{index}] {op['path']}: {problem}"
    return None
