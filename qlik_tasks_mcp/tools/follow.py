"""The one run follower: start something, find the run it made, follow it to the end with progress, and say how it
ended, for every family that runs things (tasks, Qalyptus tasks, sharing tasks).

Once the start succeeded nothing here suggests starting again: a failed read becomes a note, and ending the wait
(timeout or the client cancelling the call) never cancels the run.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.clock import Clock
from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.tools.fence import one_line
from qlik_tasks_mcp.tools.logs import slice_log
from qlik_tasks_mcp.tools.names import failure_reason

R = TypeVar("R")
log = logging.getLogger("qlik_tasks_mcp.tools.follow")

# Polling a run: quick at first (most reloads of small apps end in seconds), then backing off.
POLL_FIRST = 0.5
POLL_FACTOR = 1.6
POLL_MAX = 10.0
# Without waiting, how long to look for the new run before saying it is not visible yet.
FIND_RUN_SECONDS = 3.0
MAX_WAIT_SECONDS = 600
# Log lines returned with a run that failed.
FAILED_TAIL = 20
# What a follow polls and times its wait on; a test puts one here whose sleeps move the sandbox's time instead.
CLOCK = Clock()
# The `timeout_seconds` parameter of every tool that can wait for a run.
WaitSeconds = Annotated[int, Field(ge=1, le=MAX_WAIT_SECONDS, description="Max 600.")]


class Progress:
    """MCP progress must grow with every notification: elapsed seconds, nudged up when polls come quickly."""

    def __init__(self, ctx: Context, total: float) -> None:
        self.ctx = ctx
        self.total = total
        self.last: float | None = None

    async def report(self, elapsed: float, message: str) -> None:
        value = round(elapsed, 1) if self.last is None else max(round(elapsed, 1), round(self.last + 0.1, 1))
        self.last = value
        # Progress texts carry tenant words (a run's status as the service gave it): one line, bounded.
        await self.ctx.report_progress(value, self.total, one_line(message, 300))


@dataclass
class RunWatch(Generic[R]):
    """How to see one family's runs of one task."""

    latest: Callable[[], Awaitable[R | None]]
    run_id: Callable[[R], str]
    ended: Callable[[R], bool]
    # Progress text for the current state (None: no new run seen yet).
    say: Callable[[R | None], str]
    # The log tail of a run that failed or warned; None when it did neither.
    tail_if_failed: Callable[[R], Awaitable[str | None]] | None = None


@dataclass
class Followed(Generic[R]):
    """How following ended. `run` is the new run (None: not seen). `finished`: it was seen ending.
    `waited_seconds` is set when the wait ran to its end (finished or timeout); None without waiting, or when a
    read failed while waiting. `note` says what to do next when the outcome needs it."""

    run: R | None
    finished: bool
    waited_seconds: float | None
    log_tail: str | None
    note: str | None


class FailedTail(Generic[R]):
    """A `tail_if_failed` for a log read as text: the last FAILED_TAIL lines, framed as tenant text; `returned`
    keeps which lines they were, for the note that says where to read more."""

    def __init__(
        self, failed: Callable[[R], bool], read: Callable[[R], Awaitable[str]], *, source: str = "run log"
    ) -> None:
        self.failed = failed
        self.read = read
        self.source = source
        self.returned: str | None = None

    async def __call__(self, run: R) -> str | None:
        if not self.failed(run):
            return None
        cut = slice_log("", "", await self.read(run), lines=FAILED_TAIL, grep=None, offset=None, source=self.source)
        self.returned = cut.returned
        return cut.log


class _Runs(Generic[R]):
    """The runs of one start: a run is new when it is not the one that was latest before the start."""

    def __init__(self, watch: RunWatch[R], before: R | None) -> None:
        self.watch = watch
        self.before_id = watch.run_id(before) if before is not None else None

    async def new(self) -> R | None:
        run = await self.watch.latest()
        return run if run is not None and self.watch.run_id(run) != self.before_id else None

    def ended(self, run: R | None) -> bool:
        return run is not None and self.watch.ended(run)


async def read_after(call: Awaitable[R], what: str) -> tuple[R | None, str | None]:
    """A read after an action was sent (a re-read, a log): its answer, or None and a note saying the action stands.
    Nothing read after an action turns its result into an error, which would invite doing it again."""
    try:
        return await call, None
    except ClientError as exc:
        why = failure_reason(exc)
        return None, f"It was done, but {what} could not be read afterwards ({why}); do not do it again."


async def follow(
    watch: RunWatch[R],
    *,
    ctx: Context,
    start: Callable[[], Awaitable[object]],
    wait: bool,
    timeout_seconds: float,
    check_with: str,
) -> Followed[R]:
    """Start, then find the new run (a short search) or, with `wait`, follow it until it ends or `timeout_seconds`.

    Errors before and from `start` propagate (nothing was started); any read error after it becomes the note.
    `check_with` names the tool that shows the run's state."""
    runs = _Runs(watch, await watch.latest())
    await start()
    clock = CLOCK
    began = clock.now()
    followed = Followed[R](run=None, finished=False, waited_seconds=None, log_tail=None, note=None)
    try:
        if wait:
            await _wait(runs, followed, ctx=ctx, clock=clock, began=began, limit=timeout_seconds, check_with=check_with)
        else:
            await _find(runs, followed, clock=clock, began=began, check_with=check_with)
    except ClientError as exc:
        followed.note = (
            f"It was started, but reading its run failed ({exc}). Do not start it again; check it with {check_with}."
        )
    except anyio.get_cancelled_exc_class():
        log.info("the wait was cancelled; the run continues")
        raise
    return followed


async def _find(runs: _Runs[R], followed: Followed[R], *, clock: Clock, began: float, check_with: str) -> None:
    """Without waiting: look for the new run briefly, so the answer can name it."""
    run = await runs.new()
    delay = POLL_FIRST / 2
    while run is None and clock.now() - began < FIND_RUN_SECONDS:
        await clock.sleep(delay)
        delay *= POLL_FACTOR
        run = await runs.new()
    followed.run = run
    followed.finished = runs.ended(run)
    if run is None:
        followed.note = f"The run is not visible yet; check it with {check_with}."


async def _wait(
    runs: _Runs[R],
    followed: Followed[R],
    *,
    ctx: Context,
    clock: Clock,
    began: float,
    limit: float,
    check_with: str,
) -> None:
    progress = Progress(ctx, limit)
    await progress.report(0, f"started; {runs.watch.say(None)}")
    delay = POLL_FIRST
    while True:
        followed.run = await runs.new()
        elapsed = clock.now() - began
        if runs.ended(followed.run) or elapsed >= limit:
            break
        await progress.report(elapsed, f"{runs.watch.say(followed.run)} ({elapsed:.0f} s)")
        await clock.sleep(min(delay, max(0.0, limit - elapsed)))
        delay = min(delay * POLL_FACTOR, POLL_MAX)
    followed.finished = runs.ended(followed.run)
    followed.waited_seconds = round(clock.now() - began, 1)
    await progress.report(followed.waited_seconds, runs.watch.say(followed.run))
    if not followed.finished:
        followed.note = (
            f"Stopped waiting after {limit:g} s. The run was NOT cancelled and NOT stopped: it continues; "
            f"follow it with {check_with}."
        )
    elif followed.run is not None and runs.watch.tail_if_failed is not None:
        followed.log_tail = await runs.watch.tail_if_failed(followed.run)
