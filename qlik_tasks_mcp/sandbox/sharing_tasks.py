"""Sandbox `/api/v1/sharing-tasks`: report subscriptions, chart sharing and monitoring, executions, settings.

Executions are simulated like workflow runs (sandbox/tasks.py): executing stores one execution per recipient
with its start, length and outcome fixed up front, and every read derives the status from the sandbox clock.
Delivery to an address on a `.invalid` domain fails (`REPORT-SEND-FAILED`); every other recipient is served.
A task read shows its deliveries' outcome the way the spec describes it (see `delivery_fields`).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import contract
from qlik_tasks_mcp.sandbox.contract import SHARING_ERRORS as fail
from qlik_tasks_mcp.sandbox.core import TENANT_ID, Sandbox, guarded, json_body, now_ms, stamp
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit, self_link
from qlik_tasks_mcp.sandbox.schedule import next_occurrence, utc_z, wall_clock, zone_of
from qlik_tasks_mcp.sandbox.sharing_fields import (
    CREATE,
    PATHS,
    SPEC,
    patch_problem,
    persisted_recipients,
    recipient_users,
    set_field,
    value_problem,
    whole_problem,
)

BASE = "/api/v1/sharing-tasks"
TABLE = "sharing"
DEFAULT_RUN_SECONDS = 1.0
DEFAULT_MAX_RECIPIENTS = 100
FILE_TYPES = {"pdf", "pptx", "xlsx", "html", "docx", "image"}
TYPES = contract.enum(SPEC, CREATE, "type")
# Fields a create stores through set_field; `enabled` and `executeOnCreation` are applied on their own.
STORED = tuple(k for k in contract.writable(SPEC, CREATE) if k not in ("enabled", "executeOnCreation", "type"))
TASK_CURSORS = Cursors(next="page", prev="prev", offset=True)
EXECUTION_CURSORS = Cursors(next="next", prev="prev", offset=True)
TASK_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "name": lambda t: t["name"].casefold(),
    "datecreated": lambda t: t.get("dateCreated", ""),
    "ownername": lambda t: t.get("ownerName", "").casefold(),
    "enabled": lambda t: bool(t.get("enabled")),
    "status": lambda t: t.get("statusCode", ""),
    "type": lambda t: t["type"],
    "sent": lambda t: t.get("lastExecutionDate", ""),
    "scheduled": lambda t: t.get("_next", ""),
    "appname": lambda t: t.get("appName", "").casefold(),
    "appid": lambda t: t.get("appId", ""),
}
# A 1x1 PNG: what a chart image of the sandbox looks like.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass
class SharingTables:
    """This family's state. `executions` maps a task id to its executions, newest first."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    run_seconds: float = DEFAULT_RUN_SECONDS


def tables(sandbox: Sandbox) -> SharingTables:
    found = sandbox.tables.get(TABLE)
    if not isinstance(found, SharingTables):
        found = sandbox.tables[TABLE] = SharingTables()
        found.settings = {
            "enable-sharing": True,
            "enable-report-subscription": True,
            "maxSubscriptionRecipients": DEFAULT_MAX_RECIPIENTS,
            "reportSubscriptionStatus": "none",
            "reporting-service-license-status": "enabled",
            "reportSubscriptionStatusChangeTime": "2026-01-12T09:30:00.000Z",
        }
    return found


# Executions ---------------------------------------------------------------------------------------


def targets(task: dict[str, Any]) -> list[tuple[str, str]]:
    """Who one execution serves: every recipient that is switched on."""
    recipients = task.get("recipients") or {}
    out = [
        ("user", u["value"])
        for u in recipients.get("userIds") or []
        if u.get("enabledByUser", True) and u.get("enabledBySystem", True)
    ]
    out += [("group", g["value"]) for g in recipients.get("groupIds") or [] if g.get("enabledByUser", True)]
    out += [("email", e["value"]) for e in recipients.get("emailAddresses") or [] if e.get("enabled", True)]
    return out


def delivery_error(kind: str, value: str) -> dict[str, str] | None:
    if kind == "email" and value.lower().rsplit(".", 1)[-1] == "invalid":
        return {
            "code": "REPORT-SEND-FAILED",
            "title": "Email delivery failed",
            "detail": f"The mail server rejected {value}: domain does not exist",
        }
    return None


