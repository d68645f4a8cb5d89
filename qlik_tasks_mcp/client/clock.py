"""The time a client reads and waits on. One object, so a test gives a fake one and no test sleeps for real."""

from __future__ import annotations

import anyio


class Clock:
    """The event loop's clock (anyio's): `now()` in seconds, and `sleep()` on it."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
