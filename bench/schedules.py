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
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from qlik_tasks_mcp.client import schedule
from qlik_tasks_mcp.client.tasks import TaskDoc, scim_filter
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.tasks import models as tasks_models
from qlik_tasks_mcp.tools.tasks import tools as tasks_tools
from qlik_tasks_mcp.tools.tasks.models import next_runs

ROWS = 20
GOAL = 3.0
HOURLY = "RRULE:FREQ=HOURLY;BYMINUTE={minute}"
JANUARY = "2026-01-01T00:00:00"


@contextmanager
def first_start() -> Iterator[None]:
    """Rules walked by dateutil from their first start, as before the anchor (the reference figure)."""
    kept = schedule._anchored, schedule._simple_rule
    schedule._anchored = lambda rule, after, shift=0: rule  # pyright: ignore[reportAttributeAccessIssue]
    schedule._simple_rule = lambda parts, dtstart: None  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        schedule._anchored, schedule._simple_rule = kept


def forget_schedules() -> None:
    """As on a server's first read of these rules: no runs kept, no rule or schedule read before."""
    schedule._AHEAD.clear()
    for cached in CACHES:
        cached.cache_clear()


# The reader's caches (taken before first_start() swaps a reader out).
CACHES = (schedule._parse, schedule._read, schedule._recurrence, schedule._simple_rule)


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
        task["metadata"]["ownerId"] = sandbox.caller_id  # an active owner: the row has a next run to show
        tasks[task["id"]] = task
    return app_id


