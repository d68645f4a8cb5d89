"""Sandbox `/api/v1/tasks`: workflow tasks, their runs and run logs, answering as tasks.json describes.

Runs are simulated without background work: starting a task stores a run with its start time, length and
outcome fixed up front, and every read derives the run's status from the sandbox clock. A chained task's
run is stored at the same moment, starting when its trigger's run will end, and stays invisible until
then; so reads never change state, and a chain plays out however fast the clock moves.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import contract, reload_tasks
from qlik_tasks_mcp.sandbox.contract import TASKS_ERRORS as err
from qlik_tasks_mcp.sandbox.core import TENANT_ID, Sandbox, guarded, json_body, stamp
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit
from qlik_tasks_mcp.sandbox.schedule import task_runs
from qlik_tasks_mcp.sandbox.workflow import meaning_problems, reload_targets, triggers

BASE = "/api/v1/tasks"
SCHEDULING_BASE = "/api/scheduling/tasks"
TABLE = "tasks"
SPEC = "tasks.json"
SCHEDULING_SPEC = "scheduling-tasks.json"
# Changelog 135: a resource (app) has at most this many tasks.
MAX_TASKS_PER_APP = 10
# What a task keeps of a body: the Task fields a request may set. The service computes `resourceId` ("the value
# from user input is ignored") and owns `metadata`.
WRITABLE = tuple(k for k in contract.writable(SPEC, "Task") if k not in ("resourceId", "metadata"))
CURSORS = Cursors(next="page", prev="page")
TASK_SORTS = {"+createdAt", "-createdAt", "+updatedAt", "-updatedAt"}
RUN_SORTS = {f"{sign}{key}" for sign in "+-" for key in ("startedAt", "endedAt", "status", "taskId", "actionId")}
MAX_CHAIN = 10
# Realistic reloads take minutes; the sandbox compresses them so a wait finishes in about this long.
DEFAULT_RUN_SECONDS = 1.5
BIG_LOG_LINES = 4800


@dataclass
class TaskTables:
    """This family's state; `run_seconds` is the simulated length of a run (tests make it short)."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_seconds: float = DEFAULT_RUN_SECONDS
    failing_apps: set[str] = field(default_factory=set)
    big_log_apps: set[str] = field(default_factory=set)
    # True: /api/scheduling/tasks answers 404, as on a tenant that lacks the Scheduling Tasks API.
    scheduling_gone: bool = False
    # True: the scheduling list's next token is the cursor of the page just read (a tenant whose paging loops).
    looping_pages: bool = False
    # task id -> its run ids, so a listing of thousands of tasks finds each one's last run without a scan.
    runs_of: dict[str, list[str]] = field(default_factory=dict)

    def task_runs(self, task_id: str) -> list[dict[str, Any]]:
        return [self.runs[i] for i in self.runs_of.get(task_id, []) if i in self.runs]


@dataclass(frozen=True)
class TasksApi:
    """One of the two APIs over the one task store: its base path, spec, tiers and error shape."""

    base: str
    spec: str
    reads: str
    writes: str

    @property
    def scheduling(self) -> bool:
        return self.base == SCHEDULING_BASE


V1_API = TasksApi(BASE, SPEC, "special", "special")
SCHEDULING_API = TasksApi(SCHEDULING_BASE, SCHEDULING_SPEC, "1", "2")