def start_execution(
    sandbox: Sandbox,
    task: dict[str, Any],
    *,
    at: datetime | None = None,
    seconds: float | None = None,
    error: dict[str, str] | None = None,
    every_delivery: bool = False,
) -> list[dict[str, Any]]:
    """One execution per recipient, sharing a workflow id; `error` makes the first of them fail, or every one with
    `every_delivery` (seeding)."""
    st = tables(sandbox)
    at = at or sandbox.clock.now()
    workflow = sandbox.uuid()
    made = []
    for index, (kind, value) in enumerate(targets(task)):
        failure = delivery_error(kind, value) or (error if index == 0 or every_delivery else None)
        made.append(
            {
                "id": sandbox.hex_id(),
                "sharingTaskID": task["id"],
                "appId": task["appId"],
                "ownerId": task["owner"],
                "tenantId": TENANT_ID,
                "workflowID": workflow,
                "eventID": sandbox.uuid(),
                "eventTime": stamp(at),
                "targetUser": {"type": kind, "value": value},
                "_start": at,
                "_seconds": st.run_seconds if seconds is None else seconds,
                "_error": failure,
                "_cancelled": None,
                "_files": [
                    {
                        "type": t.get("subType") if t.get("subType") in FILE_TYPES else "pdf",
                        "fileID": sandbox.hex_id(),
                        "fileAlias": sandbox.hex_id(16),
                        "templateId": sandbox.uuid(),
                    }
                    for t in task.get("templates") or []
                ],
            }
        )
    history = st.executions.setdefault(task["id"], [])
    history[:0] = reversed(made)
    history.sort(key=lambda e: e["_start"], reverse=True)
    task["lastRun"] = task["lastExecutionDate"] = stamp(max(at, _parse(task.get("lastExecutionDate")) or at))
    return made


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def execution_status(execution: dict[str, Any], now: datetime) -> str:
    end = execution["_start"] + timedelta(seconds=execution["_seconds"])
    if execution["_cancelled"] is not None:
        return "cancelled"
    if now < end:
        return "in-progress"
    return "failed" if execution["_error"] else "successful"


def public_execution(execution: dict[str, Any], now: datetime, request: Request | None = None) -> dict[str, Any]:
    out = {k: v for k, v in execution.items() if not k.startswith("_")}
    status = out["status"] = execution_status(execution, now)
    out["startTime"] = stamp(execution["_start"])
    end = stamp(execution["_start"] + timedelta(seconds=execution["_seconds"]))
    total = len(execution["_files"])
    counts = {"successCount": 0, "failedCount": 0, "cancelledCount": 0}
    if status == "cancelled":
        out["cancelledTime"] = stamp(execution["_cancelled"])
        counts["cancelledCount"] = total
    elif status == "successful":
        out["endTime"] = end
        out["files"] = [dict(f) for f in execution["_files"]]
        counts["successCount"] = total
    elif status == "failed":
        out["endTime"] = out["failedTime"] = end
        out["errors"] = [dict(execution["_error"])]
        counts["failedCount"] = total
    out |= {"totalCount": total} | counts
    if request is not None:
        out["links"] = self_link(request, f"{BASE}/{execution['sharingTaskID']}/executions/{execution['id']}")
    return out


# What the spec says a task shows of its deliveries (sharing-tasks.json, SharingTaskRecurringPersist and the
# recipient models), which `show_deliveries` follows:
# - failedExecutionsCount: "the number of consecutive failed executions for all recipients. This is reset on a
#   successful execution for at least one recipient" -> counts the latest runs in which no delivery succeeded.
# - taskRecipientErrors (users, e-mail addresses): "type of error occurring on sharing task specific for
#   recipient"; GENERIC_EXECUTION_FAILURE is its one value for a failed delivery. A recipient carries it while its
#   latest delivery failed: the spec does not say what clears it, and a later delivery that reached the recipient
#   is taken to. Errors of other values (a deleted user, an unsubscribe) are the tenant's and stay.
# - taskGroupRecipientErrors has no value for a failed delivery (only a group's own state), so a delivery that
#   failed for a group alone shows on the task only through failedExecutionsCount, when every delivery failed.
# - statusCode FAILED, statusLabel "error message indicating the underlying failure": while the latest run failed
#   for every recipient; VALID again after a success. Other codes (DELETING, MAX_FAILURES_REACHED, ...) are the
#   tenant's own state and stay as stored.
DELIVERY_FAILED = "GENERIC_EXECUTION_FAILURE"
DELIVERY_STATUSES = ("VALID", "FAILED")


