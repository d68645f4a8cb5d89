"""Reading long logs the same way everywhere: the tail by default, offset paging, or a bounded grep;
always saying which lines of how many were returned, and framing the text as untrusted tenant data.

Lines are consumed one at a time and only the slice asked for is kept (a bounded deque for the tail, the
offset window, at most `lines` matches), so a log read as a stream costs memory for the answer only.
"""

import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import anyio
import re2
from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.model import Compact

GREP_MAX = 200
LINE_MAX = 500
# Seconds of CPU time the matching may take on one log, counted on the thread that matches: a grep sharing a
# busy machine is charged for its own work only, never for the time other processes held the cores.
GREP_SECONDS = 3.0
_BATCH = 2000
# A repeated group holding a repetition or alternatives, e.g. (a+)+ or (a|aa)+: catastrophic backtracking's shape.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}|](?:[^()\\]|\\.)*\)[+*{]")


class LogSlice(Compact):
    """The part of a log a tool returns, and where it sits in the whole; every log tool's result extends it."""

    total_lines: int
    returned: str
    first_line: int | None = None
    last_line: int | None = None
    matches: int | None = None
    next_offset: int | None = Field(None, description="Pass as offset for the next lines.")
    log: str


class RunLog(LogSlice):
    task_id: str
    run_id: str


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the error comes back to the caller; nothing goes to stderr
    options.never_capture = True
    return options


class Matcher(Protocol):
    def search(self, text: str) -> object: ...


# RE2's metacharacters: a pattern without any of them is a literal.
_META = frozenset("\\.^$*+?()[]{}|")


@dataclass(frozen=True)
class _Literal:
    """An ASCII literal pattern, matched as RE2 would (case-insensitively) but as a substring test: a line costs
    a sixteenth of RE2's call, so a literal grep of a huge log stays far inside GREP_SECONDS. A line that is not
    ASCII goes to RE2, whose case folding is the reference."""

    needle: str
    regex: Any

    def search(self, text: str) -> object:
        if text.isascii():
            return True if self.needle in text.lower() else None
        return self.regex.search(text)


def compile_grep(pattern: str) -> Matcher:
    """A case-insensitive RE2 pattern: it cannot backtrack, so a line costs time linear in its length."""
    if len(pattern) > GREP_MAX:
        raise InvalidInput(f"grep is {len(pattern)} characters; at most {GREP_MAX} are accepted")
    if _NESTED_REPEAT.search(pattern):
        raise InvalidInput(
            f"grep {pattern[:60]!r} repeats a group that holds a repetition or alternatives (like (a+)+ or (a|b)+), "
            "which can run for very long; simplify it"
        )
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidInput(
            f"grep {pattern[:60]!r} is not a valid regular expression: {why} (RE2 syntax: no backreferences "
            "or lookarounds)"
        ) from None
    if pattern.isascii() and not _META & set(pattern):
        return _Literal(pattern.lower(), compiled)
    return compiled


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX else line[:LINE_MAX] + " [line cut]"


# The CPU clock is a system call (about 0.6 us): it is read once per this many lines, not around each match.
SAMPLE_LINES = 64


