"""The size switch: a tenant of thousands of apps for the failure-triage benchmark and its scale tests.

`build_sandbox(app_count=n)` with n >= LARGE_FROM seeds, besides the usual first apps: one scheduled task per app,
each run in the last day (its reload stored beside it), and sharing tasks for SHARING_SHARE of the apps' count;
every FAILING_EVERY-th task and sharing task fails (2%). A tenant that size has moved off
reload tasks (NOTES-2026-11.md section 2), so it has none, and no other reload history: every failure in it is
one of those seeded here, which `seeded_failures` lists.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from qlik_tasks_mcp.sandbox import sharing_tasks
from qlik_tasks_mcp.sandbox import tasks as workflow_tasks
from qlik_tasks_mcp.sandbox.core import Sandbox

LARGE_FROM = 1000
FAILING_EVERY = 50  # 2%
# Sharing tasks: 2 for every 5 apps (2,000 on 5,000 apps).
SHARING_SHARE = 0.4
# The first apps keep the usual seed (its tasks, chain and UI-made tasks).
USUAL_APPS = 12
# A failing task failed on each of its runs of the day: every failed run counts.
FAILED_RUNS = 2
TABLE = "large"


@dataclass
class Seeded:
    """What the size switch seeded to fail in the last day: task id -> failed runs, sharing task id -> failed."""

    task_runs: dict[str, int] = field(default_factory=dict)
    sharing: dict[str, int] = field(default_factory=dict)


def seeded(sandbox: Sandbox) -> Seeded:
    found = sandbox.tables.get(TABLE)
    return found if isinstance(found, Seeded) else Seeded()


def seed(sandbox: Sandbox) -> None:
    record = sandbox.tables[TABLE] = Seeded()
    model = next(iter(workflow_tasks.tables(sandbox).tasks.values()), None)
    if model is None:
        return
    _tasks(sandbox, model, record)
    _sharing(sandbox, record)


def _tasks(sandbox: Sandbox, model: dict[str, Any], record: Seeded) -> None:
    st = workflow_tasks.tables(sandbox)
    now = sandbox.clock.now()
    made: list[dict[str, Any]] = []
    for index, app in enumerate(list(sandbox.apps.values())[USUAL_APPS:]):
        body = copy.deepcopy({k: model[k] for k in workflow_tasks.WRITABLE if k in model})
        body["name"] = f"nightly-{app.name.lower().replace(' ', '-')}"
        body["enabled"] = True
        action = body["states"][0]["onEvents"][0]["actions"][0]
        action["functionRef"]["arguments"]["appId"] = app.id
        task = workflow_tasks.build_task(sandbox, body, sandbox.uuid(), app.owner_id, "2026-01-01T00:00:00.000Z")
        made.append(task)
        failing = index % FAILING_EVERY == 7
        if failing:
            st.failing_apps.add(app.id)
            record.task_runs[task["id"]] = FAILED_RUNS
        for run in range(FAILED_RUNS if failing else 1):
            at = now - timedelta(hours=2 + 10 * run + index % 7, minutes=index % 60)
            workflow_tasks.start_run(sandbox, task, at=at, triggered_by="time-schedule", seconds=60 + index % 300)
    # Stored after their runs: none chains to another, and a run looks for followers among the stored tasks.
    st.tasks.update((task["id"], task) for task in made)


def _sharing(sandbox: Sandbox, record: Seeded) -> None:
    st = sharing_tasks.tables(sandbox)
    model = next(t for t in st.tasks.values() if t["type"] == "sheet-sharing" and t["statusCode"] == "VALID")
    now = sandbox.clock.now()
    apps = list(sandbox.apps.values())
    for index in range(int(len(apps) * SHARING_SHARE)):
        app = apps[(index * 5) // 2 % len(apps)]
        task: dict[str, Any] = copy.deepcopy(model) | {"id": sandbox.hex_id(), "name": f"{app.name} pack {index}"}
        task |= {"appId": app.id, "appName": app.name, "spaceId": app.space_id}
        for stale in ("lastExecutionDate", "lastRun"):
            task.pop(stale, None)
        st.tasks[task["id"]] = task
        # Half ran in the last day, half the day before.
        at = now - timedelta(hours=1 + index % 46)
        if index % FAILING_EVERY == 11:
            error = {"code": "REPORT-SEND-FAILED", "title": "Report delivery failed", "detail": "SMTP relay refused"}
            at = now - timedelta(hours=1 + index % 20)
            # The relay refused the run: alternately for every recipient (the task shows FAILED and its count)
            # and for one of them (only that recipient shows the error), as sharing_tasks.show_deliveries reads it.
            every = index // FAILING_EVERY % 2 == 0
            if every:
                task["taskErrors"] = [{"value": "EMAIL_DELIVERY_FAILURE", "timestamp": sharing_tasks.stamp(at)}]
            record.sharing[task["id"]] = 1
            sharing_tasks.start_execution(sandbox, task, at=at, seconds=30, error=error, every_delivery=every)
        else:
            sharing_tasks.start_execution(sandbox, task, at=at, seconds=30)
