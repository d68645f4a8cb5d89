"""The sandbox as a Qalyptus Cloud tenant: organizations, each on its own host and API key (seeded in qalyptus_seed).

Every answer is the `{data, isSuccess, error, errorDetails}` envelope with the field names seen live
(misspellings included: timeZoneOfset, atMinut); request bodies are checked against qalyptus_contract. Paths
follow the table in specs/qalyptus/NOTES.md (verified and inferred); a path in
`QalyptusTables.unserved` answers a bare 404, like a tenant where an inferred path does not exist.

Beyond tasks, schedules and runs it keeps each task's e-mail, recipients, reports and Qlik external events, the
organization's users, groups and projects, and on-demand requests (a report generated on demand, followed like a
run, ending with a download link); refusals a tenant would give come as `isSuccess: false`, some on HTTP 200.

Runs are simulated without background work: a run stores its creation time, queue and run lengths and its
outcome up front, and every read derives queued -> running -> Completed/Warning/Failed (or Aborted once
stopped) from the sandbox clock, so reads never change state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Host, Route, Router

from qlik_tasks_mcp.sandbox import qalyptus_contract as contract
from qlik_tasks_mcp.sandbox.contract import TITLES
from qlik_tasks_mcp.sandbox.core import QALYPTUS_HOST, Handler, Sandbox, guarded, json_body, stamp
from qlik_tasks_mcp.sandbox.core import QALYPTUS_SANDBOX_KEY as QALYPTUS_SANDBOX_KEY
from qlik_tasks_mcp.sandbox.core import QALYPTUS_SANDBOX_URL as QALYPTUS_SANDBOX_URL
from qlik_tasks_mcp.sandbox.schedule import zone_of

# A second organization, for choosing between organizations; its key reaches only it.
EU_HOST = "sandbox-eu.qalyptus.invalid"
EU_URL = f"https://{EU_HOST}/api/v1"
EU_KEY = "sandbox-qalyptus-eu-key-not-a-secret-0000"
PREFIX = "/api/v1"
TABLE = "qalyptus"
# Real report runs take minutes; the sandbox compresses them (tests make them shorter still).
DEFAULT_QUEUE_SECONDS = 0.4
DEFAULT_RUN_SECONDS = 1.2
ACTIVE = ("Queued", "Running")


@dataclass
class Org:
    name: str
    host: str
    api_key: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recipients: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    triggers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How each task's runs end (Completed, Warning or Failed): the simulation's choice, never served.
    outcomes: dict[str, str] = field(default_factory=dict)
    # The organization's Qalyptus users (GET /users); a task may still name an owner who is no longer one.
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each task's e-mail ("Get task email").
    emails: dict[str, dict[str, Any]] = field(default_factory=dict)
    # On-demand requests, simulated like task runs (their own table: the scheduled status list leaves them out).
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How a report's on-demand runs end, by report id (the simulation's choice, never served).
    report_outcomes: dict[str, str] = field(default_factory=dict)


@dataclass
class QalyptusTables:
    orgs: dict[str, Org] = field(default_factory=dict)
    queue_seconds: float = DEFAULT_QUEUE_SECONDS
    run_seconds: float = DEFAULT_RUN_SECONDS
    unserved: set[str] = field(default_factory=set)

    def org(self, host: str = QALYPTUS_HOST) -> Org:
        return self.orgs[host]


def tables(sandbox: Sandbox) -> QalyptusTables:
    found = sandbox.tables.get(TABLE)
    if not isinstance(found, QalyptusTables):
        found = sandbox.tables[TABLE] = QalyptusTables()
    return found


def ok(data: Any) -> Response:
    return JSONResponse({"data": data, "isSuccess": True, "error": None, "errorDetails": None})


def refuse(status: int, error: str, details: str | None = None) -> Response:
    return JSONResponse({"data": None, "isSuccess": False, "error": error, "errorDetails": details}, status)


def refused(status: int, details: str) -> Response:
    """The envelope with the status's own title: the error writer for auth, limits and body schemas."""
    return refuse(status, TITLES.get(status, "Error"), details)


# Runs ------------------------------------------------------------------------------------------------


def run_start(run: dict[str, Any]) -> datetime:
    return run["_created"] + timedelta(seconds=run["_queue"])


def run_end(run: dict[str, Any]) -> datetime:
    return run_start(run) + timedelta(seconds=run["_seconds"])


