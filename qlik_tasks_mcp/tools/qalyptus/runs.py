"""Qalyptus task runs: run (and wait), stop, status, the execution log and the SMTP log."""

from dataclasses import dataclass
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient, StatusDoc
from qlik_tasks_mcp.tools.follow import FAILED_TAIL, Followed, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.logs import GREP_MAX, LogSink, LogSlice
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Limit
from qlik_tasks_mcp.tools.qalyptus.models import (
    Offset,
    OrgName,
    QalyptusOrgs,
    Status,
    TaskId,
    Window,
    classify,
    messages_of,
    task_named,
    window,
)


class RunResult(Compact):
    organization: str
    task_id: str
    started: bool
    status: Status | None = None
    messages: str | None = Field(default=None, description="The runs' messages, fenced once as tenant text.")
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout", "unknown_status"] | None = None
    log_tail: str | None = None
    note: str | None = None


class StatusResult(Compact):
    organization: str
    task_id: str
    status: Status | None = None
    messages: str | None = Field(default=None, description="The runs' messages, fenced once as tenant text.")
    note: str | None = None


class StatusPage(Window):
    organization: str
    statuses: list[Status]
    messages: str | None = Field(default=None, description="The runs' messages, fenced once as tenant text.")


class Stopped(Compact):
    task_id: str
    stop_requested: bool
    status: Status | None = None
    messages: str | None = Field(default=None, description="The runs' messages, fenced once as tenant text.")
    note: str | None = None


class TaskLog(LogSlice):
    organization: str
    task_id: str | None = None
    request_id: str | None = None
    log_kind: Literal["task", "smtp"]


def _say(run: StatusDoc | None) -> str:
    return f"status {run.status}" if run is not None else "waiting for the run to appear"


def _ended(run: StatusDoc) -> bool:
    # An unknown status ends the wait too: the result says so instead of polling to the timeout.
    return classify(run.status) != "active"


@dataclass
class FailedTail:
    """The log tail of a run that failed or warned; keeps what was returned, for the note."""

    api: QalyptusClient
    task_id: str
    returned: str | None = None

    async def __call__(self, run: StatusDoc) -> str | None:
        if classify(run.status) not in ("failure", "warning"):
            return None
        sink = await self.api.stream_log(self.task_id, LogSink(lines=FAILED_TAIL, grep=None, offset=None))
        cut = sink.result(self.task_id, "", "Qalyptus log")
        self.returned = cut.returned
        return cut.log


def _wait_outcome(result: RunResult, followed: Followed[StatusDoc], tail: FailedTail) -> None:
    """How the wait ended, in the words this tool has always used."""
    if followed.waited_seconds is None:
        return
    result.waited_seconds = followed.waited_seconds
    if not followed.finished:
        result.wait_ended = "timeout"
    elif followed.run is not None and classify(followed.run.status) == "unknown":
        result.wait_ended = "unknown_status"
        result.note = (
            f"Qalyptus reports status {followed.run.status!r}, which this server does not know as running or final, "
            "so it stopped waiting; follow it with get_qalyptus_task_status."
        )
    else:
        result.wait_ended = "finished"
        if followed.log_tail is not None:
            result.note = f"{tail.returned}; get_qalyptus_task_log reads more (log_kind=smtp: e-mail delivery)."


@write("Run Qalyptus task")
async def run_qalyptus_task(
    orgs: QalyptusOrgs,
    ctx: Context,
    task_id: TaskId,
    wait: bool = False,
    timeout_seconds: WaitSeconds = 60,
    organization: OrgName = None,
) -> RunResult:
    """Run a Qalyptus task now; wait=true follows it to the end. Ending the wait never stops the run."""
    api = orgs.get(organization)
    tail = FailedTail(api, task_id)
    watch = RunWatch[StatusDoc](
        latest=lambda: api.status(task_id),
        run_id=lambda run: run.id or "",
        ended=_ended,
        say=_say,
        tail_if_failed=tail,
    )
    followed = await follow(
        watch,
        ctx=ctx,
        start=lambda: api.run(task_id),
        wait=wait,
        timeout_seconds=timeout_seconds,
        check_with="get_qalyptus_task_status",
    )
    result = RunResult(organization=api.name, task_id=task_id, started=True, note=followed.note)
    result.status = Status.of(followed.run) if followed.run is not None else None
    result.messages = messages_of([result.status]) if result.status else None
    result.log_tail = followed.log_tail
    if wait:
        _wait_outcome(result, followed, tail)
    return result


