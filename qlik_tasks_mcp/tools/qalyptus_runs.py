"""Qalyptus task runs: run (and wait), stop, status, the execution log and the SMTP log."""

import logging
import time
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient
from qlik_tasks_mcp.tools.common import ConfirmToken, Limit, Registrar
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.logs import GREP_MAX, compile_grep, slice_log
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.qalyptus_model import (
    TOOLSET,
    Offset,
    OrgName,
    Orgs,
    Status,
    TaskId,
    Window,
    classify,
    status_text,
    status_time,
    text_of,
    window,
)
from qlik_tasks_mcp.tools.watch import (
    FAILED_TAIL,
    FIND_RUN_SECONDS,
    POLL_FACTOR,
    POLL_FIRST,
    Progress,
    WaitSeconds,
    watch,
)

log = logging.getLogger("qlik_tasks_mcp.tools.qalyptus")


class RunResult(Compact):
    organization: str
    task_id: str
    started: bool
    status: Status | None = None
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout", "unknown_status"] | None = None
    log_tail: str | None = None
    note: str | None = None


class StatusResult(Compact):
    organization: str
    task_id: str
    status: Status | None = None
    note: str | None = None


class StatusPage(Window):
    organization: str
    statuses: list[Status]


class Stopped(Compact):
    task_id: str
    stop_requested: bool
    status: Status | None = None
    note: str | None = None


class TaskLog(Compact):
    organization: str
    task_id: str
    log_kind: Literal["task", "smtp"]
    total_lines: int
    returned: str
    first_line: int | None = None
    last_line: int | None = None
    matches: int | None = None
    next_offset: int | None = Field(None, description="Pass as offset for the next lines.")
    log: str