def run_status(run: dict[str, Any], now: datetime) -> str:
    stopped = run["_stopped"]
    if stopped is not None and stopped < run_end(run) and now >= stopped:
        return "Aborted"
    if now < run_start(run):
        return "Queued"
    return "Running" if now < run_end(run) else run["_outcome"]


def run_ended_at(run: dict[str, Any]) -> datetime:
    stopped = run["_stopped"]
    return stopped if stopped is not None and stopped < run_end(run) else run_end(run)


def public_run(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    status = run_status(run, now)
    out: dict[str, Any] = {
        "id": run["id"],
        "taskID": run["taskID"],
        "taskName": run["taskName"],
        "status": status,
        "executionType": run["_by"],
        "creationDate": stamp(run["_created"]),
    }
    if status != "Queued" and not (status == "Aborted" and run["_stopped"] < run_start(run)):
        out["startDate"] = stamp(run_start(run))
    if status not in ACTIVE:
        out["endDate"] = stamp(run_ended_at(run))
        out["message"] = {
            "Failed": run["_error"],
            "Warning": "1 recipient could not be reached; see the SMTP log",
            "Aborted": "Stopped by a user",
        }.get(status)
    return out


def start_run(sandbox: Sandbox, org: Org, task: dict[str, Any], *, at: datetime, by: str, seconds: float) -> None:
    qt = tables(sandbox)
    outcome = org.outcomes.get(task["id"], "Completed")
    recipients = [r["email"] for r in org.recipients.get(task["id"], []) if r.get("email")]
    if task.get("testMode"):
        recipients = [a.strip() for a in (task.get("testModeRecipients") or "").replace(",", ";").split(";")]
    reports = [(r["reportName"], r["format"]) for r in org.task_reports.get(task["id"], [])]
    run = {
        "id": sandbox.uuid(),
        "taskID": task["id"],
        "taskName": task["name"],
        "_created": at,
        "_queue": qt.queue_seconds,
        "_seconds": seconds,
        "_outcome": outcome,
        "_stopped": None,
        "_by": by,
        "_reports": reports or [("(no report)", "PDF")],
        "_recipients": [r for r in recipients if r],
        "_error": f"Report '{reports[0][0] if reports else '?'}': Qlik object 'kpi-07' was not found in the app"
        if outcome == "Failed"
        else None,
    }
    org.executions[run["id"]] = run


def latest_run(org: Org, task_id: str) -> dict[str, Any] | None:
    runs = [r for r in org.executions.values() if r["taskID"] == task_id]
    return max(runs, key=lambda r: r["_created"]) if runs else None


def start_request(
    sandbox: Sandbox, org: Org, report: dict[str, Any], fmt: str, body: dict[str, Any], *, at: datetime
) -> dict[str, Any]:
    """An on-demand request: a run of one report, without recipients; it ends with a file to download."""
    qt = tables(sandbox)
    outcome = org.report_outcomes.get(report["id"], "Completed")
    selections = [f"{s['fieldName']}={','.join(s['values'])}" for s in body.get("selections") or []]
    if body.get("bookmarkId"):
        selections.append(f"bookmark {body['bookmarkId']}")
    request = {
        "id": sandbox.uuid(),
        "taskID": None,
        "taskName": f"On-demand {report['name']}",
        "reportID": report["id"],
        "reportName": report["name"],
        "outputFormat": fmt,
        "_created": at,
        "_queue": qt.queue_seconds,
        "_seconds": qt.run_seconds,
        "_outcome": outcome,
        "_stopped": None,
        "_by": "OnDemand",
        "_reports": [(report["name"], fmt)],
        "_recipients": [],
        "_selections": selections,
        "_error": f"Report '{report['name']}': Qlik object 'kpi-07' was not found in the app"
        if outcome == "Failed"
        else None,
    }
    org.requests[request["id"]] = request
    return request


def public_request(request: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = public_run(request, now)
    out.pop("taskID")
    out.pop("taskName")
    out |= {k: request[k] for k in ("reportID", "reportName", "outputFormat")}
    return out


REGIONS = ["North", "South", "East", "West", "Central", "Nordics", "Iberia", "Benelux", "DACH", "UK&I"]


def log_lines(sandbox: Sandbox, run: dict[str, Any], now: datetime) -> list[str]:
    """The execution log, the same on every read; a run still going shows what it has written so far."""
    rng = random.Random(run["id"])
    clock = run["_created"]
    lines: list[str] = []

    def emit(level: str, text: str) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=rng.randint(5, 900))
        lines.append(f"{clock.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} {level:<5} {text}")

    status = run_status(run, now)
    emit("INFO", f"Request {run['id']} queued ({run['_by']} execution)")
    if status == "Queued" or (status == "Aborted" and run["_stopped"] < run_start(run)):
        if status == "Aborted":
            emit("WARN", "Task stopped by a user before it started")
        return lines
    emit("INFO", f"Task '{run['taskName']}' started on engine qalyptus-engine-0{rng.randint(1, 4)}")
    apps = [a.name for a in sandbox.apps.values()] or ["Sales Dashboard"]
    emit("INFO", f"Connecting to Qlik Cloud app '{apps[rng.randrange(len(apps))]}'")
    emit("INFO", "Connected; loading selections and variables")
    for selection in run.get("_selections") or []:
        emit("INFO", f"Selection {selection}")
    for name, fmt in run["_reports"]:
        emit("INFO", f"Report '{name}': loading template")
        for region in REGIONS[: rng.randint(4, len(REGIONS))]:
            emit("INFO", f"Report '{name}' iteration Region={region}: {rng.randint(4, 30)} objects exported")
        if run["_outcome"] == "Failed":
            emit("ERROR", run["_error"])
            emit("ERROR", "Report generation failed; no e-mail was sent")
            break
        emit("INFO", f"Report '{name}' generated as {fmt} ({rng.randint(2, 40)} pages)")
    if run["_outcome"] != "Failed" and run["_by"] == "OnDemand":
        emit("INFO", "Report file stored for download")
    elif run["_outcome"] != "Failed":
        emit("INFO", f"Sending e-mails to {len(run['_recipients'])} recipients")
        if run["_outcome"] == "Warning":
            emit("WARN", "Recipient old.user@example.com rejected by the mail server (550 5.1.1)")
    emit("INFO", f"Task finished: {run['_outcome']}")
    if status == "Aborted":
        done = (run["_stopped"] - run_start(run)) / timedelta(seconds=run["_seconds"])
        return [*lines[: max(3, int(len(lines) * done))], f"{stamp(run['_stopped'])} WARN  Task stopped by a user"]
    if status == "Running":
        done = (now - run_start(run)) / timedelta(seconds=run["_seconds"])
        return lines[: max(3, int(len(lines) * done * 0.9))]
    return lines


def smtp_lines(run: dict[str, Any]) -> list[str]:
    rng = random.Random("smtp" + run["id"])
    clock = run_end(run)
    lines: list[str] = []

    def emit(text: str) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=rng.randint(2, 120))
        lines.append(f"{clock.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} {text}")

    emit("Connecting to smtp.sandbox.invalid:587")
    emit("< 220 smtp.sandbox.invalid ESMTP ready")
    emit("> EHLO qalyptus.net")
    emit("< 250-STARTTLS")
    emit("> STARTTLS")
    emit("< 220 2.0.0 Ready to start TLS")
    emit("> MAIL FROM:<reports@sandbox.invalid>")
    emit("< 250 2.1.0 Ok")
    recipients = list(run["_recipients"])
    if run["_outcome"] == "Warning":
        recipients.append("old.user@example.com")
    for address in recipients:
        emit(f"> RCPT TO:<{address}>")
        if address == "old.user@example.com":
            emit(f"< 550 5.1.1 <{address}>: Recipient address rejected: User unknown")
        else:
            emit("< 250 2.1.5 Ok")
    emit("> DATA")
    emit("< 354 End data with <CR><LF>.<CR><LF>")
    emit(f"< 250 2.0.0 Ok: queued as {rng.randrange(16**8):08X}")
    emit("> QUIT")
    emit("< 221 2.0.0 Bye")
    return lines


