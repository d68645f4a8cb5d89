"""Waiting for a run to end: polling pace and progress notifications, shared by every family that runs things."""

from mcp.server.mcpserver import Context

# Polling a run: quick at first (most reloads of small apps end in seconds), then backing off.
POLL_FIRST = 0.5
POLL_FACTOR = 1.6
POLL_MAX = 10.0
FIND_RUN_SECONDS = 3.0
MAX_WAIT_SECONDS = 600
FAILED_TAIL = 20


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
