"""find_failures over 24 h on a 5,000-app tenant (5,000 tasks, 2,000 sharing tasks, 2% failing), per issue 17.

    .venv/bin/python -m bench.failures

Requests are counted per rate tier as they leave the server; the time they would take at Qlik's tier limits is
worked out from those counts (a sliding window of `limit` requests per 60 s), not slept through: the run itself is
not paced. Peak memory comes from a second, untimed run under tracemalloc, so tracing never slows the timed one.
"""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from mcp import Client

from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.sandbox import build_sandbox, large
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings

APPS = 5000
HOURS = 24
GOAL_REQUESTS = 150
# Requests per minute of each tier label, as the client paces them (the special tiers' smallest is the bound).
TIER_LIMITS = {"1": Tier.T1.per_minute, "2": Tier.T2.per_minute, "special": Tier.RELOADS.per_minute}
TIER_LIMITS |= {"qalyptus": Tier.QALYPTUS.per_minute}


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts each request by the rate tier the client sent it under."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.by_tier: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.by_tier[str(request.extensions.get("qtm_tier", "?"))] += 1
        return await self.inner.handle_async_request(request)


@dataclass
class Run:
    report: dict[str, Any]
    seconds: float
    by_tier: Counter[str]
    seeded: large.Seeded


def seconds_at_limit(requests: int, per_minute: int) -> float:
    """The least time `requests` take under a sliding window of `per_minute` per 60 s: the first `per_minute` go
    at once, each further batch a window later."""
    return 60.0 * ((requests - 1) // per_minute) if requests else 0.0


async def scan_once() -> Run:
    sandbox, app = build_sandbox(app_count=APPS, rate_limits=False)
    counting = CountingTransport(SandboxTransport(app))
    # As bench/run.py builds its Settings: the rest comes from the defaults.
    options: dict[str, Any] = {"sandbox": True}
    mcp, backend = build_server(Settings(**options), transport=counting)
    # Not paced: the time at the tier limits is worked out from the counts instead of slept through.
    backend.qlik.limiter._limits = dict.fromkeys(backend.qlik.limiter._limits, 10**9)
    for client in backend.qalyptus.values():
        client.limiter._limits = dict.fromkeys(client.limiter._limits, 10**9)
    try:
        async with Client(mcp) as session:
            started = time.perf_counter()
            result = await session.call_tool("find_failures", {"hours": HOURS})
            seconds = time.perf_counter() - started
    finally:
        await backend.aclose()
    assert not result.is_error and result.structured_content is not None, result.content
    return Run(result.structured_content, seconds, counting.by_tier, large.seeded(sandbox))


def found_of(run: Run) -> tuple[int, int, int, int]:
    """(failed task runs found, seeded), (failing sharing tasks found, seeded): a task counts only with every
    one of its failed runs."""
    groups = run.report["groups"]
    runs = {g["task_id"]: g["failures"] for g in groups if g["kind"] == "task"}
    sharing = {g["task_id"] for g in groups if g["kind"] == "sharing"}
    task_runs = sum(n for task, n in run.seeded.task_runs.items() if runs.get(task) == n)
    return (
        task_runs,
        sum(run.seeded.task_runs.values()),
        len(sharing & set(run.seeded.sharing)),
        len(run.seeded.sharing),
    )


async def peak_memory() -> int:
    """Peak traced memory of a whole scan, tenant included, in a run of its own (never the timed one)."""
    tracemalloc.start()
    try:
        await scan_once()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def tier_rows(by_tier: Counter[str]) -> list[str]:
    rows = []
    for tier, count in sorted(by_tier.items()):
        limit = TIER_LIMITS.get(tier)
        at_limit = f"{seconds_at_limit(count, limit):.0f}" if limit else "-"
        rows.append(f"| requests in tier {tier} | {count} | {limit or '-'}/min; {at_limit} s at the limit |")
    return rows


async def measure() -> list[str]:
    """The benchmark's markdown lines: a heading, what was measured, and each figure beside its goal."""
    run = await scan_once()
    peak = await peak_memory()
    task_found, task_seeded, sharing_found, sharing_seeded = found_of(run)
    total = sum(run.by_tier.values())
    slowest = max(
        (seconds_at_limit(n, TIER_LIMITS[t]) for t, n in run.by_tier.items() if t in TIER_LIMITS), default=0.0
    )
    everything = task_found == task_seeded and sharing_found == sharing_seeded
    return [
        f"## find_failures over {HOURS} h on {APPS:,} apps, 5,000 tasks, 2,000 sharing tasks (2% failing)",
        "",
        "Requests counted per tier as sent; time at the tier limits worked out from the counts (not slept); "
        "peak memory from a separate untimed run under tracemalloc.",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
        f"| seeded failures found | {'all' if everything else 'NOT all'} | all |",
        f"| failed task runs found (each counted) | {task_found} of {task_seeded} | {task_seeded} |",
        f"| failing sharing tasks found | {sharing_found} of {sharing_seeded} | {sharing_seeded} |",
        f"| requests | {total} | at most {GOAL_REQUESTS} |",
        *tier_rows(run.by_tier),
        f"| time at the tier limits | {slowest:.0f} s | no wait (every tier within one minute's limit) |",
        f"| stopped early (budget) | {run.report['stopped_early']} ({len(run.report.get('not_checked', []))} shown "
        "not checked) | - |",
        f"| requests per kind (spent/share) | {run.report.get('requests')} | each within its share |",
        f"| wall time (unpaced, in-process tenant) | {run.seconds:.2f} s | - |",
        f"| peak memory (tracemalloc, separate run) | {peak / 2**20:.1f} MiB | - |",
    ]


async def _main() -> None:
    print("\n".join(await measure()))


if __name__ == "__main__":
    anyio.run(_main)