async def p50(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    return (await p50s([fn], n))[0]


async def p50s(
    fns: list[Callable[[], Awaitable[Any]]], n: int, before: Callable[[], None] | None = None
) -> list[float]:
    """Each call's p50 ms, the calls taken in turn: a busy moment of the shared machine slows them all alike.
    `before` runs before each call, untimed."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, taken in zip(fns, samples, strict=True):
            if before is not None:
                before()
            start = time.perf_counter()
            await fn()
            taken.append((time.perf_counter() - start) * 1000)
    return [statistics.median(taken) for taken in samples]


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

        cases: list[tuple[str, Callable[[], Any] | None, bool]] = [
            ("recent anchor, runs kept from the last call (a listing read again)", None, False),
            ("recent anchor, every rule expanded (first read)", None, True),
            ("first start (before the anchor), every rule expanded", first_start, True),
        ]
        for label, mode, expand in cases:
            calls = [list_call, get_call, http_call, lambda: next_runs(docs)]
            # Expanded: every rule is read and expanded, as on a server's first read of them.
            before = forget_schedules if expand else None
            with mode() if mode else nullcontext():
                await p50s(calls, 3, before)  # warm
                listed_ms, get_ms, http_ms, rows_ms = await p50s(calls, n, before)
            met = "met" if listed_ms / get_ms <= GOAL and listed_ms / http_ms <= GOAL else "not met"
            rows.append(
                f"| {label} | {listed_ms:.2f} | {get_ms:.2f} | {http_ms:.2f} | {rows_ms:.2f} | "
                f"{listed_ms / get_ms:.2f}x | {listed_ms / http_ms:.2f}x | {rows_ms / http_ms:.2f}x | "
                f"{met if mode is None else '-'} (goal <= {GOAL:g}x both) |"
            )
        parts = await _parts(mcp, app_id, n, listed_call=list_call, http_call=http_call)
    await raw.aclose()
    await backend.aclose()
    stdio = await over_stdio(n)
    header = (
        "| next runs worked out | list_tasks | get_task | HTTP | next runs | list / get | list / HTTP | "
        "next runs / HTTP | goal |\n|---|---|---|---|---|---|---|---|---|"
    )
    return [
        f"## Next runs in lists: list_tasks({ROWS}) of hourly rules started in January, p50 ms in-process",
        "`get_task` works out three next runs of one task; `HTTP` is list_tasks' own request to the sandbox; "
        "`next runs` is the rows' next-run work alone. A tool call's time includes the in-process MCP client "
        "checking the result against the tool's output schema. Next runs worked out once are kept until the first "
        "of them passes (Schedule.known_runs): the first row reads a listing again, as the calls of a conversation "
        "do (the p50 the goal is about); the second is a server's first read of these rules, each read into words "
        "and expanded once per process; the third walks each rule with dateutil from its first start, as before "
        "the anchor. Calls are taken in turn, so a busy moment slows all alike.",
        "\n".join([header, *rows]),
        f"The same two calls over stdio (the server in its own process, as a desktop host runs it; runs kept from "
        f"the last call), p50 ms of {n} calls each:",
        stdio,
        "Where a list_tasks(20) call goes, runs kept (p50 ms; the MCP part is the rest: the in-process client and "
        "server, argument checks, the result's JSON and the client's output-schema check):",
        parts,
    ]


async def _parts(
    mcp: Any, app_id: str, n: int, *, listed_call: Callable[[], Awaitable[Any]], http_call: Callable[[], Awaitable[Any]]
) -> str:
    service = tasks_tools.service(mcp.served.clients)
    scim = scim_filter(app_id=app_id, owner_id=None, enabled=None, last_status=None)

    async def request() -> Any:
        return await service.api.list(resource_id=app_id, sort="-updatedAt", limit=ROWS, scim=scim)

    docs = (await request()).items
    names = await tasks_models.task_names(service.names, docs)
    runs = await next_runs(docs)

    async def rows() -> None:
        listed = [tasks_models.TaskRow.listed(t, names, runs) for t in docs]
        tasks_models.ids_once(listed, "app_id", "app")
        tasks_models.TaskPage(tasks=listed, next_cursor=None).model_dump(mode="json")

    parts = {
        "list_tasks": listed_call,
        "HTTP": http_call,
        "request (our client)": request,
        "names": lambda: tasks_models.task_names(service.names, docs),
        "next runs": lambda: next_runs(docs),
        "rows": rows,
    }
    figures = dict(zip(parts, await p50s(list(parts.values()), n), strict=True))
    inside = sum(v for k, v in figures.items() if k not in ("list_tasks", "HTTP"))
    figures["MCP (the rest)"] = figures["list_tasks"] - inside
    head = "| " + " | ".join(figures) + " |\n|" + "---|" * len(figures)
    return head + "\n| " + " | ".join(f"{v:.2f}" for v in figures.values()) + " |"


def serve() -> None:
    """The sandbox server over stdio, with the hourly tasks added (`python -m bench.schedules --serve`)."""
    mcp, backend = build_server(Settings(sandbox=True))
    assert backend.sandbox is not None
    backend.sandbox.rate_limits = False
    hourly_tasks(backend.sandbox)
    mcp.run("stdio")


async def over_stdio(n: int) -> str:
    """list_tasks(20) beside get_task, p50 over stdio: the way a desktop host calls the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLIK_")}
    root = Path(__file__).parent.parent
    args = ["-m", "bench.schedules", "--serve"]
    params = StdioServerParameters(command=sys.executable, args=args, cwd=str(root), env=env)
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opening /dev/null does not block
        async with Client(stdio_client(params, errlog=devnull)) as client:
            first = (await client.call_tool("list_tasks", {"limit": ROWS})).structured_content
            assert first is not None
            rows = [t for t in first["tasks"] if t["name"].startswith("hourly")]
            assert len(rows) == ROWS, "the hourly tasks are listed first"
            app_id = rows[0].get("app_id") or next(iter(first.get("app_ids", {}).values()))

            async def list_call() -> None:
                await client.call_tool("list_tasks", {"resource_id": app_id, "limit": ROWS})

            async def get_call() -> None:
                await client.call_tool("get_task", {"task_id": rows[0]["id"]})

            for fn in (list_call, get_call):
                await p50(fn, 5)  # warm
            listed_ms, get_ms = await p50s([list_call, get_call], n)
    met = "met" if listed_ms / get_ms <= GOAL else "not met"
    return (
        "| list_tasks | get_task | list / get | goal |\n|---|---|---|---|\n"
        f"| {listed_ms:.1f} | {get_ms:.1f} | {listed_ms / get_ms:.1f}x | {met} (goal <= {GOAL:g}x) |"
    )


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
        sys.exit(0)
    report = "\n\n".join(anyio.run(measure)) + "\n"
    print(report)
    (Path(__file__).parent / "schedules.md").write_text(
        f"# Next runs in lists\n\nMade by `python -m bench.schedules` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} cores).\n\n{report.replace('## ', '### ')}"
    )
