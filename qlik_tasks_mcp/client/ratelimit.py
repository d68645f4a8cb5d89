"""Client-side pacing to the tiers the specs declare (`x-qlik-tier`), so a busy tenant sees no 429s."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import anyio

from qlik_tasks_mcp.client.store import MemoryStore, Store, StoreUnavailable

log = logging.getLogger("qlik_tasks_mcp.client")
T = TypeVar("T")


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


# Qlik's rate limits count within minutes; a Retry-After beyond five of them is not believed past that.
LONGEST_BELIEVED = 300.0
# A held tier lets one trial request through this often, so one bad answer cannot stop the server.
TRIAL_EVERY = 30.0
# After the shared store fails, pace alone for this long before asking it again (a dead host costs a timeout).
STORE_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Admission:
    """What a request of a tier may do now: wait `wait` s (a short pause after a 429), or fail fast for `held` s
    (a long hold), or go as the `trial` that tests whether the hold is over."""

    wait: float = 0.0
    held: float = 0.0
    trial: bool = False


class TierLimiter:
    """Sliding-window log per tier: never more than `limit` requests in any 60 s window, and holds after a 429.

    A token bucket of the same size allows nearly twice the limit across a window boundary,
    which a sliding-window server answers with 429; a log of send times does not.

    With a shared store (Redis), the window is one per API key (`scope`) and tier across replicas (`limits`'
    moving window) and so are the pauses and holds; if the store fails, this process paces alone (logged once)
    until it answers again. `clock` is the wall clock, as replicas compare times.
    """

    def __init__(
        self,
        limits: dict[Tier, int] | None = None,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        *,
        store: Store | None = None,
        scope: str = "local",
    ) -> None:
        self._limits = limits or {tier: tier.per_minute for tier in Tier}
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[Tier, deque[float]] = {tier: deque() for tier in Tier}
        self._locks: dict[Tier, anyio.Lock] = {}
        self._local = MemoryStore(clock)
        self._store: Store = store or self._local
        self._scope = scope
        self._store_down_until: float | None = None
        self.waited_seconds = 0.0

    def _key(self, tier: Tier, what: str) -> str:
        return f"tier:{self._scope}:{tier.name}:{what}"

    async def _shared(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """`work` on the shared store, or on this process's own when there is none or it does not answer."""
        if self._store is not self._local:
            now = time.monotonic()
            if self._store_down_until is None or now >= self._store_down_until:
                try:
                    result = await work(self._store)
                except StoreUnavailable as exc:
                    if self._store_down_until is None:
                        log.warning("%s: rate tiers are paced by this process alone until it answers", exc)
                    self._store_down_until = now + STORE_RETRY_SECONDS
                else:
                    if self._store_down_until is not None:
                        log.warning("the shared store answers again: rate tiers are shared again")
                        self._store_down_until = None
                    return result
        return await work(self._local)

    async def acquire(self, tier: Tier) -> None:
        lock = self._locks.setdefault(tier, anyio.Lock())
        async with lock:
            limit, window = self._limits[tier], max(1, round(self._window))
            while True:
                shared = await self._shared(lambda store: store.take_slot(self._key(tier, "window"), limit, window))
                wait = self._take_local(tier) if shared is None else shared
                if wait <= 0:
                    return
                self.waited_seconds += wait
                await self._sleep(wait)

    def _take_local(self, tier: Tier) -> float:
        sent = self._sent[tier]
        now = self._clock()
        while sent and now - sent[0] >= self._window:
            sent.popleft()
        if len(sent) < self._limits[tier]:
            sent.append(now)
            return 0.0
        return self._window - (now - sent[0])

    async def free_in(self, tier: Tier) -> float:
        """Seconds until the tier's window has a free request (0: one is free now)."""
        limit, window = self._limits[tier], max(1, round(self._window))
        shared = await self._shared(lambda store: store.slot_free_in(self._key(tier, "window"), limit, window))
        if shared is not None:
            return shared
        sent = self._sent[tier]
        now = self._clock()
        while sent and now - sent[0] >= self._window:
            sent.popleft()
        if len(sent) < limit:
            return 0.0
        return self._window - (now - sent[len(sent) - limit])

    async def pause(self, tier: Tier, seconds: float) -> None:
        """After a 429 whose Retry-After a call may wait out, hold the whole tier back: the next send waits.

        The caller checks `seconds` against its cap first; a longer wait goes to `hold`, never here.
        """
        until = self._clock() + seconds
        await self._shared(lambda store: store.put(self._key(tier, "pause"), repr(until), seconds))

    async def hold(self, tier: Tier, seconds: float) -> float:
        """The service asked the tier to wait `seconds`, longer than any call waits: calls of the tier fail fast
        (nothing sleeps on it) until a trial request is due. Believed for at most LONGEST_BELIEVED; a trial goes
        every TRIAL_EVERY. Returns the seconds until the next trial."""
        believed = min(seconds, LONGEST_BELIEVED)
        trial_in = min(believed, TRIAL_EVERY)
        now = self._clock()

        async def put(store: Store) -> None:
            await store.put(self._key(tier, "hold"), repr(now + believed), believed)
            # While this key lives no trial goes; the first request after it expires claims the next one.
            await store.put(self._key(tier, "trial"), repr(now + trial_in), trial_in)

        await self._shared(put)
        return trial_in

    async def admit(self, tier: Tier) -> Admission:
        """Whether a request of the tier may go now (see Admission); a due trial is claimed by one caller only."""
        hold_key, trial_key, pause_key = self._key(tier, "hold"), self._key(tier, "trial"), self._key(tier, "pause")

        async def decide(store: Store) -> Admission:
            hold, trial_at, pause = await store.get_many(hold_key, trial_key, pause_key)
            now = self._clock()
            if hold is None:
                return Admission(wait=max(0.0, float(pause) - now) if pause else 0.0)
            if trial_at is None:
                claimed = await store.put(trial_key, repr(now + TRIAL_EVERY), TRIAL_EVERY, only_new=True)
                if claimed:
                    return Admission(trial=True)
                trial_at = await store.get(trial_key)
            left = float(trial_at) - now if trial_at else TRIAL_EVERY
            return Admission(held=max(0.001, min(left, float(hold) - now)))

        return await self._shared(decide)

    async def release(self, tier: Tier) -> None:
        """A trial was answered without 429: the hold is over."""
        await self._shared(lambda store: store.delete(self._key(tier, "hold"), self._key(tier, "trial")))


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