def show_deliveries(task: dict[str, Any], history: list[dict[str, Any]], now: datetime) -> None:
    """Set failedExecutionsCount, the recipients' delivery errors and the delivery status on `task` (a public
    copy) from its executions that have ended by `now`."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for execution in reversed(history):  # oldest first
        runs.setdefault(execution["workflowID"], []).append(execution)
    in_a_row, last_error = 0, None
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs.values():
        statuses = [execution_status(e, now) for e in run]
        if "in-progress" in statuses:
            continue
        ended = [e for e, status in zip(run, statuses, strict=True) if status != "cancelled"]
        failed = [e for e in ended if e["_error"]]
        # A cancelled delivery neither fails nor succeeds: a run none of whose deliveries ended changes nothing.
        if failed and len(failed) == len(ended):
            in_a_row, last_error = in_a_row + 1, failed[0]["_error"]
        elif ended:
            in_a_row, last_error = 0, None
        latest |= {(e["targetUser"]["type"], e["targetUser"]["value"]): e for e in ended}
    task["failedExecutionsCount"] = in_a_row
    _mark_recipient_errors(task.get("recipients") or {}, latest)
    if task.get("statusCode", "VALID") in DELIVERY_STATUSES:
        task["statusCode"] = "FAILED" if last_error else "VALID"
        task.pop("statusLabel", None)
        if last_error:
            task["statusLabel"] = last_error["title"]


def _mark_recipient_errors(recipients: dict[str, Any], latest: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Each user and address whose latest delivery (in `latest`) failed carries the spec's error for it."""
    for key, kind in (("userIds", "user"), ("emailAddresses", "email")):
        for entry in recipients.get(key) or []:
            kept = [e for e in entry.get("taskRecipientErrors") or [] if e.get("value") != DELIVERY_FAILED]
            last = latest.get((kind, entry["value"]))
            if last is not None and last["_error"]:
                ended = last["_start"] + timedelta(seconds=last["_seconds"])
                kept.append({"value": DELIVERY_FAILED, "timestamp": stamp(ended)})
            if kept or "taskRecipientErrors" in entry:
                entry["taskRecipientErrors"] = kept


def public_executions(sandbox: Sandbox, task: dict[str, Any]) -> list[dict[str, Any]]:
    now = sandbox.clock.now()
    return [public_execution(e, now) for e in tables(sandbox).executions.get(task["id"], [])]


# Tasks ----------------------------------------------------------------------------------------------


def next_run(sandbox: Sandbox, task: dict[str, Any]) -> str | None:
    schedule = task.get("scheduleOptions") or {}
    zone = zone_of(schedule.get("timezone") or "UTC")
    if not schedule.get("recurrence") or not task.get("enabled") or task.get("statusCode") == "DELETING" or not zone:
        return None
    start, end = wall_clock(schedule.get("startDateTime"), zone), wall_clock(schedule.get("endDateTime"), zone)
    run = next_occurrence(schedule["recurrence"], zone, start, end, sandbox.clock.now())
    return utc_z(run) if run else None


def public_task(sandbox: Sandbox, task: dict[str, Any], request: Request) -> dict[str, Any]:
    out = {k: v for k, v in copy.deepcopy(task).items() if not k.startswith("_")}
    show_deliveries(out, tables(sandbox).executions.get(task["id"], []), sandbox.clock.now())
    upcoming = next_run(sandbox, task)
    if upcoming:
        out["nextScheduledRun"] = upcoming
    if out.get("scheduleOptions"):
        out["scheduleOptions"] |= {"nextExecutionTime": upcoming, "lastExecutionTime": task.get("lastExecutionDate")}
    out["links"] = self_link(request, f"{BASE}/{task['id']}")
    return out


# Routes ---------------------------------------------------------------------------------------------


