"""Valid arguments for every tool, so the fault and abuse suite can call the whole catalogue.

A new tool without an entry here fails `test_every_tool_has_a_sample`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from qlik_tasks_mcp.sandbox import qalyptus
from qlik_tasks_mcp.sandbox import reloads as app_reloads
from qlik_tasks_mcp.sandbox import sharing_tasks as sharing
from qlik_tasks_mcp.sandbox.qalyptus import Org
from tests.conftest import Harness

Sample = Callable[[Harness, bool], Awaitable[dict[str, Any]]]
SAMPLES: dict[str, Sample] = {}


def sample(name: str) -> Callable[[Sample], Sample]:
    def register(fn: Sample) -> Sample:
        SAMPLES[name] = fn
        return fn

    return register


async def sample_args(h: Harness, name: str, *, destructive: bool = False) -> dict[str, Any]:
    return await SAMPLES[name](h, destructive)


def _enabled_reload_task(h: Harness) -> str:
    return next(t["id"] for t in h.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")


@sample("list_reload_tasks")
async def _list_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("get_reload_task")
async def _get_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h)}


@sample("create_reload_task")
async def _create_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {
        "app_id": next(iter(h.sandbox.apps)),
        "schedule": {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "UTC"},
    }


@sample("update_reload_task")
async def _update_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h), "enabled": False}


@sample("delete_reload_task")
async def _delete_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h)}


@sample("migrate_reload_tasks")
async def _migrate_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h)}


# Tasks (/api/v1/tasks).
def _task(h: Harness, *, scheduled: bool = True) -> dict[str, Any]:
    return next(t for t in h.sandbox.tables["tasks"].tasks.values() if t["enabled"] and ("start" in t) == scheduled)


def _run(h: Harness) -> dict[str, Any]:
    return next(iter(h.sandbox.tables["tasks"].runs.values()))


@sample("list_tasks")
async def _list_tasks(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"resource_id": _task(h)["resourceId"], "limit": 5}


@sample("get_task")
async def _get_task(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _task(h)["id"]}


@sample("create_task")
async def _create_task(h: Harness, destructive: bool) -> dict[str, Any]:
    return {
        "name": "Nightly sample",
        "app_id": next(iter(h.sandbox.apps)),
        "schedule": {"interval": "R/2026-03-01T02:00:00/P1D", "time_zone": "UTC"},
    }


@sample("update_task")
async def _update_task(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _task(h)["id"], "enabled": False}


@sample("get_task_dependencies")
async def _get_task_dependencies(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _task(h)["id"], "direction": "descendants"}


@sample("delete_task")
async def _delete_task(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _task(h)["id"]}


@sample("start_task")
async def _start_task(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _task(h, scheduled=False)["id"]}


@sample("list_task_runs")
async def _list_task_runs(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _run(h)["taskId"], "limit": 5}


@sample("list_resource_task_runs")
async def _list_resource_task_runs(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"resource_id": _run(h)["resourceId"], "limit": 5}


@sample("get_last_task_run")
async def _get_last_task_run(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _run(h)["taskId"]}


@sample("get_task_run_log")
async def _get_task_run_log(h: Harness, destructive: bool) -> dict[str, Any]:
    run = _run(h)
    return {"task_id": run["taskId"], "run_id": run["id"], "lines": 10}


# App reloads.
def _failed_reload(h: Harness) -> dict[str, Any]:
    return next(r for r in app_reloads.tables(h.sandbox).reloads.values() if r["_outcome"] == "FAILED")


@sample("list_reloads")
async def _list_reloads(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"status": ["FAILED"], "limit": 5}


@sample("get_reload")
async def _get_app_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"reload_id": _failed_reload(h)["id"]}


@sample("reload_app")
async def _reload_app(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"app_id": next(iter(h.sandbox.apps))}


@sample("cancel_reload")
async def _cancel_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    app_id = list(h.sandbox.apps)[-1]
    running = app_reloads.start_reload(h.sandbox, app_id, type="external", resource_type="api", seconds=600)
    return {"reload_id": running["id"]}


@sample("get_reload_log")
async def _get_reload_log(h: Harness, destructive: bool) -> dict[str, Any]:
    reload = _failed_reload(h)
    return {"reload_id": reload["id"], "app_id": reload["appId"], "lines": 10}


@sample("get_app_script")
async def _get_app_script(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"app_id": next(iter(h.sandbox.apps)), "line": 20, "context": 3}


@sample("check_app_script")
async def _check_app_script(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"script": "Orders:\nLOAD OrderID, Amount\nFROM [lib://DataFiles/orders.qvd] (qvd);"}


# Directory.
@sample("find_apps")
async def _find_apps(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"name": "sales", "limit": 5}


@sample("find_users")
async def _find_users(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"text": "example.com", "limit": 5}


# Ops, across kinds.
@sample("explain_schedule")
async def _explain(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"kind": "reload", "task_id": _enabled_reload_task(h), "count": 2}


@sample("find_failures")
async def _find_failures(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"hours": 24}


@sample("set_tasks_enabled")
async def _set_enabled(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"enabled": False, "tasks": [{"kind": "reload", "id": _enabled_reload_task(h)}]}


@sample("get_app_schedule_overview")
async def _overview(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"app_id": next(iter(h.sandbox.apps)), "runs": 1}


@sample("find_orphans")
async def _find_orphans(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"app_ids": list(h.sandbox.apps)[:2]}


@sample("get_reload_stats")
async def _reload_stats(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"app_ids": list(h.sandbox.apps)[:2], "days": 2}


@sample("find_missed_runs")
async def _missed_runs(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"hours": 24, "app_id": next(iter(h.sandbox.apps))}


@sample("delete_tasks")
async def _delete_tasks(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"tasks": [{"kind": "reload", "id": _enabled_reload_task(h)}]}


@sample("change_tasks_owner")
async def _change_owner(h: Harness, destructive: bool) -> dict[str, Any]:
    task = next(t for t in sharing.tables(h.sandbox).tasks.values() if t.get("statusCode") != "DELETING")
    heir = next(u for u in h.sandbox.users.values() if u.status == "active" and u.id != task["owner"])
    return {"new_owner": heir.id, "tasks": [{"kind": "sharing", "id": task["id"]}]}


# Qalyptus (the sandbox organization).
def _qorg(h: Harness) -> Org:
    return qalyptus.tables(h.sandbox).org()


def _qtask(h: Harness, name: str = "Monthly Sales Distribution") -> dict[str, Any]:
    return next(t for t in _qorg(h).tasks.values() if t["name"] == name)


def _qrunning(h: Harness) -> dict[str, Any]:
    """A task with a run going on (started here, an hour long), so stop has something to stop."""
    org, task = _qorg(h), _qtask(h, "HR Headcount Yearly")
    last = qalyptus.latest_run(org, task["id"])
    now = h.sandbox.clock.now()
    if last is None or qalyptus.run_status(last, now) not in qalyptus.ACTIVE:
        qalyptus.start_run(h.sandbox, org, task, at=now, by="Manual", seconds=3600)
    return task


@sample("list_qalyptus_tasks")
async def _list_qtasks(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("get_qalyptus_task")
async def _get_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("update_qalyptus_task")
async def _update_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "is_active": False}


@sample("duplicate_qalyptus_task")
async def _duplicate_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("delete_qalyptus_task")
async def _delete_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("list_qalyptus_reports")
async def _list_qreports(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("list_qalyptus_task_triggers")
async def _list_qtriggers(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("set_qalyptus_task_schedule")
async def _set_qschedule(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "schedule": {"frequency": "daily", "time_zone": "UTC", "at": "05:00"}}


@sample("delete_qalyptus_task_triggers")
async def _delete_qtriggers(h: Harness, destructive: bool) -> dict[str, Any]:
    task = _qtask(h)
    return {"task_id": task["id"], "trigger_ids": [_qorg(h).triggers[task["id"]][0]["id"]]}


@sample("set_qalyptus_task_event")
async def _set_qevent(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "app_id": next(iter(h.sandbox.apps))}


@sample("create_qalyptus_task")
async def _create_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "Sample task",
        "project": "Sales",
        "reports": [{"report": "Sales by Region", "format": "PDF"}],
    }
    # An address outside the organization's users needs a yes; a task for its users only is made at once.
    return args | {"recipients": ["someone@partner.example"]} if destructive else args


@sample("change_qalyptus_task_owner")
async def _change_qowner(h: Harness, destructive: bool) -> dict[str, Any]:
    task = _qtask(h)
    heir = next(u for u in _qorg(h).users if u["id"] != task["owner"])
    return {"task_id": task["id"], "owner": heir["id"]}


@sample("get_qalyptus_task_recipients")
async def _get_qrecipients(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("set_qalyptus_task_recipients")
async def _set_qrecipients(h: Harness, destructive: bool) -> dict[str, Any]:
    task = _qtask(h)
    return {"task_id": task["id"], "remove": [_qorg(h).recipients[task["id"]][0]["id"]]}


@sample("get_qalyptus_task_email")
async def _get_qemail(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("update_qalyptus_task_email")
async def _update_qemail(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "active": False}


@sample("set_qalyptus_task_report")
async def _set_qreport(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "report": "Monthly P&L", "format": "PDF"}


@sample("delete_qalyptus_task_reports")
async def _delete_qreports(h: Harness, destructive: bool) -> dict[str, Any]:
    task = _qtask(h)
    return {"task_id": task["id"], "task_report_ids": [_qorg(h).task_reports[task["id"]][0]["id"]]}


def _qrequest(h: Harness) -> str:
    """An on-demand request of the sandbox organization (made here when there is none)."""
    org = _qorg(h)
    if not org.requests:
        report = next(r for r in org.reports.values() if r["name"] == "Sales by Region")
        qalyptus.start_request(h.sandbox, org, report, "PDF", {}, at=h.sandbox.clock.now())
    return next(iter(org.requests))


@sample("generate_qalyptus_report")
async def _generate_qreport(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"report": "Sales by Region", "output_format": "PDF", "wait": False}


@sample("get_qalyptus_request")
async def _get_qrequest(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"request_id": _qrequest(h)}


@sample("list_qalyptus_requests")
async def _list_qrequests(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("delete_qalyptus_request")
async def _delete_qrequest(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"request_id": _qrequest(h)}


@sample("run_qalyptus_task")
async def _run_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h, "Daily Finance Pack")["id"]}


@sample("stop_qalyptus_task")
async def _stop_qtask(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qrunning(h)["id"]}


@sample("get_qalyptus_task_status")
async def _get_qstatus(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"]}


@sample("list_qalyptus_task_statuses")
async def _list_qstatuses(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("get_qalyptus_task_log")
async def _get_qlog(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _qtask(h)["id"], "lines": 10}


# Sharing tasks (/api/v1/sharing-tasks).
def _yours(h: Harness, task: dict[str, Any]) -> bool:
    """Whether the sandbox's key may change the task: a TenantAdmin's any, anyone else's their own."""
    return h.sandbox.caller().admin or task["owner"] == h.sandbox.caller_id


