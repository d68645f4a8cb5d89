"""Reading a text body line by line, keeping only the lines asked for: a 200 MB log never sits in memory.

A sink receives every line (numbered from 0, already redacted, cut to `LINE_SCAN_CHARS`) and keeps what
it was made for; `TenantHttp.read_lines` drives it. Each sink counts every line, so a result can say
"lines 10-20 of 1,234,567".
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from qlik_tasks_mcp.client.redact import redact

# A line longer than this is kept (and matched) only up to here; the rest is skipped as it streams by.
LINE_SCAN_CHARS = 8000
LOG_FIELDS = ("logContent", "content", "log", "text")


class LineSink(Protocol):
    @property
    def total_lines(self) -> int: ...

    def feed(self, number: int, line: str) -> bool:
        """Take line `number` (0-based); False ends the reading early (then total_lines is a lower bound)."""
        ...


@runtime_checkable
class Pausing(Protocol):
    """A sink that measures its own work (a grep's CPU budget): told when the lines stop until the next chunk
    arrives, so neither the wait nor what its thread runs meanwhile counts as its work."""

    def pause(self) -> None: ...


class TailLines:
    """The last `count` lines."""

    def __init__(self, count: int) -> None:
        self.kept: deque[tuple[int, str]] = deque(maxlen=max(0, count))
        self.total_lines = 0

    def feed(self, number: int, line: str) -> bool:
        self.kept.append((number, line))
        self.total_lines = number + 1
        return True


class LinesFrom:
    """`count` lines from line `offset` on; `more` says whether a line follows them."""

    def __init__(self, offset: int, count: int) -> None:
        self.offset = offset
        self.count = count
        self.kept: list[tuple[int, str]] = []
        self.more = False
        self.total_lines = 0

    def feed(self, number: int, line: str) -> bool:
        self.total_lines = number + 1
        if self.offset <= number < self.offset + self.count:
            self.kept.append((number, line))
        elif number >= self.offset + self.count:
            self.more = True
        return True


class MatchingLines:
    """Lines for which `match` is true, from line `offset` on: the first `count` of them, or the last
    `count` with `last=True`; `matches` counts them all."""

    def __init__(self, match: Callable[[str], bool], count: int, *, offset: int = 0, last: bool = False) -> None:
        self.match = match
        self.offset = offset
        self.last = last
        self.kept: deque[tuple[int, str]] = deque(maxlen=max(0, count) if last else None)
        self.count = count
        self.matches = 0
        self.total_lines = 0

    def feed(self, number: int, line: str) -> bool:
        self.total_lines = number + 1
        if number < self.offset or not self.match(line):
            return True
        self.matches += 1
        if self.last or len(self.kept) < self.count:
            self.kept.append((number, line))
        return True


class _Splitter:
    """Bytes in, numbered lines out; a line past LINE_SCAN_CHARS is cut, and its rest skipped."""

    def __init__(self, sink: LineSink) -> None:
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial: list[str] = []
        self.partial_chars = 0
        self.number = 0
        self.going = True

    def push(self, data: bytes, final: bool = False) -> None:
        text = self.decoder.decode(data, final=final)
        pieces = text.split("\n")
        for piece in pieces[:-1]:
            self._grow(piece)
            self._emit()
            if not self.going:
                return
        self._grow(pieces[-1])
        if final and self.partial_chars:
            self._emit()

    def _grow(self, piece: str) -> None:
        room = LINE_SCAN_CHARS - self.partial_chars
        if room > 0 and piece:
            self.partial.append(piece[:room])
            self.partial_chars += min(room, len(piece))

    def _emit(self) -> None:
        line = "".join(self.partial).removesuffix("\r")
        self.partial, self.partial_chars = [], 0
        self.going = self.sink.feed(self.number, redact(line))
        self.number += 1


async def feed_lines(chunks: AsyncIterator[bytes], sink: LineSink, *, max_bytes: int) -> bool:
    """Pass every line of the byte stream to `sink`; False when the stream ran past `max_bytes`."""
    splitter = _Splitter(sink)
    pause = sink.pause if isinstance(sink, Pausing) else None
    read = 0
    try:
        async for chunk in chunks:
            read += len(chunk)
            if read > max_bytes:
                return False
            splitter.push(chunk)
            if not splitter.going:
                return True
            if pause is not None:
                pause()
        splitter.push(b"", final=True)
        return True
    finally:
        if pause is not None:
            pause()


def text_of_log_json(body: Any) -> str:
    """The log text inside a JSON answer: `{"logContent": ...}` (Qlik) or a like-named field; else empty."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return next((body[k] for k in LOG_FIELDS if isinstance(body.get(k), str)), "")
    return ""