@dataclass
class Grep:
    """Matches a pattern line by line, within GREP_SECONDS of matching work in all (a huge log's bound).

    Work is the CPU time of the thread that matches (`cpu_clock`), read every SAMPLE_LINES lines: time the thread
    waits for a core is not work. A stretch ends when the lines pause (`pause()`, at the end of a batch or a chunk
    of the stream) or move to another thread, so neither the wait nor what the thread ran meanwhile is charged."""

    pattern: Matcher
    cpu_clock: Callable[[], float] = time.thread_time
    spent: float = 0.0
    _thread: int | None = None
    _since: float = 0.0
    _unsampled: int = 0

    def hit(self, line: str) -> bool:
        if self.spent > GREP_SECONDS:
            raise InvalidInput(
                f"grep pattern took too long (over {GREP_SECONDS:g} s of matching on this log); simplify it, "
                "or read the log by offset"
            )
        if self._thread != threading.get_ident():
            self._thread, self._since, self._unsampled = threading.get_ident(), self.cpu_clock(), 0
        found = self.pattern.search(line[: LINE_MAX * 4])
        self._unsampled += 1
        if self._unsampled >= SAMPLE_LINES:
            self._charge()
        return found is not None

    def pause(self) -> None:
        """The lines stop for now: charge the stretch; the next line, on whatever thread, starts another."""
        if self._thread == threading.get_ident():
            self._charge()
        self._thread = None

    def _charge(self) -> None:
        now = self.cpu_clock()
        self.spent += now - self._since
        self._since, self._unsampled = now, 0


@dataclass
class _Slicer:
    """Takes a log's lines in order; keeps the tail, the offset window, or at most `lines` grep matches."""

    lines: int
    offset: int | None
    grep: Grep | None
    total: int = 0
    matches: int = 0
    matches_after: int = 0
    kept: deque[tuple[int, str]] = field(default_factory=deque[tuple[int, str]])

    def __post_init__(self) -> None:
        if self.offset is None:
            self.kept = deque(maxlen=self.lines)

    @property
    def total_lines(self) -> int:
        return self.total

    def feed(self, batch: Iterable[str]) -> None:
        try:
            for line in batch:
                self.feed_line(self.total, line)
        finally:
            self.pause()

    def pause(self) -> None:
        if self.grep is not None:
            self.grep.pause()

    def feed_line(self, number: int, line: str) -> bool:
        """One line, numbered from 0 (client.lines.LineSink's call); never ends the reading early."""
        self.total = number + 1
        if self.grep is None:
            if self.offset is None or self.offset <= number < self.offset + self.lines:
                self.kept.append((number, _clip(line)))
        elif self.grep.hit(line):
            self.matches += 1
            self._keep_match(number, line)
        return True

    def _keep_match(self, index: int, line: str) -> None:
        if self.offset is None:
            self.kept.append((index, _clip(line)))
        elif index >= self.offset:
            self.matches_after += 1
            if len(self.kept) < self.lines:
                self.kept.append((index, _clip(line)))


def _grep_result(slicer: _Slicer, grep: str, ids: tuple[str, str], source: str) -> RunLog:
    chosen = list(slicer.kept)
    next_offset: int | None = None
    if slicer.offset is None:
        where = "the last " if slicer.matches > slicer.lines else ""
    else:
        next_offset = chosen[-1][0] + 1 if slicer.matches_after > slicer.lines else None
        where = f"from line {slicer.offset + 1}: "
    body = "\n".join(f"{i + 1}: {line}" for i, line in chosen)
    returned = f"{where}{len(chosen)} of {slicer.matches} lines matching /{grep}/i (prefixed with their line numbers)"
    return RunLog(
        task_id=ids[0],
        run_id=ids[1],
        total_lines=slicer.total,
        returned=returned,
        first_line=chosen[0][0] + 1 if chosen else None,
        last_line=chosen[-1][0] + 1 if chosen else None,
        matches=slicer.matches,
        next_offset=next_offset,
        log=untrusted(body, source),
    )


def _lines_result(slicer: _Slicer, ids: tuple[str, str], source: str) -> RunLog:
    total = slicer.total
    next_offset: int | None = None
    if slicer.offset is None:
        start, end = max(0, total - slicer.lines), total
        how = "tail; pass offset to read from another line" if start > 0 else "whole log"
    else:
        start = min(slicer.offset, total)
        end = min(total, start + slicer.lines)
        next_offset = end if end < total else None
        how = "from offset"
    body = "\n".join(line for _, line in slicer.kept)
    returned = f"lines {start + 1}-{end} of {total} ({how})" if end > start else f"no lines (the log has {total})"
    return RunLog(
        task_id=ids[0],
        run_id=ids[1],
        total_lines=total,
        returned=returned,
        first_line=start + 1 if end > start else None,
        last_line=end if end > start else None,
        next_offset=next_offset,
        log=untrusted(body, source),
    )