class Refused(Exception):
    """A request the store will not take: the status, what is wrong, and Qlik's CHO code where it has one."""

    def __init__(self, status: int, detail: str, cho: str | None = None, value: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.cho, self.value = status, detail, cho, value

    def response(self) -> Response:
        answer = err(
            self.status, self.detail, f"{self.cho}: {contract.TITLES.get(self.status, 'Error')}" if self.cho else None
        )
        if self.value is not None:
            body = json.loads(bytes(answer.body))
            return JSONResponse(body | {"value": self.value}, status_code=self.status)
        return answer


def tables(sandbox: Sandbox) -> TaskTables:
    found = sandbox.tables.get(TABLE)
    if not isinstance(found, TaskTables):
        found = sandbox.tables[TABLE] = TaskTables()
    return found


# Runs ------------------------------------------------------------------------------------------------


def run_end(run: dict[str, Any]) -> datetime:
    return run["_start"] + timedelta(seconds=run["_seconds"])


def run_status(run: dict[str, Any], now: datetime) -> str | None:
    """None while the run has not started yet (a chained run waiting for its trigger to finish)."""
    if now < run["_start"]:
        return None
    return "RUNNING" if now < run_end(run) else run["_outcome"]


def public_run(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = {k: v for k, v in run.items() if not k.startswith("_")}
    status = run_status(run, now)
    out["status"] = status
    out["startedAt"] = stamp(run["_start"])
    if status != "RUNNING":
        out["endedAt"] = stamp(run_end(run))
        if status == "FAILED":
            out["log"] = run["_error"]
    return out


ERRORS = [
    (
        "Field 'CustomerKey' not found",
        "Customers:\nLOAD CustomerKey, CustomerName, Region\nFROM [lib://DataFiles/customers.qvd]\n(qvd)",
    ),
    (
        "Cannot open file: 'lib://DataFiles/fx_rates_2026.csv' (Connector error: File not found)",
        "FxRates:\nLOAD Currency, Rate, Date\nFROM [lib://DataFiles/fx_rates_2026.csv]\n"
        "(txt, utf8, embedded labels, delimiter is ',')",
    ),
    (
        "Table 'Orders_Staging' not found",
        "Orders:\nNoConcatenate\nLOAD * RESIDENT Orders_Staging\nWHERE OrderDate >= '2025-01-01'",
    ),
]
# The app script defect (sandbox.app_scripts) each run error stands for: a failed run's reload fails on it too.
DEFECTS = ("field", "file", "syntax")


def start_run(
    sandbox: Sandbox,
    task: dict[str, Any],
    *,
    at: datetime,
    triggered_by: str,
    cause: str | None = None,
    depth: int = 0,
    seconds: float | None = None,
) -> dict[str, Any]:
    st = tables(sandbox)
    app_id, partial = (reload_targets(task) or [("", False)])[0]
    failing = app_id in st.failing_apps
    run_id = sandbox.uuid()
    error_index = sum(map(ord, app_id)) % len(ERRORS)
    run: dict[str, Any] = {
        "id": run_id,
        "taskId": task["id"],
        "taskName": task["name"],
        "resourceId": app_id,
        "actionId": "reload-app",
        "workerId": "",
        "workerType": "reloads",
        "executedAs": task["metadata"]["ownerId"],
        "triggeredBy": triggered_by,
        "taskMeta": dict(task["metadata"]),
        "_start": at,
        "_seconds": st.run_seconds if seconds is None else seconds,
        "_outcome": "FAILED" if failing else "SUCCEEDED",
        "_error": "",
        "_error_index": error_index,
        "_lines": BIG_LOG_LINES + sandbox.rng.randint(0, 400)
        if app_id in st.big_log_apps
        else sandbox.rng.randint(40, 160),
        "_partial": partial,
        "_cause": cause,
    }
    st.runs[run_id] = run
    st.runs_of.setdefault(task["id"], []).append(run_id)
    if app_id in sandbox.apps:
        run["workerId"] = _run_reload(sandbox, run, DEFECTS[error_index] if failing else None)
    elif failing:
        run["_error"] = ERRORS[error_index][0]
    if depth < MAX_CHAIN:
        for follower in followers(st, task["id"], run["_outcome"]):
            start_run(
                sandbox,
                follower,
                at=run_end(run) + timedelta(milliseconds=50),
                triggered_by=task["name"],
                cause=run_id,
                depth=depth + 1,
                seconds=seconds,
            )
    return run


def _run_reload(sandbox: Sandbox, run: dict[str, Any], defect: str | None) -> str:
    """The app reload a run makes (NOTES-2026-11.md 1.5: workerId is its id): type choreographer, resourceType
    tasks, resourceId the task; a failed run's reload fails on the app's script at the run's error."""
    from qlik_tasks_mcp.sandbox import reloads

    reload = reloads.start_reload(
        sandbox,
        run["resourceId"],
        type="choreographer",
        resource_type="tasks",
        resource_id=run["taskId"],
        outcome="FAILED" if defect else "SUCCEEDED",
        at=run["_start"],
        partial=run["_partial"],
        user_id=run["executedAs"],
        seconds=run["_seconds"],
    )
    if defect:
        # The run's error is its reload's: the app's script error at its line.
        reload["_defect"] = defect
        reload["_error"] = run["_error"] = reloads.failure_message(sandbox, run["resourceId"], defect)
    return reload["id"]


def followers(st: TaskTables, task_id: str, outcome: str) -> list[dict[str, Any]]:
    return [
        t
        for t in st.tasks.values()
        if t.get("enabled")
        and any(tr.task_id == task_id and tr.status in (None, outcome) for tr in triggers(t))
        and reload_targets(t)
    ]


def drop_pending(sandbox: Sandbox, task_id: str) -> None:
    """Forget the task's runs that have not started yet, and every run they would have caused."""
    st = tables(sandbox)
    now = sandbox.clock.now()
    doomed = {r["id"] for r in st.runs.values() if r["taskId"] == task_id and r["_start"] > now}
    while doomed:
        for run_id in doomed:
            run = st.runs.pop(run_id, None)
            if run is not None and run["workerId"]:
                from qlik_tasks_mcp.sandbox import reloads

                reloads.forget(sandbox, run["workerId"])
        doomed = {r["id"] for r in st.runs.values() if r["_cause"] in doomed}


def chain_to_running(sandbox: Sandbox, task: dict[str, Any]) -> None:
    """A task created or changed while its trigger runs still starts when that run ends."""
    st = tables(sandbox)
    if not task.get("enabled") or not reload_targets(task):
        return
    now = sandbox.clock.now()
    for trigger in triggers(task):
        for run in list(st.runs.values()):
            if run["taskId"] == trigger.task_id and run_end(run) > now and trigger.status in (None, run["_outcome"]):
                start_run(sandbox, task, at=run_end(run) + timedelta(milliseconds=50), triggered_by=run["taskName"])


# Logs --------------------------------------------------------------------------------------------------

TABLES = ["Orders", "OrderLines", "Customers", "Products", "Calendar", "Budget", "Returns", "Shipments"]


def log_lines(sandbox: Sandbox, run: dict[str, Any], now: datetime) -> list[str]:
    """A Qlik reload log, the same every time for the same run; a running run shows what it has so far."""
    rng = random.Random(run["id"])
    app = sandbox.apps.get(run["resourceId"])
    clock = run["_start"]
    lines: list[str] = []

    def emit(text: str, number: int | None = None) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=rng.randint(1, 30))
        at = clock.strftime("%Y%m%dT%H%M%S.") + f"{clock.microsecond // 1000:03d}+0000"
        for part in text.split("\n"):
            lines.append(f"{at} {number:04d} {part}" if number is not None else f"{at}      {part}")
            number = number + 1 if number is not None else None

    emit("Execution started.")
    emit("Qlik Sense Server Version 14.212.4")
    emit("CPU Target                    x64")
    emit("Operating System              Linux")
    emit(f"App: {run['resourceId']} ({app.name if app else 'unknown app'})")
    emit(f"Reload started ({'partial' if run['_partial'] else 'full'} reload, triggered by {run['triggeredBy']})")
    settings = [
        "SET ThousandSep=',';",
        "SET DecimalSep='.';",
        "SET MoneyFormat='$#,##0.00;-$#,##0.00';",
        "SET TimeFormat='h:mm:ss TT';",
        "SET DateFormat='M/D/YYYY';",
        "SET TimestampFormat='M/D/YYYY h:mm:ss[.fff] TT';",
        "SET FirstWeekDay=0;",
        "SET CollationLocale='en-US';",
    ]
    for index, line in enumerate(settings, start=2):
        emit(line, index)
    emit("LIB CONNECT TO 'DataFiles';", 12)
    emit("Connected.")
    footer = 14 if run["_outcome"] == "FAILED" else 9
    target = max(run["_lines"] - footer, len(lines) + 6)
    month = 0
    while len(lines) < target:
        if run["_lines"] >= BIG_LOG_LINES:
            # Big apps load one QVD per month in a loop: the same script lines, thousands of log lines.
            year, mon = 2015 + month // 12, month % 12 + 1
            emit(f"Sales_{year}_{mon:02d}:\nLOAD *\nFROM [lib://DataFiles/sales/sales_{year}_{mon:02d}.qvd]\n(qvd)", 31)
            fetched = rng.randint(80_000, 1_400_000)
            emit(f"{rng.randint(12, 18)} fields found")
            emit(f"Sales << sales_{year}_{mon:02d} {fetched:,} Lines fetched")
            month += 1
        else:
            name = TABLES[month % len(TABLES)]
            emit(f"{name}:\nLOAD *\nFROM [lib://DataFiles/{name.lower()}.qvd]\n(qvd)", 20 + 5 * (month % 40))
            emit(f"{rng.randint(3, 40)} fields found")
            emit(f"{name} << {name.lower()} {rng.randint(1_000, 900_000):,} Lines fetched")
            month += 1
    if run["_outcome"] == "FAILED":
        message, statement = run["_error"], ERRORS[run["_error_index"]][1]
        emit(statement, 240)
        emit("The following error occurred:")
        emit(message)
        emit("---")
        emit("The error occurred here:")
        emit(" ".join(statement.split("\n")))
        emit("---")
        emit("Data has not been loaded. Please correct the error and try loading again.")
        emit("Execution Failed")
        emit("Execution finished.")
    else:
        emit("Creating search index")
        emit("Search index creation completed successfully")
        emit("---")
        emit("App saved")
        emit("---")
        emit("Finished successfully")
        emit("0 forced error(s)")
        emit("0 synthetic key(s)")
        emit("Execution finished.")
    if run_status(run, now) == "RUNNING":
        done = (now - run["_start"]) / timedelta(seconds=run["_seconds"])
        return lines[: max(8, int(len(lines) * done * 0.9))]
    return lines


# Tasks -------------------------------------------------------------------------------------------------


def trigger_type(task: dict[str, Any]) -> int:
    """TriggerMeta.type: 0 time schedule, 1 single event, 2 multi event, 3 mixed, 4 data updated."""
    scheduled = isinstance(task.get("start"), dict) and "schedule" in task["start"]
    events = len(task.get("events") or [])
    if any(isinstance(e, dict) and e.get("source") == "dataset.updated" for e in task.get("events") or []):
        return 4
    if scheduled and events:
        return 3
    if scheduled:
        return 0
    return 1 if events == 1 else 2


def build_task(sandbox: Sandbox, body: dict[str, Any], task_id: str, owner: str, created: str) -> dict[str, Any]:
    app_id = reload_targets(body)[0][0]
    app = sandbox.apps.get(app_id) or next(iter(sandbox.apps.values()))
    task: dict[str, Any] = {k: body[k] for k in WRITABLE if k in body}
    task.setdefault("enabled", False)
    task["id"] = task_id
    task["resourceId"] = app_id
    metadata: dict[str, Any] = {
        "usage": "ANALYTICS",
        "ownerId": owner,
        "spaceId": app.space_id,
        "trigger": {"id": sandbox.hex_id(), "type": trigger_type(task)},
        "tenantId": TENANT_ID,
        "createdAt": created,
        "createdBy": owner,
        "updatedAt": stamp(sandbox.clock.now()),
        "orchestration": {"id": sandbox.uuid(), "type": 2},
    }
    if not task["enabled"]:
        metadata["disabledCode"] = "MANUALLY"
    task["metadata"] = metadata
    return task


def check_body(sandbox: Sandbox, body: dict[str, Any], *, scheduling: bool, replacing: str | None = None) -> None:
    """Refused when a body that matches the schema cannot be stored: 400 for what it says; an app that is not
    there is 404 on v1 and 403 CHO-003 on scheduling; an app with its maximum of tasks is CHO-014."""
    problems = meaning_problems(body)
    if problems:
        raise Refused(400, "; ".join(problems[:5]), "CHO-001" if scheduling else None)
    st = tables(sandbox)
    for app_id, _ in reload_targets(body):
        if app_id not in sandbox.apps:
            if scheduling:
                raise Refused(403, f"app {app_id} is missing or the caller lacks app:reload on it", "CHO-003")
            raise Refused(404, f"resource {app_id} not found")
        count = sum(1 for t in st.tasks.values() if t["resourceId"] == app_id and t["id"] != replacing)
        if replacing is None and count >= MAX_TASKS_PER_APP:
            raise Refused(400, f"app {app_id} already has {count} tasks, the maximum", "CHO-014")
    for trigger in triggers(body):
        if trigger.task_id not in st.tasks:
            raise Refused(
                400,
                f"events: task {trigger.task_id} in the correlation does not exist",
                "CHO-016" if scheduling else None,
            )


def create_task(sandbox: Sandbox, body: dict[str, Any], *, scheduling: bool = False) -> dict[str, Any]:
    """Store a new task made from `body` (checked; Refused if it cannot be), owned by the caller, and chain it."""
    check_body(sandbox, body, scheduling=scheduling)
    now = stamp(sandbox.clock.now())
    task = build_task(sandbox, body, sandbox.uuid(), sandbox.caller_id, now)
    tables(sandbox).tasks[task["id"]] = task
    chain_to_running(sandbox, task)
    return task


def migrate(sandbox: Sandbox, body: dict[str, Any], reload_task_id: str, *, scheduling: bool = False) -> dict[str, Any]:
    """`POST /api/scheduling/tasks?migrateFrom=<id>` (qlik-api-ts createTask), or the same on `/api/v1/tasks` (the
    migration guide): the new task names the reload task it replaces (metadata.migratedFrom), which then shows
    `migrated: true`; Refused if that one is missing or migrated."""
    problem = reload_tasks.migration_problem(sandbox, reload_task_id)
    if problem:
        raise Refused(*problem)
    task = create_task(sandbox, body, scheduling=scheduling)
    task["metadata"]["migratedFrom"] = reload_task_id
    reload_tasks.mark_migrated(sandbox, reload_task_id)
    return task


def replace_task(sandbox: Sandbox, task: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A task redefined by `body` (PUT, or a patched document); as the real service does, the caller becomes
    the owner."""
    updated = build_task(sandbox, body, task["id"], sandbox.caller_id, task["metadata"]["createdAt"])
    for key in ("createdBy", "orchestration", "migratedFrom"):
        if key in task["metadata"]:
            updated["metadata"][key] = task["metadata"][key]
    updated["metadata"]["trigger"]["id"] = task["metadata"]["trigger"]["id"]
    tables(sandbox).tasks[task["id"]] = updated
    drop_pending(sandbox, task["id"])
    chain_to_running(sandbox, updated)
    return updated


def seeded_schedule(index: int, zone: str) -> Any:
    """The seeded tasks' schedules, in the interval and cron forms the specs allow (the RRULE forms are the UI-made
    tasks of scheduling.py): a local start, a UTC start, a bare duration (the spec's own example, sent as the bare
    string, UTC assumed), cron as a string and as an object, and a repeat count."""
    forms: list[Any] = [
        {"interval": "R/2026-01-01T00:30:00/P1D", "timezone": zone},
        {"interval": "R/2026-11-01T06:00:00Z/PT4H", "timezone": zone},
        "PT15M",
        {"cron": "0 6 * * 1-5", "timezone": zone},
        {"cron": {"expression": "30 5 * * *", "validUntil": "2027-06-30T23:59:59Z"}, "timezone": zone},
        {"interval": "R/2026-01-05T05:30:00/P1D", "timezone": zone},
        {"interval": "R/2026-01-02T00:30:00/P1D", "timezone": zone},
        {"interval": "R400/2026-06-01T07:00:00/P1D", "timezone": zone},
    ]
    return forms[index % len(forms)]


def seed(sandbox: Sandbox) -> None:
    """A scheduled task per app, a chain, history with a failing app and one app whose logs are huge."""
    st = tables(sandbox)
    apps = list(sandbox.apps.values())
    if not apps:
        return
    now = sandbox.clock.now()
    by_name = {a.name: a for a in apps}
    failing = by_name.get("Customer Churn", apps[-1])
    big = by_name.get("Supply Chain Control Tower", apps[0])
    st.failing_apps.add(failing.id)
    st.big_log_apps.add(big.id)
    created = stamp(now - timedelta(days=60))
    zones = ["Europe/Zurich", "America/New_York", "UTC", "Europe/London", "Asia/Tokyo"]
    seeded: dict[str, dict[str, Any]] = {}
    for index, app in enumerate(apps[:8]):
        slug = "-".join("".join(c if c.isalnum() else " " for c in app.name.lower()).split())
        body: dict[str, Any] = {
            "name": f"reload-{slug}",
            "specVersion": "0.8",
            "version": "1.0.0",
            "enabled": index != 6,
            "description": f"Daily reload of {app.name}",
            "start": {"schedule": seeded_schedule(index, zones[index % 5]), "stateName": "reload"},
            "states": [
                {
                    "name": "reload",
                    "type": "EVENT",
                    "end": True,
                    "onEvents": [
                        {
                            "eventRefs": ["time-schedule"],
                            "actions": [
                                {
                                    "name": "reload-app",
                                    "functionRef": {
                                        "refName": "app.reload",
                                        "arguments": {"appId": app.id, "partial": False},
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
        }
        task = build_task(sandbox, body, sandbox.uuid(), app.owner_id, created)
        st.tasks[task["id"]] = task
        seeded[app.name] = task
    first = next(iter(seeded.values()))
    follower_app = apps[min(8, len(apps) - 1)]
    chained_body: dict[str, Any] = {
        "name": f"reload-after-{first['name'].removeprefix('reload-')}",
        "specVersion": "0.8",
        "version": "1.0.0",
        "enabled": True,
        "description": f"Reload {follower_app.name} when {first['name']} succeeds",
        "events": [
            {
                "name": "task-succeeded",
                "type": "com.qlik.v1.task.run.finished",
                "source": "system-events.task",
                "correlation": [
                    {"contextAttributeName": "id", "contextAttributeValue": first["id"]},
                    {"contextAttributeName": "status", "contextAttributeValue": "SUCCEEDED"},
                ],
            }
        ],
        "states": [
            {
                "name": "reload",
                "type": "EVENT",
                "end": True,
                "exclusive": True,
                "onEvents": [
                    {
                        "eventRefs": ["task-succeeded"],
                        "actions": [
                            {
                                "name": "reload-app",
                                "functionRef": {
                                    "refName": "app.reload",
                                    "arguments": {"appId": follower_app.id, "partial": False},
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    chained = build_task(sandbox, chained_body, sandbox.uuid(), follower_app.owner_id, created)
    st.tasks[chained["id"]] = chained
    from qlik_tasks_mcp.sandbox.scheduling import seed_ui

    seed_ui(sandbox, first)
    # History: the last three runs of each enabled scheduled task in the past three days, at the times its schedule
    # gives (sandbox/schedule.py reads every form), chained runs following on their own.
    created_at = now - timedelta(days=60)
    for task in seeded.values():
        if task["enabled"]:
            # Runs that ended before now: the longest seeded run takes 10 minutes.
            ended = now - timedelta(minutes=11)
            times = task_runs(task["start"]["schedule"], created_at, after=now - timedelta(days=3), before=ended)
            for at in times[-3:]:
                start_run(sandbox, task, at=at, triggered_by="time-schedule", seconds=sandbox.rng.randint(40, 600))


def accessible(sandbox: Sandbox, task: dict[str, Any]) -> bool:
    """Whether the caller has access to the task (tasks.json and scheduling-tasks.json list only those)."""
    meta = task["metadata"]
    return sandbox.sees_task(task["resourceId"], meta.get("ownerId", ""), meta.get("spaceId", ""))


def last_run_of(st: TaskTables, task_id: str, now: datetime) -> dict[str, Any] | None:
    runs = [r for r in st.task_runs(task_id) if run_status(r, now) is not None]
    return max(runs, key=lambda r: r["_start"]) if runs else None


def public_task(sandbox: Sandbox, task: dict[str, Any]) -> dict[str, Any]:
    """The task as the service shows it, its last run in `metadata.orchestration.attrs` (as Qlik's example has)."""
    out = {k: v for k, v in task.items() if not k.startswith("_")}
    now = sandbox.clock.now()
    last = last_run_of(tables(sandbox), task["id"], now)
    if last is not None:
        shown = public_run(last, now)
        attrs = {"last_run_status": shown["status"], "last_run_startedAt": shown["startedAt"]}
        attrs |= {"last_run_endedAt": shown["endedAt"]} if "endedAt" in shown else {}
        metadata = dict(out["metadata"])
        metadata["orchestration"] = dict(metadata.get("orchestration") or {}) | {"attrs": attrs}
        out["metadata"] = metadata
    return out


def _sorted(items: list[dict[str, Any]], sort: str, key: Any) -> list[dict[str, Any]]:
    return sorted(items, key=lambda x: (key(x, sort[1:]), x["id"]), reverse=sort.startswith("-"))


def token_links(links: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The scheduling API's paging: the next cursor in `token`, with an href that does not carry it."""
    out = dict(links)
    nxt = links.get("next")
    if nxt is not None:
        href = nxt["href"]
        query = (
            [part for part in href.split("?", 1)[-1].split("&") if not part.startswith("page=")] if "?" in href else []
        )
        out["next"] = {
            "href": href.split("?", 1)[0] + ("?" + "&".join(query) if query else ""),
            "token": href.split("page=", 1)[1].split("&", 1)[0],
        }
    return out


def routes(sandbox: Sandbox) -> list[Route]:
    from qlik_tasks_mcp.sandbox import scheduling

    return family_routes(sandbox, V1_API) + scheduling.routes(sandbox) + family_routes(sandbox, SCHEDULING_API)


def family_routes(sandbox: Sandbox, api: TasksApi) -> list[Route]:
    """The endpoints both APIs have, over the one store."""
    st = tables(sandbox)

    def task_of(request: Request) -> dict[str, Any] | None:
        return st.tasks.get(request.path_params["id"])

    async def list_tasks(request: Request) -> Response:
        from qlik_tasks_mcp.sandbox.scheduling import listed

        return listed(sandbox, request, api)

    async def create(request: Request) -> Response:
        body, source = await json_body(request), request.query_params.get("migrateFrom")
        try:
            task = (
                migrate(sandbox, body, source, scheduling=api.scheduling)
                if source
                else create_task(sandbox, body, scheduling=api.scheduling)
            )
        except Refused as refused:
            return refused.response()
        return JSONResponse(public_task(sandbox, task), status_code=201)

    async def get_one(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        if not accessible(sandbox, task):
            return err(403, "the caller may not read this task: its app is in a space the caller is not a member of")
        return JSONResponse(public_task(sandbox, task))

    async def put_one(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        body = await json_body(request)
        try:
            check_body(sandbox, body, scheduling=api.scheduling, replacing=task["id"])
        except Refused as refused:
            return refused.response()
        return JSONResponse(public_task(sandbox, replace_task(sandbox, task, body)))

    async def delete_one(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        drop_pending(sandbox, task["id"])
        del st.tasks[task["id"]]
        return Response(status_code=204)

    async def start(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        now = sandbox.clock.now()
        if any(r["taskId"] == task["id"] and run_status(r, now) == "RUNNING" for r in st.runs.values()):
            return err(400, "the task is already running; wait for its run to finish")
        start_run(sandbox, task, at=now, triggered_by=request.query_params.get("source") or "manual")
        return JSONResponse({"message": "Task started successfully"})

    def run_list(request: Request, runs: list[dict[str, Any]]) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 20, 100)
        sort = q.get("sort", "-startedAt")
        if limit is None or sort not in RUN_SORTS:
            return err(400, "limit must be 1-100 and sort one of " + ", ".join(sorted(RUN_SORTS)))
        now = sandbox.clock.now()
        visible = [public_run(r, now) for r in runs if run_status(r, now) is not None]
        far = "9999-12-31T23:59:59.999Z"
        items = _sorted(visible, sort, lambda r, k: r.get(k) or far)
        page = paginate(request, items, limit, CURSORS, {"sort": sort})
        if isinstance(page, str):
            return err(400, page)
        return JSONResponse({"data": page.items, "links": token_links(page.links) if api.scheduling else page.links})

    async def task_runs(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        return run_list(request, st.task_runs(task["id"]))

    async def resource_runs(request: Request) -> Response:
        resource_id = request.path_params["id"]
        if resource_id not in sandbox.apps:
            return err(404, f"resource {resource_id} not found")
        return run_list(request, [r for r in st.runs.values() if r["resourceId"] == resource_id])

    async def last_run(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        now = sandbox.clock.now()
        run = last_run_of(st, task["id"], now)
        if run is None:
            return err(404, "the task has no runs yet")
        return JSONResponse(public_run(run, now))

    async def run_log(request: Request) -> Response:
        task = task_of(request)
        if task is None:
            return err(404, "task not found")
        run = st.runs.get(request.path_params["runId"])
        now = sandbox.clock.now()
        if run is None or run["taskId"] != task["id"] or run_status(run, now) is None:
            return err(404, "run not found for this task")
        text = "\n".join(log_lines(sandbox, run, now))
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(text)
        return JSONResponse({"logContent": text})

    def g(handler: Any, tier: str, body: bool = False) -> Any:
        return guarded_api(sandbox, api, tier, handler, "Task" if body else None)

    base, r, w = api.base, api.reads, api.writes
    return [
        Route(base, g(list_tasks, r), methods=["GET"]),
        Route(base, g(create, w, body=True), methods=["POST"]),
        Route(base + "/resources/{id}/runs", g(resource_runs, r), methods=["GET"]),
        Route(base + "/{id}", g(get_one, r), methods=["GET"]),
        Route(base + "/{id}", g(put_one, w, body=True), methods=["PUT"]),
        Route(base + "/{id}", g(delete_one, w), methods=["DELETE"]),
        Route(base + "/{id}/actions/start", g(start, w), methods=["POST"]),
        Route(base + "/{id}/runs", g(task_runs, r), methods=["GET"]),
        Route(base + "/{id}/runs/last", g(last_run, r), methods=["GET"]),
        Route(base + "/{id}/runs/{runId}/log", g(run_log, r), methods=["GET"]),
    ]


def guarded_api(sandbox: Sandbox, api: TasksApi, tier: str, handler: Any, component: str | None = None) -> Any:
    """Auth, tier and body check in front of a handler; the scheduling API answers 404 while it is switched off."""
    check = contract.checker(api.spec, component) if component else None
    inner = guarded(sandbox, tier, err, handler, body=check)
    if not api.scheduling:
        return inner

    async def endpoint(request: Request) -> Response:
        if tables(sandbox).scheduling_gone:
            return err(404, "Not Found")
        return await inner(request)

    return endpoint
