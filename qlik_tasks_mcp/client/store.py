"""What replicas share, behind one small interface: in this process by default, Redis (or Valkey) when
QLIK_MCP_REDIS_URL is set.

Shared through it: which confirm tokens were used, pending human approvals and their decisions, and Qlik's rate
tiers (one moving window per API key and tier, through the `limits` library, plus the holds after a 429). Keys
expire on their own, so nothing needs cleaning. It lives in client/ because the rate limiter needs it and
tools/ and server/ may use what client/ offers, never the reverse.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.strategies import MovingWindowRateLimiter
    from redis.asyncio import Redis

T = TypeVar("T")
PREFIX = "qlik-tasks-mcp:"
SCHEMES = ("redis", "rediss", "unix")
# A store that does not answer within this is down: a confirmation must fail closed quickly, not hang a call.
TIMEOUT_SECONDS = 2.0


class StoreUnavailable(Exception):
    """The shared store did not answer; the message is one line saying so, without the URL's credentials."""


class Store(Protocol):
    """Keys with a lifetime. `put(only_new=True)` is the atomic set-if-absent that makes things single-use."""

    kind: str

    async def get(self, key: str) -> str | None: ...

    async def get_many(self, *keys: str) -> list[str | None]: ...

    async def put(self, key: str, value: str, ttl: float, *, only_new: bool = False) -> bool:
        """Store `value` for `ttl` seconds; with `only_new`, only if the key is absent. True when stored."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def ping(self) -> None: ...

    async def take_slot(self, key: str, limit: int, window: int) -> float | None:
        """Count one request in the moving window `key` (at most `limit` per `window` seconds): 0 when counted,
        else the seconds until a slot frees. None: windows are not shared here (the caller paces alone)."""
        ...

    async def slot_free_in(self, key: str, limit: int, window: int) -> float | None:
        """Seconds until the window `key` has a free slot (0: one is free), or None as for `take_slot`."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """The embedded default: one process, nothing to run. Thread-safe (the stdio approval page has its own thread)."""

    kind = "in-process"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._items[key]
            return None
        return found[0]

    async def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    async def get_many(self, *keys: str) -> list[str | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    async def put(self, key: str, value: str, ttl: float, *, only_new: bool = False) -> bool:
        with self._lock:
            now = self._clock()
            if len(self._items) > 1024:
                for stale in [k for k, (_, until) in self._items.items() if until <= now]:
                    del self._items[stale]
            if only_new and self._live(key) is not None:
                return False
            self._items[key] = (value, now + max(ttl, 0.001))
            return True

    async def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._items.pop(key, None)

    async def ping(self) -> None:
        return None

    async def take_slot(self, key: str, limit: int, window: int) -> float | None:
        return None

    async def slot_free_in(self, key: str, limit: int, window: int) -> float | None:
        return None

    async def aclose(self) -> None:
        return None


def check_url(url: str) -> str:
    """A Redis URL this server can use; raises ValueError naming what to fix (never echoing a password)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"must start with redis://, rediss:// or unix:// (got {parts.scheme or 'no scheme'}://...)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("has no host, e.g. redis://127.0.0.1:6379/0")
    return url


def where(url: str) -> str:
    """The store's address for messages: host and port only, never credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.hostname}:{parts.port or 6379}"


class RedisStore:
    """Redis or Valkey through redis-py's asyncio client. Every failure is a StoreUnavailable naming the store."""

    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        self.where = where(url)
        # redis-py's asyncio connections belong to the loop that made them; the stdio approval page runs its own.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()
        self._window: MovingWindowRateLimiter | None = None

    def _client(self) -> Redis:
        from redis.asyncio import Redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = Redis.from_url(self.url, decode_responses=True, **_options())
            self._clients[loop] = client
        return client

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"the shared store (Redis at {self.where}) does not answer ({type(exc).__name__})")

    async def _call(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except failures() as exc:
            raise self.unavailable(exc) from None

    async def get(self, key: str) -> str | None:
        return _text(await self._call(self._client().get(PREFIX + key)))

    async def get_many(self, *keys: str) -> list[str | None]:
        return [_text(value) for value in await self._call(self._client().mget([PREFIX + key for key in keys]))]

    async def put(self, key: str, value: str, ttl: float, *, only_new: bool = False) -> bool:
        work = self._client().set(PREFIX + key, value, px=max(1, int(ttl * 1000)), nx=only_new)
        return bool(await self._call(work))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._call(self._client().delete(*(PREFIX + key for key in keys)))

    async def ping(self) -> None:
        await self._call(self._client().ping())

    async def take_slot(self, key: str, limit: int, window: int) -> float | None:
        strategy, item = self._moving_window(), _item(limit, window)
        if await self._call(strategy.hit(item, key)):
            return 0.0
        return await self.slot_free_in(key, limit, window)

    async def slot_free_in(self, key: str, limit: int, window: int) -> float | None:
        stats = await self._call(self._moving_window().get_window_stats(_item(limit, window), key))
        return 0.0 if stats.remaining > 0 else max(0.001, stats.reset_time - time.time())

    def _moving_window(self) -> MovingWindowRateLimiter:
        # `limits` keeps one log of send times per key in Redis and checks it with one script (a moving window).
        if self._window is None:
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import MovingWindowRateLimiter

            url = self.url.replace("unix://", "redis+unix://", 1) if self.url.startswith("unix") else self.url
            storage = RedisStorage(
                "async+" + url,
                implementation="redispy",
                key_prefix=PREFIX + "tier",
                wrap_exceptions=True,
                **_options(),
            )
            self._window = MovingWindowRateLimiter(storage)
        return self._window

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def _options() -> dict[str, Any]:
    """Fail fast: one immediate retry (a pooled connection that died with a restarted server reconnects), then
    the error; redis-py's default backs off for seconds, which would hold a call that must fail closed."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return {
        "socket_connect_timeout": TIMEOUT_SECONDS,
        "socket_timeout": TIMEOUT_SECONDS,
        "retry_on_timeout": False,
        "retry": Retry(NoBackoff(), 1),
    }


def _text(value: str | bytes | None) -> str | None:
    # decode_responses=True gives str; the client's types also allow bytes.
    return value.decode() if isinstance(value, bytes) else value


def _item(limit: int, window: int) -> RateLimitItem:
    from limits import RateLimitItemPerSecond

    return RateLimitItemPerSecond(limit, window)


def failures() -> tuple[type[BaseException], ...]:
    """What a call to Redis raises when the store is down or unreachable (imported only where Redis is used)."""
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    return (OSError, RedisError, StorageError)


def make_store(url: str | None) -> Store:
    return RedisStore(url) if url else MemoryStore()
