"""Bounded work is measured by the work: the grep and the recurrence expansion count their own thread's CPU time,
never the time the machine was busy elsewhere. Fake CPU clocks for the bounds; a thread that waits (asleep, as on a
busy machine it waits for a core) for the proof that waiting is free."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.lines import feed_lines
from qlik_tasks_mcp.client.schedule import ExpansionBudget, occurrences, rrule_lines, time_zone
from qlik_tasks_mcp.tools import logs
from qlik_tasks_mcp.tools.logs import GREP_SECONDS, SAMPLE_LINES, Grep, LogSink, compile_grep, read_log, slice_log
from qlik_tasks_mcp.tools.sources import Budget


class FakeCpu:
    """A thread's CPU clock that moves only when the fake pattern works (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


class CostlyPattern:
    """Matches nothing; each line costs `cost` seconds of fake CPU, or really sleeps `sleep` (no CPU at all)."""

    def __init__(self, cpu: FakeCpu | None = None, cost: float = 0.0, sleep: float = 0.0) -> None:
        self.cpu, self.cost, self.sleep, self.searched = cpu, cost, sleep, 0

    def search(self, line: str) -> None:
        self.searched += 1
        if self.cpu is not None:
            self.cpu.now += self.cost
        if self.sleep:
            time.sleep(self.sleep)


def grep_of(pattern: CostlyPattern, cpu: FakeCpu | None = None) -> Grep:
    return Grep(pattern, cpu_clock=cpu) if cpu is not None else Grep(pattern)  # pyright: ignore[reportArgumentType]


def test_the_grep_is_refused_once_its_matching_work_passes_the_budget() -> None:
    cpu = FakeCpu()
    pattern = CostlyPattern(cpu, cost=0.01)
    grep = grep_of(pattern, cpu)
    budget_lines = round(GREP_SECONDS / 0.01)
    for _ in range(budget_lines):
        assert grep.hit("a line") is False
    refused = rf"took too long \(over {GREP_SECONDS:g} s of matching on this log\); simplify it"
    with pytest.raises(InvalidInput, match=refused):
        for _ in range(SAMPLE_LINES + 1):
            grep.hit("a line")
    # Refused within one sample of the bound, and the clock was read once per SAMPLE_LINES lines, not per line.
    assert budget_lines < pattern.searched <= budget_lines + SAMPLE_LINES
    assert cpu.reads <= pattern.searched // SAMPLE_LINES + 2


def test_what_the_thread_runs_between_batches_is_not_charged() -> None:
    cpu = FakeCpu()
    grep = grep_of(CostlyPattern(cpu, cost=0.001), cpu)
    for _ in range(10):
        for _ in range(100):
            grep.hit("a line")
        grep.pause()
        cpu.now += 60.0  # another session's work on this thread while the next chunk is awaited
    assert grep.spent == pytest.approx(10 * 100 * 0.001)
    grep.hit("still searching")


