"""Sharing-task fields in the sandbox: the checks create and PATCH share, and how each field is stored.

A body's shape is checked against sharing-tasks.json before these run (core.guarded, and each PATCH value
against the create schema's field its path names); what is left here is what a schema cannot say, taken from
the spec's descriptions: users and apps that exist, RRULE lines (1 to 5, no DTSTART/DTEND/UNTIL/RDATE/EXDATE/
EXRULE), start and end local without an offset, a template's app.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from qlik_tasks_mcp.sandbox import contract
from qlik_tasks_mcp.sandbox.core import Sandbox
from qlik_tasks_mcp.sandbox.schedule import recurrence_problem, wall_clock, zone_of

SPEC = "sharing-tasks.json"
CREATE = "SharingTaskRecurringCreateRequest"
PATCH_PATHS = contract.enum(SPEC, "SharingTaskRecurringPatchRequestCompliant", "path")
# `/recipient` is in the spec's enum beside `/recipients`; the service treats it as the same field.
PATHS = {p: p[1:] for p in PATCH_PATHS} | {"/recipient": "recipients"}
REMOVABLE = {"description", "sharePointFolder", "dataConnectionID", "bookmarkId", "tags"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OFFSET = re.compile(r"(Z|[+-]\d{2}(:?\d{2})?)$")
UNSUPPORTED_LINES = ("DTSTART", "DTEND", "RDATE", "EXDATE", "EXRULE")


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
def _owner(sandbox: Sandbox, value: Any) -> str | None:
    return None if isinstance(value, str) and value in sandbox.users else f"{str(value)[:40]!r} is not a user"


def _recipients(sandbox: Sandbox, value: Any) -> str | None:
    def values(key: str) -> list[Any]:
        items = value.get(key) or []
        return [i.get("value") if isinstance(i, dict) else i for i in items] if isinstance(items, list) else [None]

    for user in values("userIds"):
        if user not in sandbox.users:
            return f"userIds: {str(user)[:40]!r} is not a user of this tenant"
    if not all(isinstance(g, str) and g for g in values("groupIds")):
        return "groupIds: every value must be a non-empty group id"
    for email in values("emailAddresses"):
        # The spec's `format: email`.
        if not isinstance(email, str) or not EMAIL.match(email):
            return f"emailAddresses: {str(email)[:60]!r} is not an email address"
    return None


def _templates(sandbox: Sandbox, value: Any) -> str | None:
    if not value:
        return "must name at least one template"
    for index, template in enumerate(value):
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
    lines = value.get("recurrence") or []
    if not 1 <= len(lines) <= 5:
        return "recurrence must hold 1 to 5 RRULE lines"
    if any("UNTIL=" in x.upper() or x.strip().upper().startswith(UNSUPPORTED_LINES) for x in lines):
        return "recurrence takes RRULE lines without UNTIL (DTSTART, DTEND, RDATE, EXDATE, EXRULE are not supported)"
    problem = recurrence_problem(lines)
    if problem:
        return problem
    zone = zone_of(value.get("timezone") or "UTC")
    if zone is None:
        return f"timezone {str(value.get('timezone'))[:60]!r} is not an IANA time zone name"
    for key in ("startDateTime", "endDateTime"):
        text = value.get(key)
        if text and (OFFSET.search(text) or wall_clock(text, zone) is None):
            return f"{key} {text[:40]!r} must be a local date-time without offset, like 2026-01-02T16:04:05"
    return None


CHECKS: dict[str, Callable[[Sandbox, Any], str | None]] = {
    "ownerId": _owner,
    "scheduleOptions": _schedule,
    "templates": _templates,
    "recipients": _recipients,
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
    elif name == "tags":
        # The spec's PATCH example replaces /tags with one tag as well as with a list.
        task["tags"] = [value] if isinstance(value, str) else value
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


def patch_problem(sandbox: Sandbox, ops: list[dict[str, Any]]) -> str | None:
    """What the operations' values get wrong (their shape is the patch schema's, already checked)."""
    if not ops:
        return "body must be a non-empty JSON Patch array"
    for index, op in enumerate(ops):
        name = PATHS[op["path"]]
        if op["op"] == "remove":
            if name not in REMOVABLE:
                return f"[{index}]: {op['path']} cannot be removed, only replaced"
            continue
        if "value" not in op:
            return f"[{index}]: replace {op['path']} needs a value"
        problem = value_problem(sandbox, name, op["value"])
        if problem:
            return f"[{index}] {op['path']}: {problem}"
    return None


def value_problem(sandbox: Sandbox, name: str, value: Any) -> str | None:
    """`value` for field `name`: the create schema's field (widened by the PATCH example), then its meaning."""
    if name in contract.properties(SPEC, CREATE):
        found = contract.field_problems(SPEC, CREATE, name, value)
        if found and not (name == "tags" and isinstance(value, str)):
            return "; ".join(found)
    elif name in ("ownerId", "bookmarkId") and not (isinstance(value, str) and value):
        return "must be a non-empty string"
    check = CHECKS.get(name)
    return check(sandbox, value) if check else None