def _sharing(h: Harness) -> dict[str, Any]:
    return next(
        t
        for t in sharing.tables(h.sandbox).tasks.values()
        if t.get("enabled") and t["type"] == "sheet-sharing" and t.get("statusCode") != "DELETING" and _yours(h, t)
    )


def _sharing_running(h: Harness) -> dict[str, Any]:
    """A task with a delivery in progress (started on the sandbox, as a run in flight would be)."""
    task = _sharing(h)
    table = sharing.tables(h.sandbox)
    table.run_seconds = 3600
    if not any(e["status"] in ("in-progress", "initialized") for e in sharing.public_executions(h.sandbox, task)):
        sharing.start_execution(h.sandbox, task)
    return task


@sample("list_sharing_tasks")
async def _list_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("get_sharing_task")
async def _get_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _sharing(h)["id"]}


@sample("create_sharing_task")
async def _create_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    return {
        "name": "Sample pack",
        "type": "sheet-sharing",
        "content": {"app_id": next(iter(h.sandbox.apps)), "sheet_ids": ["s1"]},
        "recipients": {"emails": ["someone@example.com"]},
        "schedule": {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6"], "time_zone": "UTC"},
        # Sent at once to an address outside the tenant: the one case of a creation that asks first.
        "execute_on_creation": destructive,
    }


@sample("patch_sharing_task")
async def _patch_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    # Disabling takes something away, so it goes through the gate like every destructive call.
    return {"task_id": _sharing(h)["id"], "enabled": False}


@sample("delete_sharing_task")
async def _delete_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _sharing(h)["id"]}


@sample("execute_sharing_task")
async def _execute_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    task = _sharing(h)
    # A send within the hour of the last one asks first; an older last send acts at once.
    ago = timedelta(minutes=5 if destructive else 300)
    task["lastExecutionDate"] = task["lastRun"] = (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"task_id": task["id"]}


@sample("cancel_sharing_task")
async def _cancel_sharing(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _sharing_running(h)["id"]}


@sample("list_sharing_task_executions")
async def _list_sharing_executions(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _sharing(h)["id"], "limit": 5}


@sample("get_sharing_task_execution")
async def _get_sharing_execution(h: Harness, destructive: bool) -> dict[str, Any]:
    table = sharing.tables(h.sandbox)
    task_id, runs = next((k, v) for k, v in table.executions.items() if v and _yours(h, table.tasks[k]))
    return {"task_id": task_id, "execution_id": runs[0]["id"]}


@sample("get_sharing_settings")
async def _get_sharing_settings(h: Harness, destructive: bool) -> dict[str, Any]:
    return {}


@sample("update_sharing_settings")
async def _update_sharing_settings(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"report_subscription_enabled": False}
