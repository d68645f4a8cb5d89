"""Client-side pacing to the tiers the specs declare (`x-qlik-tier`), so a busy tenant sees no 429s."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum

import anyio


class Tier(Enum):
    """Rate-limit tiers from the specs: requests per minute."""

    T1 = ("1", 1000)
    T2 = ("2", 100)
    SPECIAL = ("special", 600)
    # Special tiers of single endpoints: POST /api/v1/reloads and its cancel (50/min); users' filter (200/min).
    RELOADS = ("special", 50)
    USERS_FILTER = ("special", 200)
    QALYPTUS = ("qalyptus", 300)

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def per_minute(self) -> int:
        return self.value[1]


class TierLimiter:
    """Sliding-window log per tier: never more than `limit` requests in any 60 s window.

    A token bucket of the same size allows nearly twice the limit across a window boundary,
    which a sliding-window server answers with 429; a log of send times does not.
    """

    def __init__(
        self,
        limits: dict[Tier, int] | None = None,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._limits = limits or {tier: tier.per_minute for tier in Tier}
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[Tier, deque[float]] = {tier: deque() for tier in Tier}
        self._locks: dict[Tier, anyio.Lock] = {}
        # Until when (on the clock) the service asked a tier to stay silent for longer than a call may wait.
        self._held_until: dict[Tier, float] = {}
        self.waited_seconds = 0.0

    async def acquire(self, tier: Tier) -> None:
        lock = self._locks.setdefault(tier, anyio.Lock())
        async with lock:
            sent = self._sent[tier]
            limit = self._limits[tier]
            while True:
                now = self._clock()
                while sent and now - sent[0] >= self._window:
                    sent.popleft()
                if len(sent) < limit:
                    sent.append(now)
                    return
                wait = self._window - (now - sent[0])
                self.waited_seconds += wait
                await self._sleep(wait)

    def free_in(self, tier: Tier) -> float:
        """Seconds until the tier's window has a free request (0: one is free now), as far as this process knows."""
        sent = self._sent[tier]
        now = self._clock()
        while sent and now - sent[0] >= self._window:
            sent.popleft()
        if len(sent) < self._limits[tier]:
            return 0.0
        return self._window - (now - sent[len(sent) - self._limits[tier]])

    def pause(self, tier: Tier, seconds: float) -> None:
        """After a 429 whose Retry-After a call may wait out, hold the whole tier back: the next send waits.

        The caller checks `seconds` against its cap first; a longer wait goes to `hold`, never here.
        """
        now = self._clock()
        sent = self._sent[tier]
        stamp = now - self._window + seconds
        sent.clear()
        sent.extend([stamp] * self._limits[tier])

    def hold(self, tier: Tier, seconds: float) -> None:
        """Remember that the service asked the tier to wait `seconds`, longer than any call waits.

        Nothing sleeps on it: calls of the tier ask `held_for` and fail fast with the time to retry.
        """
        self._held_until[tier] = max(self._held_until.get(tier, 0.0), self._clock() + seconds)

    def held_for(self, tier: Tier) -> float:
        """Seconds left of the tier's hold; 0 when it is free."""
        return max(0.0, self._held_until.get(tier, 0.0) - self._clock())


# Told before a call waits for its tier (tier label, seconds): a tool sends it on as a progress notification, so
# no wait is silent. Set per call with `pacing_reported`.
PacingNotice = Callable[[str, float], Awaitable[None]]
_notice: ContextVar[PacingNotice | None] = ContextVar("pacing_notice", default=None)


@contextmanager
def pacing_reported(notice: PacingNotice) -> Iterator[None]:
    """Pacing waits of the requests sent in this block (and the tasks it starts) are told to `notice` first."""
    token = _notice.set(notice)
    try:
        yield
    finally:
        _notice.reset(token)


async def report_pacing(tier: Tier, seconds: float) -> None:
    notice = _notice.get()
    if notice is not None:
        await notice(tier.label, seconds)