def routes(sandbox: Sandbox) -> list[Route]:
    st = tables(sandbox)

    def may_change(task: dict[str, Any]) -> bool:
        caller = sandbox.caller()
        return caller.admin or task["owner"] == caller.id

    def may_see(task: dict[str, Any]) -> bool:
        return may_change(task) or sandbox.caller_id in recipient_users(task)

    def task_of(request: Request, *, change: bool = False, task_id: str | None = None) -> dict[str, Any] | Response:
        task_id = task_id or str(request.path_params["taskId"])
        task = st.tasks.get(task_id)
        if task is None:
            return fail(404, f"sharing task {task_id} not found")
        if not (may_change(task) if change else may_see(task)):
            return fail(403, "only the task's owner or a TenantAdmin may do this")
        if change and task.get("statusCode") == "DELETING":
            return fail(400, "the sharing task is being deleted")
        return task

    def paged(
        request: Request,
        items: list[dict[str, Any]],
        render: Callable[[dict[str, Any]], dict[str, Any]],
        key: str,
        maximum: int,
        cursors: Cursors,
        keep: dict[str, Any],
    ) -> Response:
        """One page of `items` with `totalCount` and absolute links."""
        limit = parse_limit(request.query_params.get("limit"), 20, maximum)
        if limit is None:
            return fail(400, f"limit must be an integer from 1 to {maximum}")
        page = paginate(request, items, limit, cursors, keep)
        if isinstance(page, str):
            return fail(400, page)
        shown = [render(item) for item in page.items]
        body = {key: shown, "totalCount": len(items), "currentPageCount": len(shown), "links": page.links}
        return JSONResponse(body)

    async def list_tasks(request: Request) -> Response:
        q = request.query_params
        caller = sandbox.caller()
        types, roles, sorts = q.getlist("type"), q.getlist("role"), q.getlist("sort") or ["+name"]
        if not set(types) <= set(TYPES) or not set(roles) <= {"owner", "recipient"}:
            return fail(400, f"type must be among {', '.join(TYPES)} and role among owner, recipient")
        if any(s.lstrip("+-") not in TASK_SORTS for s in sorts):
            return fail(400, f"sort must be among {', '.join(TASK_SORTS)}, optionally prefixed by + or -")
        if set(types) == {"template-sharing"} and not caller.admin and not q.get("appid"):
            return fail(400, "appid is required to list template-sharing tasks unless you are a TenantAdmin")
        items: list[dict[str, Any]] = [t | {"_next": next_run(sandbox, t) or ""} for t in st.tasks.values()]
        if q.get("appid"):
            items = [t for t in items if t["appId"] == q["appid"]]
        if not caller.admin:
            items = [t for t in items if may_see(t)]
        if roles:
            items = [
                t
                for t in items
                if ("owner" in roles and t["owner"] == caller.id)
                or ("recipient" in roles and caller.id in recipient_users(t))
            ]
        items = [t for t in items if not types or t["type"] in types]
        items = [t for t in items if not q.get("owner") or t["owner"] == q["owner"]]
        items = [t for t in items if not q.get("ownername") or t.get("ownerName") == q["ownername"]]
        wanted = set(q.getlist("templateId"))
        items = [t for t in items if not wanted or wanted & {x.get("templateId") for x in t["templates"]}]
        if q.get("excludeDeleting", "false").lower() == "true":
            items = [t for t in items if t.get("statusCode") != "DELETING"]
        for sort in reversed(sorts):
            items.sort(key=TASK_SORTS[sort.lstrip("+-")], reverse=sort.startswith("-"))
        kept = ("appid", "owner", "ownername", "role", "type", "templateId", "excludeDeleting", "sort")
        keep = {k: q.getlist(k) for k in kept}
        return paged(
            request, items, lambda t: public_task(sandbox, t, request), "sharingTasks", 100, TASK_CURSORS, keep
        )

    async def create(request: Request) -> Response:
        body = await json_body(request)
        if body["type"] == "template-sharing":
            return fail(
                400, "template-sharing tasks are made from a report template in Qlik Cloud, not through this API"
            )
        for name in STORED:
            problem = value_problem(sandbox, name, body[name]) if name in body else None
            if problem:
                return fail(400, f"{name} {problem}")
        caller, now = sandbox.caller(), now_ms(sandbox)
        task_id = sandbox.hex_id()
        task: dict[str, Any] = {
            "id": task_id,
            "type": body["type"],
            "tenant": TENANT_ID,
            "owner": caller.id,
            "ownerName": caller.name,
            "createdBy": caller.id,
            "updatedBy": caller.id,
            "dateCreated": now,
            "lastUpdated": now,
            "statusCode": "VALID",
            "enabledBySystem": True,
            "trigger": {"recurrence": [], "executeOnAppReload": False},
            "recipients": persisted_recipients({}),
            "transportChannels": ["email"],
            "encryptedState": {
                "value": base64.b64encode(sandbox.hex_id(32).encode()).decode(),
                "cipher": "AES-256-GCM",
            },
            "insightID": sandbox.hex_id(),
            "byokMigrationId": "",
        }
        for name in STORED:
            if name in body:
                set_field(sandbox, task, name, body[name])
        set_field(sandbox, task, "enabled", body.get("enabled", True))
        task["spaceId"] = sandbox.apps[task["appId"]].space_id
        task["thumbnail"] = f"{BASE}/{task_id}/thumbnail"
        problem = whole_problem(task, st.max_recipients)
        if problem:
            return fail(400, problem)
        st.tasks[task_id] = task
        if body.get("executeOnCreation", True) and task["enabled"] and targets(task):
            start_execution(sandbox, task)
        return JSONResponse(public_task(sandbox, task, request), status_code=201)

    async def get_one(request: Request) -> Response:
        task = task_of(request)
        return task if isinstance(task, Response) else JSONResponse(public_task(sandbox, task, request))

    async def patch_one(request: Request) -> Response:
        task = task_of(request, change=True)
        if isinstance(task, Response):
            return task
        ops = await json_body(request)
        problem = patch_problem(sandbox, ops)
        changed = copy.deepcopy(task)
        if problem is None:
            for op in ops:
                name = PATHS[op["path"]]
                if op["op"] == "remove":
                    changed.pop(name, None)
                else:
                    set_field(sandbox, changed, name, op["value"])
            problem = whole_problem(changed, st.max_recipients)
        if problem:
            return fail(400, f"nothing was changed: {problem}")
        changed |= {"lastUpdated": now_ms(sandbox), "updatedBy": sandbox.caller_id}
        task.clear()
        task.update(changed)
        return Response(status_code=204)

    async def delete_one(request: Request) -> Response:
        task = task_of(request, change=True)
        if isinstance(task, Response):
            return task
        st.tasks.pop(task["id"])
        st.executions.pop(task["id"], None)
        return Response(status_code=204)

    async def execute(request: Request) -> Response:
        task_id = (await json_body(request))["sharingTaskID"]
        task = task_of(request, change=True, task_id=task_id)
        if isinstance(task, Response):
            return task
        if not task.get("enabled"):
            return fail(400, "the sharing task is disabled; enable it before executing it")
        if not targets(task):
            return fail(400, "the sharing task has no enabled recipients")
        start_execution(sandbox, task)
        return Response(status_code=204)

    async def cancel(request: Request) -> Response:
        task = task_of(request, change=True)
        if isinstance(task, Response):
            return task
        now = sandbox.clock.now()
        running = [e for e in st.executions.get(task["id"], []) if execution_status(e, now) == "in-progress"]
        if not running:
            return fail(400, "the sharing task has no execution in progress")
        for execution in running:
            execution["_cancelled"] = now
        return Response(status_code=204)

    async def executions(request: Request) -> Response:
        task = task_of(request)
        if isinstance(task, Response):
            return task
        q, now = request.query_params, sandbox.clock.now()
        sorts, status = q.getlist("sort") or ["-starttime"], q.get("status")
        if not set(sorts) <= {"starttime", "+starttime", "-starttime"} or status not in (None, "successful", "failed"):
            return fail(400, "sort must be starttime, +starttime or -starttime; status successful or failed")
        items = [public_execution(e, now, request) for e in st.executions.get(task["id"], [])]
        items = [e for e in items if status is None or e["status"] == status]
        items.sort(key=lambda e: e["startTime"], reverse=sorts[0] == "-starttime")
        return paged(
            request, items, lambda e: e, "executions", 200, EXECUTION_CURSORS, {"sort": sorts, "status": status}
        )

    def execution_of(request: Request) -> dict[str, Any] | Response:
        task = task_of(request)
        if isinstance(task, Response):
            return task
        wanted = request.path_params["executionId"]
        found = next((e for e in st.executions.get(task["id"], []) if e["id"] == wanted), None)
        return found if found is not None else fail(404, f"execution {wanted} not found")

    async def execution(request: Request) -> Response:
        found = execution_of(request)
        if isinstance(found, Response):
            return found
        return JSONResponse(public_execution(found, sandbox.clock.now(), request))

    async def file(request: Request) -> Response:
        found = execution_of(request)
        if isinstance(found, Response):
            return found
        alias = request.path_params["fileAlias"]
        done = execution_status(found, sandbox.clock.now()) == "successful"
        if not done or alias not in {f["fileAlias"] for f in found["_files"]}:
            return fail(404, f"file {alias} not found in this execution")
        return Response(PNG, media_type="image/png")

    async def get_settings(_: Request) -> Response:
        body = {"tenantId": TENANT_ID, "maxRecipients": st.max_recipients} | st.settings
        return JSONResponse(body)

    async def patch_settings(request: Request) -> Response:
        if not sandbox.caller().admin:
            return fail(403, "only a TenantAdmin may change sharing settings")
        ops = await json_body(request)
        # Both settings are booleans (SharingSettings), as the spec's patch example sends them.
        if not ops or not all(isinstance(o.get("value"), bool) for o in ops):
            return fail(400, "body must be one or more replace operations, each with a value of true or false")
        for op in ops:
            key = op["path"][1:]
            if key == "enable-report-subscription" and st.settings[key] != op["value"]:
                st.settings["reportSubscriptionStatusChangeTime"] = now_ms(sandbox)
            st.settings[key] = op["value"]
        return Response(status_code=204)

    async def put_settings(request: Request) -> Response:
        if not sandbox.caller().admin:
            return fail(403, "only a TenantAdmin may change sharing settings")
        body = await json_body(request)
        # The schema marks maxRecipients readOnly: a request that sets it is refused, not ignored.
        if "maxRecipients" in body:
            return fail(400, "maxRecipients is read-only")
        st.settings["enable-sharing"] = body["enable-sharing"]
        return Response(status_code=204)

    def g(tier: str, handler: Any, *, settings: bool = False, body: str | None = None) -> Any:
        async def sharing_on(request: Request) -> Response:
            if not settings and not st.settings["enable-sharing"]:
                return fail(403, "sharing is disabled on this tenant (settings enable-sharing is false)")
            return await handler(request)

        return guarded(sandbox, tier, fail, sharing_on, body=contract.checker(SPEC, body) if body else None)

    one = BASE + "/{taskId}"
    return [
        Route(BASE, g("1", list_tasks), methods=["GET"]),
        Route(BASE, g("2", create, body=CREATE), methods=["POST"]),
        Route(BASE + "/settings", g("1", get_settings, settings=True), methods=["GET"]),
        Route(
            BASE + "/settings",
            g("2", patch_settings, settings=True, body="SharingSettingsPatchCompliantList"),
            methods=["PATCH"],
        ),
        Route(BASE + "/settings", g("2", put_settings, settings=True, body="APISettingsUpload"), methods=["PUT"]),
        Route(BASE + "/actions/execute", g("2", execute, body="SharingActionsTriggerCreateRequest"), methods=["POST"]),
        Route(one, g("1", get_one), methods=["GET"]),
        Route(one, g("2", patch_one, body="SharingTaskPatchRequestCompliantList"), methods=["PATCH"]),
        Route(one, g("2", delete_one), methods=["DELETE"]),
        Route(one + "/actions/cancel", g("2", cancel), methods=["POST"]),
        Route(one + "/executions", g("1", executions), methods=["GET"]),
        Route(one + "/executions/{executionId}", g("1", execution), methods=["GET"]),
        Route(one + "/executions/{executionId}/files/{fileAlias}", g("1", file), methods=["GET"]),
    ]
