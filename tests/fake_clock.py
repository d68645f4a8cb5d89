"""A clock that moves only when someone waits on it: tests of pacing, retries and budgets sleep for no real time,
so a busy machine cannot make them fail, and they assert the waits themselves."""

from __future__ import annotations

import anyio

from qlik_tasks_mcp.client.clock import Clock
from qlik_tasks_mcp.client.http import TenantHttp
from qlik_tasks_mcp.client.ratelimit import TierLimiter


class FakeClock(Clock):
    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


def fake_clock(client: TenantHttp, limits: dict | None = None) -> FakeClock:
    """`client`'s call budget, retries and pacing on one fake clock (the limiter made anew, with `limits`)."""
    clock = FakeClock()
    client.clock = clock
    client.limiter = TierLimiter(limits, clock=clock.now, sleep=clock.sleep)
    return clock