async def plan_stop(orgs: QalyptusOrgs, task_id: str, organization: str | None) -> Plan:
    api = orgs.get(organization)
    current = await api.status(task_id)
    if current is None or classify(current.status) != "active":
        last = current.status if current else "never ran"
        raise InvalidInput(f"Qalyptus task {task_id} is not queued or running (last status: {last}); nothing to stop")
    task = await task_named(api, task_id, current.task_name)
    return Plan(
        # No status in the question: a run going from queued to running must not make the user be asked again.
        action=f"Stop run {current.id} (queued or running) of {task} in {api.name}",
        changes=["the run ends now; reports not yet generated or sent are not delivered"],
        # The run, not its status: queued -> running between preview and yes is still the same run to stop.
        state={"run": current.id},
        notes=["This cannot be undone; run_qalyptus_task starts a new run."],
    )


@destructive("Stop Qalyptus task", plan=plan_stop)
async def stop_qalyptus_task(orgs: QalyptusOrgs, plan: Plan, task_id: TaskId, organization: OrgName = None) -> Stopped:
    """Stop a Qalyptus task's queued or running run."""
    api = orgs.get(organization)
    await api.stop(task_id)
    try:
        after = await api.status(task_id)
    except ApiError as exc:
        return Stopped(task_id=task_id, stop_requested=True, note=f"Stop sent; reading the status failed: {exc}")
    shown = Status.of(after) if after else None
    return Stopped(task_id=task_id, stop_requested=True, status=shown, messages=messages_of([shown]) if shown else None)


@read("Get Qalyptus task status")
async def get_qalyptus_task_status(orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None) -> StatusResult:
    """A Qalyptus task's latest run: status, times, message."""
    api = orgs.get(organization)
    current = await api.status(task_id)
    if current is None:
        return StatusResult(organization=api.name, task_id=task_id, note="The task has not run yet.")
    shown = Status.of(current)
    return StatusResult(organization=api.name, task_id=task_id, status=shown, messages=messages_of([shown]))


@read("List Qalyptus task statuses")
async def list_qalyptus_task_statuses(
    orgs: QalyptusOrgs,
    task_id: Annotated[str | None, Field(max_length=128)] = None,
    status: Annotated[str | None, Field(max_length=40, description="Any case, e.g. Failed.")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
    organization: OrgName = None,
) -> StatusPage:
    """Runs of scheduled Qalyptus tasks, newest first: status, times, message."""
    api = orgs.get(organization)
    rows = await api.statuses()
    if task_id:
        rows = [r for r in rows if r.task_id == task_id]
    if status:
        rows = [r for r in rows if r.status.lower() == status.strip().lower()]
    rows.sort(key=lambda r: r.sort_time, reverse=True)
    chosen, info = window(rows, limit, offset, "runs", ("task_name", "by"))
    statuses = [Status.of(r) for r in chosen]
    return StatusPage(organization=api.name, statuses=statuses, messages=messages_of(statuses), **info)


@read("Get Qalyptus task log")
async def get_qalyptus_task_log(
    orgs: QalyptusOrgs,
    task_id: Annotated[str | None, Field(max_length=128)] = None,
    request_id: Annotated[str | None, Field(max_length=128, description="An on-demand request instead.")] = None,
    log_kind: Annotated[Literal["task", "smtp"], Field(description="smtp: its e-mail delivery log.")] = "task",
    lines: Annotated[int, Field(ge=1, le=500, description="Max 500.")] = 40,
    grep: Annotated[str | None, Field(max_length=GREP_MAX, description="Case-insensitive regex.")] = None,
    offset: Annotated[int | None, Field(ge=0, description="Lines to skip; default: the tail.")] = None,
    organization: OrgName = None,
) -> TaskLog:
    """The log of a Qalyptus task's latest run or of a request (or its SMTP log): tail, offset, or grep."""
    if bool(task_id) == bool(request_id):
        raise InvalidInput("give task_id (its latest run) or request_id (an on-demand request), not both")
    sink = LogSink(lines=lines, grep=grep, offset=offset)  # a bad grep is refused here, before any request
    api = orgs.get(organization)
    target = task_id or request_id or ""
    await api.stream_log(target, sink, smtp=log_kind == "smtp", request=bool(request_id))
    source = "Qalyptus SMTP log" if log_kind == "smtp" else "Qalyptus log"
    cut = sink.result(target, "", source)
    return TaskLog(
        organization=api.name,
        log_kind=log_kind,
        request_id=request_id,
        **cut.model_dump(exclude={"run_id", "task_id"}),
        task_id=task_id,
    )
