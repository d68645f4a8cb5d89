"""A clock that moves only when someone waits on it: tests of pacing, retries and budgets sleep for no real time,
so a busy machine cannot make them fail, and they assert the waits themselves."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from qlik_tasks_mcp.client.clock import Clock
from qlik_tasks_mcp.client.http import TenantHttp
from qlik_tasks_mcp.client.ratelimit import TierLimiter
from qlik_tasks_mcp.sandbox.core import Sandbox
from qlik_tasks_mcp.tools import follow


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


class SandboxClock(FakeClock):
    """A fake clock whose waits move the sandbox tenant's time too: a run the sandbox made ends while the follower
    waits for it, in no real time."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    async def sleep(self, seconds: float) -> None:
        self.sandbox.clock.advance(timedelta(seconds=max(0.0, seconds)))
        await super().sleep(seconds)


def follow_on_sandbox_time(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> SandboxClock:
    """The run follower (tools/follow.py) polls on a SandboxClock for the rest of the test."""
    clock = SandboxClock(sandbox)
    monkeypatch.setattr(follow, "CLOCK", clock)
    return clock
