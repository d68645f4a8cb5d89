"""Waiting for a run to end: polling pace and progress notifications, shared by every family that runs things."""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

R = TypeVar("R")

# Polling a run: quick at first (most reloads of small apps end in seconds), then backing off.
POLL_FIRST = 0.5
POLL_FACTOR = 1.6
POLL_MAX = 10.0
FIND_RUN_SECONDS = 3.0
MAX_WAIT_SECONDS = 600
FAILED_TAIL = 20
# The `timeout_seconds` parameter of every tool that can wait for a run.
WaitSeconds = Annotated[int, Field(ge=1, le=MAX_WAIT_SECONDS, description="Longest wait (1-600).")]


class Progress:
    """MCP progress must grow with every notification: elapsed seconds, nudged up when polls come quickly."""

    def __init__(self, ctx: Context, total: float) -> None:
        self.ctx = ctx
        self.total = total
        self.last: float | None = None

    async def report(self, elapsed: float, message: str) -> None:
        value = round(elapsed, 1) if self.last is None else max(round(elapsed, 1), round(self.last + 0.1, 1))
        self.last = value
        await self.ctx.report_progress(value, self.total, message)


async def watch(
    poll: Callable[[], Awaitable[R | None]],
    ended: Callable[[R], bool],
    say: Callable[[R | None], str],
    *,
    progress: Progress,
    limit: float,
    began: float,
) -> tuple[R | None, bool]:
    """Poll with backoff until `ended` or `limit` seconds since `began`, reporting progress: (last seen, ended)."""
    delay = POLL_FIRST
    while True:
        current = await poll()
        elapsed = time.monotonic() - began
        if current is not None and ended(current):
            return current, True
        if elapsed >= limit:
            return current, False
        await progress.report(elapsed, f"{say(current)} ({elapsed:.0f} s)")
        await anyio.sleep(min(delay, max(0.0, limit - elapsed)))
        delay = min(delay * POLL_FACTOR, POLL_MAX)