# Tasks and schedules -----------------------------------------------------------------------------------


def public_trigger(trigger: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = dict(trigger)
    zone = zone_of(trigger.get("timeZone"))
    if trigger["type"] == "Schedule" and zone is not None:
        offset = now.astimezone(zone).strftime("%z")
        out["timeZoneOfset"] = f"{offset[:3]}:{offset[3:]}"
        run = contract.next_run(trigger, now) if trigger.get("isActive") else None
        out["nextExecutionDate"] = stamp(run.astimezone(now.tzinfo)) if run else None
    return out


def public_task(sandbox: Sandbox, org: Org, task: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = dict(task)
    out["isMine"] = task["owner"] == sandbox.caller_id
    schedules = [t for t in org.triggers.get(task["id"], []) if t["type"] == "Schedule" and t.get("isActive")]
    out["isScheduled"] = bool(task.get("isActive")) and bool(schedules)
    ended = [r for r in org.executions.values() if r["taskID"] == task["id"] and run_status(r, now) not in ACTIVE]
    out["lastExecution"] = stamp(max(run_ended_at(r) for r in ended)) if ended else None
    return out


def update_problem(body: dict[str, Any]) -> str | None:
    """What a tenant refuses beyond the body's types (those the reference gives are checked before)."""
    if not body["name"].strip():
        return "name is required"
    if body.get("testMode") and not (body.get("testModeRecipients") or "").strip():
        return "testModeRecipients is required in test mode"
    if body["sendNotifications"] and not (body.get("notificationRecipients") or "").strip():
        return "notificationRecipients is required when sendNotifications is true"
    return None


def schedule_trigger(sandbox: Sandbox, body: dict[str, Any], schedule_id: str | None) -> dict[str, Any]:
    trigger: dict[str, Any] = {"id": schedule_id or sandbox.uuid(), "type": "Schedule", "isActive": True}
    trigger.update({k: body.get(k) for k in contract.SCHEDULE_FIELDS})
    trigger["frequency"] = contract.frequency_of(body.get("frequency"))
    # Integers the reference does not make nullable: what is not sent is 0.
    for key in ("priority", "day", "month", "everyHours"):
        trigger[key] = body.get(key) or 0
    trigger["execution"] = body.get("execution") or "Queue"
    if trigger.get("weeklyDays"):
        trigger["weeklyDays"] = ",".join(contract.weekdays_of(trigger["weeklyDays"]) or [])
    return trigger


def new_task(
    sandbox: Sandbox, name: str, description: str | None, project: dict[str, Any], owner: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": sandbox.uuid(),
        "name": name,
        "description": description,
        "owner": owner["id"] if owner else "",
        "ownerName": owner["name"] if owner else "",
        "project": project,
        "isActive": True,
        "testMode": False,
        "testModeRecipients": None,
        "sendNotifications": False,
        "notifyIfSuccess": None,
        "notifyIfWarning": None,
        "notifyIfError": None,
        "notificationRecipients": None,
        "notificationCc": None,
        "notificationBcc": None,
    }


def default_email(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "from": "reports@qalyptus.net",
        "ccBcc": False,
        "cc": None,
        "bcc": None,
        "ccQlikVariable": None,
        "bccQlikVariable": None,
        "subject": task["name"],
        "message": "Please find attached your report.",
        "isActive": True,
        "oneToAll": False,
    }


def event_trigger(event_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """An external event as the triggers list shows it (seen live: type, eventType, qlikEvent, appId)."""
    return {
        "id": event_id,
        "name": body["name"],
        "type": "QlikEvent",
        "eventType": {
            "app.reload.succeeded": "ReloadSucceeded",
            "app.reload.failed": "ReloadFailed",
            "app.reload.finished": "ReloadFinished",
        }[body["qlikEvent"]],
        "qlikEvent": body["qlikEvent"],
        "appId": body.get("appID"),
        "description": body.get("description"),
        "execution": body["execution"],
        "priority": body["priority"],
        "isActive": True,
        "timeZone": body.get("timeZone") or "UTC",
        "startDate": body.get("startDate"),
        "endDate": body.get("endDate"),
    }


# Routes ------------------------------------------------------------------------------------------------


def routes_of(sandbox: Sandbox, org: Org) -> list[BaseRoute]:
    qt = tables(sandbox)

    def task_of(request: Request) -> dict[str, Any] | None:
        return org.tasks.get(request.path_params["id"])

    def missing() -> Response:
        return refuse(404, "Task not found", "No task with this ID exists in this organization")

    async def list_tasks(_: Request) -> Response:
        now = sandbox.clock.now()
        return ok([public_task(sandbox, org, t, now) for t in org.tasks.values()])

    async def get_task(request: Request) -> Response:
        task = task_of(request)
        return missing() if task is None else ok(public_task(sandbox, org, task, sandbox.clock.now()))

    async def put_task(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        found = update_problem(body)
        if found:
            return refuse(400, "Invalid task", found)
        task.update({k: v for k, v in body.items() if k in contract.UPDATE_FIELDS})
        return ok(public_task(sandbox, org, task, sandbox.clock.now()))

    async def delete_task(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        for table in (org.tasks, org.task_reports, org.recipients, org.triggers, org.outcomes, org.emails):
            table.pop(task["id"], None)
        return ok(None)

    async def duplicate(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        copy = dict(task, id=sandbox.uuid(), name=f"{task['name']} - Copy", isActive=False, owner=sandbox.caller_id)
        copy["ownerName"] = sandbox.caller().name if sandbox.caller_id else ""
        org.tasks[copy["id"]] = copy
        org.outcomes[copy["id"]] = org.outcomes.get(task["id"], "Completed")
        org.task_reports[copy["id"]] = [dict(r, id=sandbox.uuid()) for r in org.task_reports.get(task["id"], [])]
        org.recipients[copy["id"]] = [dict(r) for r in org.recipients.get(task["id"], [])]
        org.triggers[copy["id"]] = [dict(t, id=sandbox.uuid()) for t in org.triggers.get(task["id"], [])]
        org.emails[copy["id"]] = dict(org.emails.get(task["id"]) or default_email(copy))
        return ok(public_task(sandbox, org, copy, sandbox.clock.now()))

    def listing(table: dict[str, list[dict[str, Any]]]) -> Handler:
        async def handler(request: Request) -> Response:
            task = task_of(request)
            return missing() if task is None else ok(table.get(task["id"], []))

        return handler

    async def triggers(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        now = sandbox.clock.now()
        return ok([public_trigger(t, now) for t in org.triggers.get(task["id"], [])])

    async def schedules(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        now = sandbox.clock.now()
        return ok([public_trigger(t, now) for t in org.triggers.get(task["id"], []) if t["type"] == "Schedule"])

    async def set_schedule(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        found = contract.schedule_problem(body)
        if found:
            return refuse(400, "Invalid schedule", found)
        own = org.triggers.setdefault(task["id"], [])
        schedule_id = request.query_params.get("taskScheduleID")
        if schedule_id:
            index = next((i for i, t in enumerate(own) if t["id"] == schedule_id and t["type"] == "Schedule"), None)
            if index is None:
                return refuse(404, "Schedule not found", f"Task has no schedule {schedule_id}")
            trigger = schedule_trigger(sandbox, body, schedule_id)
            trigger["isActive"] = own[index]["isActive"]
            own[index] = trigger
        else:
            trigger = schedule_trigger(sandbox, body, None)
            own.append(trigger)
        return ok(public_trigger(trigger, sandbox.clock.now()))

    async def delete_schedules(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        ids = await json_body(request)
        if not ids:
            return refuse(400, "Invalid request", "The body must be a non-empty array of schedule IDs")
        own = org.triggers.get(task["id"], [])
        known = {t["id"] for t in own if t["type"] == "Schedule"}
        unknown = [i for i in ids if i not in known]
        if unknown:
            return refuse(404, "Schedule not found", f"Task has no schedules {', '.join(unknown)}")
        org.triggers[task["id"]] = [t for t in own if t["id"] not in ids]
        return ok(None)

    async def run(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        now = sandbox.clock.now()
        last = latest_run(org, task["id"])
        if last is not None and run_status(last, now) in ACTIVE:
            # The service answers this one with HTTP 200 and isSuccess false.
            return refuse(200, "The task is already queued or running", f"Request {last['id']} has not finished")
        start_run(sandbox, org, task, at=now, by="Manual", seconds=qt.run_seconds)
        started = latest_run(org, task["id"])
        assert started is not None
        return ok(public_run(started, now))

    async def stop(request: Request) -> Response:
        target = request.path_params["id"]
        run_ = org.executions.get(target) or org.requests.get(target) or latest_run(org, target)
        if run_ is None:
            return refuse(404, "Not found", "No task or request with this ID exists in this organization")
        now = sandbox.clock.now()
        if run_status(run_, now) not in ACTIVE:
            return refuse(200, "The task is not running", f"Request {run_['id']} is {run_status(run_, now)}")
        run_["_stopped"] = now
        return ok(public_run(run_, now))

    async def statuses(_: Request) -> Response:
        now = sandbox.clock.now()
        runs = sorted(org.executions.values(), key=lambda r: r["_created"], reverse=True)
        return ok([public_run(r, now) for r in runs])

    async def status(request: Request) -> Response:
        task_id = request.path_params["id"]
        last = latest_run(org, task_id)
        if last is None and task_id not in org.tasks:
            return missing()
        return ok(public_run(last, sandbox.clock.now()) if last else None)

    def log_file(smtp: bool) -> Handler:
        async def handler(request: Request) -> Response:
            task_id = request.path_params["id"]
            last = latest_run(org, task_id)
            if last is None:
                return missing() if task_id not in org.tasks else refuse(404, "No log file", "The task has not run")
            now = sandbox.clock.now()
            if smtp:
                if run_status(last, now) not in ("Completed", "Warning"):
                    return refuse(404, "No SMTP log file", "The last execution sent no e-mail")
                lines = smtp_lines(last)
            else:
                lines = log_lines(sandbox, last, now)
            name = f"{'smtp-' if smtp else ''}{last['id']}.log"
            headers = {"Content-Disposition": f'attachment; filename="{name}"'}
            return PlainTextResponse("\n".join(lines) + "\n", headers=headers)

        return handler

    async def reports(_: Request) -> Response:
        return ok(list(org.reports.values()))

    async def users(_: Request) -> Response:
        return ok(org.users)

    # Creating, owners, e-mail, recipients, task reports, external events ---------------------------------

    def user_of(user_id: str) -> dict[str, Any] | None:
        return next((u for u in org.users if u["id"] == user_id), None)

    async def create_task(request: Request) -> Response:
        body = await json_body(request)
        project = org.projects.get(body["projectID"])
        if project is None:
            return refuse(200, "Project not found", f"No project {body['projectID']} in this organization")
        if not body["name"].strip():
            return refuse(400, "Invalid task", "name is required")
        caller = user_of(sandbox.caller_id or "")
        task = new_task(sandbox, body["name"].strip(), body.get("description"), project, caller)
        org.tasks[task["id"]] = task
        org.emails[task["id"]] = default_email(task)
        for table in (org.task_reports, org.recipients, org.triggers):
            table[task["id"]] = []
        return ok(public_task(sandbox, org, task, sandbox.clock.now()))

    async def change_owner(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        user = user_of(request.path_params["ownerId"])
        if user is None:
            return refuse(200, "User not found", "The new owner must be a user of this organization")
        task["owner"], task["ownerName"] = user["id"], user["name"]
        return ok(public_task(sandbox, org, task, sandbox.clock.now()))

    async def get_email(request: Request) -> Response:
        task = task_of(request)
        return missing() if task is None else ok(org.emails.setdefault(task["id"], default_email(task)))

    async def put_email(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        if not body["subject"].strip():
            return refuse(200, "Invalid e-mail", "subject is required")
        email = org.emails.setdefault(task["id"], default_email(task))
        email.update({k: body.get(k) for k in contract.TASK_EMAIL["properties"]})
        return ok(email)

    def directory(kind: str) -> dict[str, dict[str, Any]]:
        return {u["id"]: u for u in (org.users if kind.lower() == "user" else org.groups)}

    async def put_recipients(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        own = org.recipients.setdefault(task["id"], [])
        for item in body:
            if item["type"].lower() not in ("user", "group"):
                return refuse(200, "Invalid recipient", f"type {item['type'][:20]!r} is not User or Group")
            if item["id"] not in directory(item["type"]):
                return refuse(200, "Recipient not found", f"No {item['type'].lower()} {item['id']} here")
        for item in body:
            if not any(r["id"] == item["id"] for r in own):
                found = directory(item["type"])[item["id"]]
                kind = "User" if item["type"].lower() == "user" else "Group"
                own.append({"id": item["id"], "type": kind, "name": found["name"], "email": found.get("email")})
        return ok(own)

    def deleting(table: dict[str, list[dict[str, Any]]], what: str, keep: Any = None) -> Handler:
        async def handler(request: Request) -> Response:
            task = task_of(request)
            if task is None:
                return missing()
            ids = await json_body(request)
            if not ids:
                return refuse(400, "Invalid request", f"The body must be a non-empty array of {what} IDs")
            own = table.get(task["id"], [])
            known = {r["id"] for r in own if keep is None or keep(r)}
            unknown = [i for i in ids if i not in known]
            if unknown:
                return refuse(404, f"{what.capitalize()} not found", f"Task has no {what} {', '.join(unknown)}")
            table[task["id"]] = [r for r in own if r["id"] not in ids]
            return ok(None)

        return handler

    async def set_task_report(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        report = org.reports.get(body["reportID"])
        if report is None:
            return refuse(200, "Report not found", f"No report {body['reportID']} in this organization")
        if body["format"].upper() not in report["outputFormats"]:
            formats = ", ".join(report["outputFormats"])
            return refuse(200, "Invalid output format", f"Report '{report['name']}' is generated as {formats}")
        own = org.task_reports.setdefault(task["id"], [])
        task_report_id = request.query_params.get("taskReportID")
        index = next((i for i, r in enumerate(own) if r["id"] == task_report_id), None)
        if task_report_id and index is None:
            return refuse(404, "Task report not found", f"Task has no report {task_report_id}")
        saved = {k: v for k, v in body.items() if k in contract.TASK_REPORT["properties"]}
        saved |= {"id": task_report_id or sandbox.uuid(), "reportName": report["name"]}
        saved["format"] = body["format"].upper()
        if index is None:
            own.append(saved)
        else:
            own[index] = saved
        return ok(saved)

    async def set_event(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return missing()
        body = await json_body(request)
        if body["qlikEvent"] not in contract.QLIK_EVENTS:
            return refuse(200, "Invalid Qlik event", f"qlikEvent must be one of {', '.join(contract.QLIK_EVENTS)}")
        if body.get("appID") and body["appID"] not in sandbox.apps:
            return refuse(200, "Qlik app not found", f"No Qlik app {body['appID'][:60]} in the linked tenant")
        own = org.triggers.setdefault(task["id"], [])
        event_id = request.query_params.get("taskExternalEventID")
        index = next((i for i, t in enumerate(own) if t["id"] == event_id and t["type"] == "QlikEvent"), None)
        if event_id and index is None:
            return refuse(404, "External event not found", f"Task has no external event {event_id}")
        event = event_trigger(event_id or sandbox.uuid(), body)
        if index is None:
            own.append(event)
        else:
            event["isActive"] = own[index]["isActive"]
            own[index] = event
        return ok(public_trigger(event, sandbox.clock.now()))

    # On-demand requests ---------------------------------------------------------------------------------

    async def generate(request: Request) -> Response:
        report = org.reports.get(request.path_params["id"])
        if report is None:
            return refuse(404, "Report not found", "No report with this ID exists in this organization")
        fmt = request.path_params["outputFormat"].upper()
        if fmt not in report["outputFormats"]:
            formats = ", ".join(report["outputFormats"])
            return refuse(200, "Invalid output format", f"Report '{report['name']}' is generated as {formats}")
        body = await json_body(request)
        if body.get("appId") and body["appId"] not in sandbox.apps:
            return refuse(200, "Qlik app not found", f"No Qlik app {body['appId'][:60]} in the linked tenant")
        now = sandbox.clock.now()
        return ok(public_request(start_request(sandbox, org, report, fmt, body, at=now), now))

    def request_of(request: Request) -> dict[str, Any] | None:
        return org.requests.get(request.path_params["id"])

    def no_request() -> Response:
        return refuse(404, "Request not found", "No on-demand request with this ID exists in this organization")

    async def requests_(_: Request) -> Response:
        now = sandbox.clock.now()
        found = sorted(org.requests.values(), key=lambda r: r["_created"], reverse=True)
        return ok([public_request(r, now) for r in found])

    async def request_status(request: Request) -> Response:
        found = request_of(request)
        return no_request() if found is None else ok(public_request(found, sandbox.clock.now()))

    def request_log(smtp: bool) -> Handler:
        async def handler(request: Request) -> Response:
            found = request_of(request)
            if found is None:
                return no_request()
            if smtp:
                # An on-demand request is downloaded, not mailed.
                return refuse(404, "No SMTP log file", "The request sent no e-mail")
            lines = log_lines(sandbox, found, sandbox.clock.now())
            headers = {"Content-Disposition": f'attachment; filename="{found["id"]}.log"'}
            return PlainTextResponse("\n".join(lines) + "\n", headers=headers)

        return handler

    async def delete_request(request: Request) -> Response:
        target = request.path_params["id"]
        if org.requests.pop(target, None) is None and org.executions.pop(target, None) is None:
            return refuse(404, "Request not found", "No request with this ID exists in this organization")
        return ok(None)

    async def download(request: Request) -> Response:
        found = request_of(request)
        if found is None:
            return no_request()
        status = run_status(found, sandbox.clock.now())
        if status not in ("Completed", "Warning"):
            return refuse(200, "The report file is not available", f"Request {found['id']} is {status}")
        name = found["reportName"].lower().replace(" ", "_").replace("&", "and")
        extension = found["outputFormat"].lower()
        return ok(f"https://files.{org.host}/reports/{found['id']}/{name}.{extension}")

    async def groups(_: Request) -> Response:
        return ok(org.groups)

    async def projects(_: Request) -> Response:
        return ok(list(org.projects.values()))

    def g(template: str, handler: Handler, body: str | None = None) -> Handler:
        check = contract.checker(body) if body else None
        guarded_handler = guarded(sandbox, "qalyptus", refused, handler, api_key=org.api_key, body=check)

        async def endpoint(request: Request) -> Response:
            if template in qt.unserved:
                return PlainTextResponse("Not Found", status_code=404)
            return await guarded_handler(request)

        return endpoint

    table: list[tuple[str, str, Handler, str | None]] = [
        ("GET", "/tasks", list_tasks, None),
        ("GET", "/tasks/{id}", get_task, None),
        ("PUT", "/tasks/{id}", put_task, "update"),
        ("DELETE", "/tasks/{id}", delete_task, None),
        ("POST", "/tasks/{id}/duplicate", duplicate, None),
        ("GET", "/tasks/{id}/recipients", listing(org.recipients), None),
        ("GET", "/tasks/{id}/reports", listing(org.task_reports), None),
        ("GET", "/tasks/{id}/triggers", triggers, None),
        ("GET", "/tasks/{id}/schedules", schedules, None),
        ("POST", "/tasks/{id}/schedules", set_schedule, "schedule"),
        ("DELETE", "/tasks/{id}/schedules", delete_schedules, "ids"),
        ("POST", "/tasks/{id}/run", run, None),
        ("POST", "/status/{id}/stop", stop, None),
        ("GET", "/status/tasks", statuses, None),
        ("GET", "/status/tasks/{id}", status, None),
        ("GET", "/status/tasks/{id}/log", log_file(smtp=False), None),
        ("GET", "/status/tasks/{id}/smtp-log", log_file(smtp=True), None),
        ("GET", "/reports", reports, None),
        ("GET", "/users", users, None),
        ("POST", "/tasks", create_task, "create"),
        ("PUT", "/tasks/{id}/owner/{ownerId}", change_owner, None),
        ("GET", "/tasks/{id}/email", get_email, None),
        ("PUT", "/tasks/{id}/email", put_email, "email"),
        ("PUT", "/tasks/{id}/recipients", put_recipients, "recipients"),
        ("DELETE", "/tasks/{id}/recipients", deleting(org.recipients, "recipient"), "ids"),
        ("POST", "/tasks/{id}/reports", set_task_report, "task_report"),
        ("DELETE", "/tasks/{id}/reports", deleting(org.task_reports, "report"), "ids"),
        ("POST", "/tasks/{id}/external-events", set_event, "event"),
        (
            "DELETE",
            "/tasks/{id}/external-events",
            deleting(org.triggers, "external event", lambda t: t["type"] == "QlikEvent"),
            "ids",
        ),
        ("POST", "/reports/{id}/generate/{outputFormat}", generate, "generate"),
        ("GET", "/status/requests", requests_, None),
        ("GET", "/status/requests/{id}", request_status, None),
        ("GET", "/status/requests/{id}/log", request_log(smtp=False), None),
        ("GET", "/status/requests/{id}/smtp-log", request_log(smtp=True), None),
        ("DELETE", "/status/{id}", delete_request, None),
        ("GET", "/status/{id}/download", download, None),
        ("GET", "/groups", groups, None),
        ("GET", "/projects", projects, None),
    ]
    return [Route(PREFIX + path, g(path, handler, body), methods=[method]) for method, path, handler, body in table]


def hosts(sandbox: Sandbox) -> list[BaseRoute]:
    """One Host route per organization; they go first, since Qalyptus paths collide with Qlik's."""
    return [Host(org.host, app=Router(routes=routes_of(sandbox, org))) for org in tables(sandbox).orgs.values()]