def register(reg: Registrar, orgs: Orgs) -> None:
    async def new_status(api: QalyptusClient, task_id: str, before_id: Any) -> dict[str, Any] | None:
        current = await api.status(task_id)
        return current if current is not None and current.get("id") != before_id else None

    @reg.tool(TOOLSET, "write", title="Run Qalyptus task")
    async def run_qalyptus_task(
        ctx: Context,
        task_id: TaskId,
        wait: Annotated[bool, Field(description="Wait for the run to end, with progress.")] = False,
        timeout_seconds: WaitSeconds = 60,
        organization: OrgName = None,
    ) -> RunResult:
        """Run a Qalyptus task now; wait=true follows it to the end. Ending the wait never stops the run."""
        api = orgs.get(organization)
        before = await api.status(task_id)
        before_id = before.get("id") if before else None
        await api.run(task_id)
        # From here on the task runs: no error may suggest running it again.
        began = time.monotonic()
        result = RunResult(organization=api.name, task_id=task_id, started=True)
        try:
            if not wait:
                current = await new_status(api, task_id, before_id)
                delay = POLL_FIRST / 2
                while current is None and time.monotonic() - began < FIND_RUN_SECONDS:
                    await anyio.sleep(delay)
                    delay *= POLL_FACTOR
                    current = await new_status(api, task_id, before_id)
                result.status = Status.of(current) if current else None
                result.note = None if current else "The run is not visible yet; check it with get_qalyptus_task_status."
                return result
            progress = Progress(ctx, timeout_seconds)
            await progress.report(0, "task started; waiting for its run")
            try:
                current, ended = await watch(
                    lambda: new_status(api, task_id, before_id),
                    lambda c: classify(status_text(c)) != "active",
                    lambda c: f"status {status_text(c)}" if c else "waiting for the run to appear",
                    progress=progress,
                    limit=timeout_seconds,
                    began=began,
                )
            except anyio.get_cancelled_exc_class():
                log.info("wait for Qalyptus task %s cancelled; its run continues", task_id)
                raise
            result.waited_seconds = round(time.monotonic() - began, 1)
            result.status = Status.of(current) if current else None
            status = status_text(current) if current else "not visible yet"
            await progress.report(result.waited_seconds, f"status {status}")
            kind = classify(status) if current else "active"
            if not ended:
                result.wait_ended = "timeout"
                result.note = (
                    f"Stopped waiting after {timeout_seconds} s. The run was NOT stopped and continues; follow it "
                    "with get_qalyptus_task_status."
                )
            elif kind == "unknown":
                result.wait_ended = "unknown_status"
                result.note = (
                    f"Qalyptus reports status {status!r}, which this server does not know as running or final, so it "
                    "stopped waiting; follow it with get_qalyptus_task_status."
                )
            else:
                result.wait_ended = "finished"
                if kind in ("failure", "warning"):
                    text = await api.log(task_id)
                    tail = slice_log(
                        task_id, "", text, lines=FAILED_TAIL, grep=None, offset=None, source="Qalyptus log"
                    )
                    result.log_tail = tail.log
                    result.note = f"{tail.returned}; get_qalyptus_task_log reads more (log_kind=smtp: e-mail delivery)."
        except ApiError as exc:
            result.note = (
                f"The task was started, but reading its run failed ({exc}). Do not run it again; check it with "
                "get_qalyptus_task_status."
            )
        return result

    async def plan_stop(api: QalyptusClient, task_id: str) -> Plan:
        current = await api.status(task_id)
        if current is None or classify(status_text(current)) != "active":
            last = status_text(current) if current else "never ran"
            raise InvalidInput(
                f"Qalyptus task {task_id} is not queued or running (last status: {last}); nothing to stop"
            )
        name = text_of(current.get("taskName"), 100) or task_id
        return Plan(
            # No status in the question: a run going from queued to running must not make the user be asked again.
            action=f"Stop run {current.get('id')} (queued or running) of Qalyptus task '{name}' in {api.name}",
            changes=["the run ends now; reports not yet generated or sent are not delivered"],
            # The run, not its status: queued -> running between preview and yes is still the same run to stop.
            state={"run": current.get("id")},
            notes=["This cannot be undone; run_qalyptus_task starts a new run."],
        )

    @reg.resolver
    async def ask_stop(ctx: Context, task_id: str, organization: str | None) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_stop(orgs.get(organization), task_id))

    @reg.tool(TOOLSET, "destructive", title="Stop Qalyptus task")
    async def stop_qalyptus_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_stop)],
        organization: OrgName = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[Stopped]:
        """Stop a Qalyptus task's queued or running run. Needs the user's confirmation."""
        api = orgs.get(organization)
        plan = await plan_stop(api, task_id)

        async def act() -> Stopped:
            await api.stop(task_id)
            try:
                after = await api.status(task_id)
            except ApiError as exc:
                return Stopped(
                    task_id=task_id, stop_requested=True, note=f"Stop sent; reading the status failed: {exc}"
                )
            return Stopped(task_id=task_id, stop_requested=True, status=Status.of(after) if after else None)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    @reg.tool(TOOLSET, "read", title="Get Qalyptus task status")
    async def get_qalyptus_task_status(task_id: TaskId, organization: OrgName = None) -> StatusResult:
        """A Qalyptus task's latest run: status, times, message."""
        api = orgs.get(organization)
        current = await api.status(task_id)
        if current is None:
            return StatusResult(organization=api.name, task_id=task_id, note="The task has not run yet.")
        return StatusResult(organization=api.name, task_id=task_id, status=Status.of(current))

    @reg.tool(TOOLSET, "read", title="List Qalyptus task statuses")
    async def list_qalyptus_task_statuses(
        task_id: Annotated[str | None, Field(max_length=128, description="Only this task's runs.")] = None,
        status: Annotated[
            str | None, Field(max_length=40, description="Only this status (any case), e.g. Failed.")
        ] = None,
        limit: Limit = 20,
        offset: Offset = 0,
        organization: OrgName = None,
    ) -> StatusPage:
        """Runs of scheduled Qalyptus tasks, newest first: status, times, message."""
        api = orgs.get(organization)
        rows = await api.statuses()
        if task_id:
            rows = [r for r in rows if str(r.get("taskID") or r.get("taskId") or "") == task_id]
        if status:
            rows = [r for r in rows if status_text(r).lower() == status.strip().lower()]
        rows.sort(key=status_time, reverse=True)
        chosen, info = window(rows, limit, offset, "runs")
        return StatusPage(organization=api.name, statuses=[Status.of(r) for r in chosen], **info)

    @reg.tool(TOOLSET, "read", title="Get Qalyptus task log")
    async def get_qalyptus_task_log(
        task_id: TaskId,
        log_kind: Annotated[
            Literal["task", "smtp"], Field(description="task: the run's log; smtp: its e-mail delivery log.")
        ] = "task",
        lines: Annotated[int, Field(ge=1, le=500, description="Lines to return (1-500).")] = 40,
        grep: Annotated[
            str | None, Field(max_length=GREP_MAX, description="Case-insensitive regex; only matching lines.")
        ] = None,
        offset: Annotated[
            int | None, Field(ge=0, description="Skip this many log lines and read forward; default: the tail.")
        ] = None,
        organization: OrgName = None,
    ) -> TaskLog:
        """The log of a Qalyptus task's latest run (or its SMTP log): tail, from offset, or grep."""
        if grep:
            compile_grep(grep)
        api = orgs.get(organization)
        text = await api.log(task_id, smtp=log_kind == "smtp")
        source = "Qalyptus SMTP log" if log_kind == "smtp" else "Qalyptus log"
        cut = slice_log(task_id, "", text, lines=lines, grep=grep, offset=offset, source=source)
        return TaskLog(
            organization=api.name,
            log_kind=log_kind,
            **cut.model_dump(exclude={"run_id"}),
        )