def test_a_grep_that_waits_for_a_core_is_not_charged_for_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real clocks: a thread that is not running (here asleep; on a busy machine, waiting for a core) spends no
    CPU time. Counted on the wall clock, these 100 lines would spend 0.1 s, twice the budget set here."""
    monkeypatch.setattr(logs, "GREP_SECONDS", 0.05)
    pattern = CostlyPattern(sleep=0.001)
    grep = grep_of(pattern)
    for _ in range(100):
        grep.hit("a line")
    grep.pause()
    assert pattern.searched == 100 and grep.spent < 0.05, grep.spent


@pytest.mark.anyio
async def test_a_streamed_log_pauses_the_grep_between_chunks() -> None:
    cpu = FakeCpu()
    sink = LogSink(lines=5, grep="error", offset=None)
    grep = sink._slicer.grep  # pyright: ignore[reportPrivateUsage]
    assert grep is not None
    grep.cpu_clock = cpu

    async def chunks() -> AsyncIterator[bytes]:
        for number in range(20):
            yield "".join(f"chunk {number} line {i}\n" for i in range(10)).encode()
            cpu.now += 60.0  # the wait for the next chunk, and other sessions' work on the event loop

    assert await feed_lines(chunks(), sink, max_bytes=1 << 20)
    assert grep.spent == 0.0 and sink.total_lines == 200
    assert sink.result("t", "r").matches == 0


def test_a_literal_grep_of_a_long_log_is_answered() -> None:
    """The work of a plain grep stays far inside the budget: 100,000 lines, counted, every match found."""
    text = "\n".join(f"12:00:{i % 60:02d} LOAD field_{i} FROM [lib://data/file_{i}.qvd] (qvd);" for i in range(100_000))
    result = slice_log("t", "r", text, lines=5, grep="file_9999[0-9]", offset=None)
    assert result.total_lines == 100_000 and result.matches == 10
    assert compile_grep("file_1").search("FILE_1") is not None  # case-insensitive, as documented


def test_the_expansion_is_refused_once_its_work_passes_the_budget() -> None:
    cpu = FakeCpu()
    budget = ExpansionBudget(seconds=1.0, cpu_clock=cpu)
    with budget.measured():
        for _ in range(10):
            cpu.now += 0.1
            budget.check()
        cpu.now += 0.1
        with pytest.raises(InvalidInput, match=r"took more than 1 s of work; simplify it"):
            budget.check()


def test_an_expansion_budget_is_charged_only_while_an_expansion_runs() -> None:
    """Shared by every task of a listing: the awaits between them (other sessions' work) are not charged."""
    cpu = FakeCpu()
    budget = ExpansionBudget(seconds=1.0, cpu_clock=cpu)
    for _ in range(5):
        with budget.measured():
            cpu.now += 0.1
            budget.check()
        cpu.now += 100.0
        budget.check()  # outside an expansion: nothing to charge
    assert budget.spent == pytest.approx(0.5)


def test_an_expansion_that_waits_for_a_core_is_not_charged_for_the_wait() -> None:
    budget = ExpansionBudget(seconds=0.05)
    with budget.measured():
        for _ in range(100):
            time.sleep(0.001)
            budget.check()
    assert budget.spent < 0.05, budget.spent


def test_the_expansions_use_the_budget_they_are_given() -> None:
    daily = ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"]
    assert rrule_lines(daily) == daily
    spent = ExpansionBudget(seconds=0.0, cpu_clock=FakeCpu())
    spent.spent = 1.0  # an earlier task of the listing spent it all
    with pytest.raises(InvalidInput, match="took more than 0 s of work"):
        occurrences(daily, time_zone("UTC"), None, after=datetime.now(UTC), count=3, budget=spent)
    runs = occurrences(daily, time_zone("UTC"), None, after=datetime.now(UTC), count=3, budget=ExpansionBudget())
    assert len(runs) == 3 and all(r.hour == 6 for r in runs)


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["text", "lines", "stream"])
async def test_every_way_of_reading_a_log_greps_alike(shape: str) -> None:
    lines = [f"line {i} {'ERROR' if i % 7 == 0 else 'ok'}" for i in range(1000)]

    async def stream() -> AsyncIterator[str]:
        for line in lines:
            yield line

    given = {"text": "\n".join(lines), "lines": iter(lines), "stream": stream()}[shape]
    result = await read_log("t", "r", given, lines=3, grep="error", offset=None)
    assert result.total_lines == 1000 and result.matches == len(range(0, 1000, 7))
    assert result.last_line == 995


def test_a_scan_budget_ends_at_its_deadline_or_its_last_request() -> None:
    """The scans' time bound (a real tenant is waited on, so it is the wall clock's), on given times."""
    budget = Budget(requests=3, deadline=10.0)
    assert budget.spend(1.0, "first") and budget.spend(10.0, "second")
    assert not budget.spend(10.5, "late") and budget.skipped == ["late"]
    assert budget.spend(2.0, "third") and not budget.spend(3.0, "fourth")
    assert budget.skipped == ["late", "fourth"]
