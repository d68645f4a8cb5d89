"""list_tasks(20) beside get_task and beside its own HTTP request, in-process (issue 28): each row's next run is
worked out from a recent anchor, not from the rule's first start.

    .venv/bin/python -m bench.schedules      (writes bench/schedules.md; bench.run includes it too)

Twenty tasks of one app run hourly from 1 January, each at its own minute (the issue's case: every row's rule has
thousands of runs before now). The same calls are timed with the rules expanded from their first start (the anchor
switched off), so the figures before and after sit side by side in one run; only ratios are compared, never absolute
times.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

from qlik_tasks_mcp.client import schedule
from qlik_tasks_mcp.client.tasks import TaskDoc
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.tasks.tools import next_runs

ROWS = 20
GOAL = 3.0
HOURLY = "RRULE:FREQ=HOURLY;BYMINUTE={minute}"
JANUARY = "2026-01-01T00:00:00"


@contextmanager
def first_start() -> Iterator[None]:
    """Rules expanded from their first start, as before the anchor (the reference figure)."""
    kept = schedule._anchored
    schedule._anchored = lambda rule, after, shift=0: rule  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        schedule._anchored = kept


def hourly_tasks(sandbox: Any) -> str:
    """ROWS hourly tasks started in January on one app (beside its seeded ones); the app's id."""
    tasks = sandbox.tables["tasks"].tasks
    model = next(t for t in tasks.values() if isinstance((t.get("start") or {}).get("schedule"), dict))
    app_id = model["resourceId"]
    for n in range(ROWS):
        task = copy.deepcopy(model)
        task["id"], task["name"], task["enabled"] = sandbox.uuid(), f"hourly {n}", True
        # A rule of its own per row: no row reuses another's reading.
        rule = HOURLY.format(minute=n)
        task["start"] = {"schedule": {"recurrence": rule, "timezone": "Europe/Zurich", "startDateTime": JANUARY}}
        task["metadata"]["updatedAt"] = "2099-01-01T00:00:00.000Z"  # listed first (-updatedAt)
        tasks[task["id"]] = task
    return app_id


async def p50(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def measure(quick: bool = False) -> list[str]:
    mcp, backend = build_server(Settings(sandbox=True))
    sandbox = backend.sandbox
    assert sandbox is not None
    sandbox.rate_limits = False  # the stack is measured, not the tier pacing
    backend.qlik.limiter._limits = dict.fromkeys(backend.qlik.limiter._limits, 10**9)
    app_id = hourly_tasks(sandbox)
    raw = httpx.AsyncClient(
        transport=backend.qlik._http._transport,
        base_url=SANDBOX_URL,
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    n = 20 if quick else 60
    rows = []
    async with Client(mcp) as client:
        listed = (await client.call_tool("list_tasks", {"resource_id": app_id, "limit": ROWS})).structured_content
        assert listed is not None
        hourly = [t for t in listed["tasks"] if t["name"].startswith("hourly")]
        assert len(hourly) == ROWS and all(t.get("next_run") for t in hourly), "every row has its next run"
        task_id = hourly[0]["id"]
        stored = sandbox.tables["tasks"].tasks
        docs = [TaskDoc.model_validate(stored[t["id"]]) for t in hourly]

        async def list_call() -> None:
            await client.call_tool("list_tasks", {"resource_id": app_id, "limit": ROWS})

        async def get_call() -> None:
            await client.call_tool("get_task", {"task_id": task_id})

        async def http_call() -> None:
            params = {"limit": ROWS, "filter": f'resourceId eq "{app_id}"', "sort": "-updatedAt"}
            (await raw.get("/api/scheduling/tasks", params=params)).json()

        for label, mode in (("from a recent anchor (now)", None), ("from the first start (before)", first_start)):
            for fn in (list_call, get_call, http_call):
                await p50(fn, 3)  # warm
            if mode is None:
                listed_ms, get_ms, http_ms = [await p50(f, n) for f in (list_call, get_call, http_call)]
            else:
                with mode():
                    listed_ms, get_ms, http_ms = [await p50(f, n) for f in (list_call, get_call, http_call)]
            with mode() if mode else nullcontext():
                rows_ms = await p50(lambda: next_runs(docs), n)
            met = "met" if listed_ms / get_ms <= GOAL and listed_ms / http_ms <= GOAL else "not met"
            rows.append(
                f"| {label} | {listed_ms:.1f} | {get_ms:.1f} | {http_ms:.1f} | {rows_ms:.2f} | "
                f"{listed_ms / get_ms:.1f}x | {listed_ms / http_ms:.1f}x | {rows_ms / http_ms:.2f}x | "
                f"{met if mode is None else '-'} (goal <= {GOAL:g}x both) |"
            )
    await raw.aclose()
    await backend.aclose()
    header = (
        "| next runs worked out | list_tasks | get_task | HTTP | next runs | list / get | list / HTTP | "
        "next runs / HTTP | goal |\n|---|---|---|---|---|---|---|---|---|"
    )
    return [
        f"## Next runs in lists: list_tasks({ROWS}) of hourly rules started in January, p50 ms in-process",
        "`get_task` works out three next runs of one task; `HTTP` is list_tasks' own request to the sandbox; "
        "`next runs` is the rows' next-run work alone. A tool call's time includes the in-process MCP client "
        "checking the result against the tool's output schema.",
        "\n".join([header, *rows]),
    ]


if __name__ == "__main__":
    report = "\n\n".join(anyio.run(measure)) + "\n"
    print(report)
    (Path(__file__).parent / "schedules.md").write_text(
        f"# Next runs in lists\n\nMade by `python -m bench.schedules` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} cores).\n\n{report.replace('## ', '### ')}"
    )