def _result(slicer: _Slicer, grep: str | None, ids: tuple[str, str], source: str) -> RunLog:
    return _grep_result(slicer, grep, ids, source) if grep else _lines_result(slicer, ids, source)


def _slicer(lines: int, grep: str | None, offset: int | None) -> _Slicer:
    return _Slicer(lines=lines, offset=offset, grep=Grep(compile_grep(grep)) if grep else None)


class LogSink:
    """A client.lines.LineSink for TenantHttp.read_lines: keeps the slice slice_log() would return.

    Its grep runs on the calling thread within GREP_SECONDS of that thread's CPU time."""

    def __init__(self, *, lines: int, grep: str | None, offset: int | None) -> None:
        self._slicer = _slicer(lines, grep, offset)
        self._grep = grep

    @property
    def total_lines(self) -> int:
        return self._slicer.total

    def feed(self, number: int, line: str) -> bool:
        return self._slicer.feed_line(number, line)

    def pause(self) -> None:
        """client.lines.feed_lines' call between chunks: the wait for the next one is not the grep's work."""
        self._slicer.pause()

    def result(self, task_id: str, run_id: str, source: str = "run log") -> RunLog:
        return _result(self._slicer, self._grep, (task_id, run_id), source)


def slice_log(
    task_id: str,
    run_id: str,
    text: str,
    *,
    lines: int,
    grep: str | None,
    offset: int | None,
    source: str = "run log",
) -> RunLog:
    """The tail (default), `lines` from `offset`, or the lines matching `grep`, saying what was returned.

    `source` names the log in its untrusted-content frame. Runs on the calling thread: from a tool, prefer
    read_log(), which greps off the event loop."""
    slicer = _slicer(lines, grep, offset)
    slicer.feed(text.splitlines())
    return _result(slicer, grep, (task_id, run_id), source)


def _split(item: str) -> list[str]:
    # An item may be a line or carry separators of its own: split as str.splitlines() would, so a log read
    # as a stream is numbered exactly as the same log read whole.
    return item.splitlines() or [""]


async def read_log(
    task_id: str,
    run_id: str,
    log: str | Iterable[str] | AsyncIterable[str],
    *,
    lines: int,
    grep: str | None,
    offset: int | None,
    source: str = "run log",
) -> RunLog:
    """slice_log() for a tool: over the whole text or a stream of lines, keeping only the slice asked for;
    a grep runs in a worker thread (within GREP_SECONDS of its CPU time), so other sessions never wait for it."""
    slicer = _slicer(lines, grep, offset)
    if isinstance(log, str):
        await anyio.to_thread.run_sync(slicer.feed, log.splitlines())
    elif isinstance(log, AsyncIterable):
        batch: list[str] = []
        async for item in log:
            batch.extend(_split(item))
            if len(batch) >= _BATCH:
                await _feed(slicer, batch)
                batch = []
        await _feed(slicer, batch)
    else:
        await anyio.to_thread.run_sync(partial(_feed_all, slicer, log))
    return _result(slicer, grep, (task_id, run_id), source)


async def _feed(slicer: _Slicer, batch: list[str]) -> None:
    if slicer.grep is None:
        slicer.feed(batch)  # keeping lines is cheap: no thread hop per batch
    else:
        await anyio.to_thread.run_sync(slicer.feed, batch)


def _feed_all(slicer: _Slicer, log: Iterable[str]) -> None:
    # One stretch of grep work for the whole iterable (it runs on one worker thread), not one per item.
    try:
        for item in log:
            for line in _split(item):
                slicer.feed_line(slicer.total, line)
    finally:
        slicer.pause()
