"""Run every benchmark and write bench/results.md (and the README's results section), each goal beside its figure.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python -m bench.run

Numbers are machine-dependent; the ratios (measured side by side in the same run) are what to compare. Tokens are
o200k (bpe-openai ships its BPE data, so nothing is downloaded). Memory is measured in a pass of its own: tracemalloc
slows Python down, so it never runs inside a timed section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import bpe_openai
import httpx
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server import MCPServer

from bench import schedules, sessions
from qlik_tasks_mcp.sandbox import Sandbox, build_sandbox, large
from qlik_tasks_mcp.sandbox import reload_tasks as sandbox_reload_tasks
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import TOOLSETS, Settings
from qlik_tasks_mcp.tools.inventory import (
    READ_ONLY_TOKENS_PER_TOOL_GOAL,
    TOKENS_PER_TOOL_GOAL,
    TOOLS_LIST_RATIO_GOAL,
)
from qlik_tasks_mcp.tools.ops import selection

SCAN_SECONDS = selection.SCAN_SECONDS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"
ENCODING = bpe_openai.get_encoding("o200k_base")
COLD_START_GOAL = 1.3
Row = tuple[str, ...]


def tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return len(ENCODING.encode(text))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def sandbox_server(**settings: Any) -> tuple[MCPServer, Any]:
    return build_server(Settings(sandbox=True, **settings))


def model_facing(tool: dict[str, Any]) -> dict[str, Any]:
    """What hosts typically put in front of the model: name, description and input schema."""
    return {k: tool[k] for k in ("name", "description", "inputSchema") if k in tool}


def verdict(value: float, goal: float) -> str:
    return f"{'met' if value <= goal else 'NOT met'} (goal <= {goal:g})"


async def catalogue_tokens() -> list[Row]:
    rows: list[Row] = []
    for toolset, read_only in (*((t, False) for t in TOOLSETS), (None, True), (None, False)):
        settings = ({"toolsets": toolset} if toolset else {}) | ({"read_only": True} if read_only else {})
        mcp, backend = sandbox_server(**settings)
        async with Client(mcp) as client:
            listed = (await client.list_tools()).tools
        await backend.aclose()
        wire = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
        facing = tokens([model_facing(t) for t in wire])
        sent = tokens(wire)
        count = max(1, len(listed))
        per_tool = READ_ONLY_TOKENS_PER_TOOL_GOAL if read_only else TOKENS_PER_TOOL_GOAL
        ratio = sent / max(1, facing)
        # The goals are the served catalogue's (a toolset alone is shown for where the tokens go).
        tokens_goal = verdict(facing, per_tool * len(listed))
        goal = "-" if toolset else f"tokens {tokens_goal}; ratio {verdict(round(ratio, 2), TOOLS_LIST_RATIO_GOAL)}"
        label = toolset or ("all, read-only" if read_only else "all")
        row = (
            label,
            str(len(listed)),
            str(facing),
            str(facing // count),
            str(sent),
            f"{ratio:.2f}x",
            goal,
        )
        rows.append(row)
    return rows


async def result_tokens() -> list[Row]:
    """Tokens a model reads per typical result, next to the raw API payload it was made from."""
    mcp, backend = sandbox_server()
    rows: list[Row] = []
    raw = httpx.AsyncClient(
        transport=backend.qlik._http._transport,  # the same in-process tenant
        base_url=SANDBOX_URL,
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    async with Client(mcp) as client:
        listed = await client.call_tool("list_reload_tasks", {"limit": 20})
        first = listed.structured_content["tasks"][0]["id"]  # type: ignore[index]
        got = await client.call_tool("get_reload_task", {"task_id": first})
        preview = await client.call_tool("delete_reload_task", {"task_id": first})
        shared = await client.call_tool("list_sharing_tasks", {"limit": 20})
        sharing_id = shared.structured_content["tasks"][0]["id"]  # type: ignore[index]
        sharing_one = await client.call_tool("get_sharing_task", {"task_id": sharing_id})
        deliveries = await client.call_tool("list_sharing_task_executions", {"task_id": sharing_id, "limit": 20})
    raw_list = (await raw.get("/api/v1/reload-tasks", params={"limit": 20})).json()
    raw_one = (await raw.get(f"/api/v1/reload-tasks/{first}")).json()
    sharing = "/api/v1/sharing-tasks"
    raw_shared = (await raw.get(sharing, params={"limit": 20, "sort": "name", "excludeDeleting": "true"})).json()
    raw_sharing_one = (await raw.get(f"{sharing}/{sharing_id}")).json()
    raw_deliveries = (await raw.get(f"{sharing}/{sharing_id}/executions", params={"limit": 20})).json()
    for name, result, payload in (
        ("list_reload_tasks (20)", listed, raw_list),
        ("get_reload_task", got, raw_one),
        ("delete_reload_task preview", preview, None),
        ("list_sharing_tasks (20)", shared, raw_shared),
        ("get_sharing_task", sharing_one, raw_sharing_one),
        ("list_sharing_task_executions", deliveries, raw_deliveries),
    ):
        structured = tokens(result.structured_content)
        text = tokens(" ".join(getattr(c, "text", "") for c in result.content))
        raw_tokens = tokens(payload) if payload is not None else None
        ratio = f"{structured / raw_tokens:.2f}" if raw_tokens else "-"
        compact = "met" if text <= structured else "NOT met"
        rows.append((name, str(structured), str(text), compact, str(raw_tokens or "-"), ratio))
    await raw.aclose()
    await backend.aclose()
    return rows


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def latency(n: int) -> list[Row]:
    """One tool call through an in-process MCP client vs the same raw HTTP call to the sandbox."""
    mcp, backend = sandbox_server()
    raw = httpx.AsyncClient(
        transport=backend.qlik._http._transport,
        base_url=SANDBOX_URL,
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    backend.sandbox.rate_limits = False  # measure the stack, not the tier pacing
    backend.qlik.limiter._limits = dict.fromkeys(backend.qlik.limiter._limits, 10**9)
    task_id = next(iter(backend.sandbox.tables["reload_tasks"]))
    async with Client(mcp) as client:

        async def via_mcp() -> None:
            await client.call_tool("get_reload_task", {"task_id": task_id})

        async def via_http() -> None:
            (await raw.get(f"/api/v1/reload-tasks/{task_id}")).json()

        await timed(via_mcp, 20)
        await timed(via_http, 20)
        mcp_ms, http_ms = [], []
        for _ in range(n // 50):  # interleaved, so both see the same machine state
            mcp_ms += await timed(via_mcp, 50)
            http_ms += await timed(via_http, 50)
    await raw.aclose()
    await backend.aclose()
    rows = []
    for label, p in (("p50", 50), ("p99", 99)):
        a, b = percentile(mcp_ms, p), percentile(http_ms, p)
        rows.append((label, f"{a:.2f}", f"{b:.2f}", f"{a / b:.1f}x"))
    return rows


async def first_answers(args: list[str], call: tuple[str, dict[str, Any]]) -> tuple[float, float]:
    """Milliseconds from spawning the server to its first tools/list answer, and to the answer of a first call."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLIK_")}
    params = StdioServerParameters(command=args[0], args=args[1:], cwd=str(ROOT), env=env)
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opening /dev/null does not block
        async with Client(stdio_client(params, errlog=devnull)) as client:
            await client.list_tools()
            listed = time.perf_counter() - start
            result = await client.call_tool(*call)
            called = time.perf_counter() - start
            assert not result.is_error, result
    return listed * 1000, called * 1000


BASELINE = """
from mcp.server import MCPServer
mcp = MCPServer("baseline")
@mcp.tool()
def ping() -> str:
    return "pong"
mcp.run("stdio")
"""


async def cold_start(n: int) -> list[Row]:
    ours = [sys.executable, "-m", "qlik_tasks_mcp", "--sandbox"]
    baseline = [sys.executable, "-c", BASELINE]
    a, b = [], []
    for _ in range(n):
        a.append(await first_answers(ours, ("list_reload_tasks", {"limit": 5})))
        b.append(await first_answers(baseline, ("ping", {})))
    la, lb = statistics.median(x for x, _ in a), statistics.median(x for x, _ in b)
    ca, cb = statistics.median(y for _, y in a), statistics.median(y for _, y in b)
    return [
        (
            "to tools/list, median ms",
            f"{la:.0f}",
            f"{lb:.0f}",
            f"{la / lb:.2f}x",
            verdict(round(la / lb, 2), COLD_START_GOAL),
        ),
        # Not a goal: our first call also builds its toolset and the sandbox tenant; the baseline's is a ping.
        ("to a first call, median ms", f"{ca:.0f}", f"{cb:.0f}", f"{ca / cb:.2f}x", "-"),
    ]


Tenant = tuple[MCPServer, Any, Sandbox]


def seeded(count: int) -> Tenant:
    """A sandbox server with exactly `count` reload tasks."""
    mcp, backend = sandbox_server()
    sandbox = backend.sandbox
    table = sandbox.tables["reload_tasks"]
    while len(table) < count:
        sandbox_reload_tasks.seed(sandbox)
    for extra in list(table)[count:]:
        del table[extra]
    return mcp, backend, sandbox


def scheduling_tenant(count: int) -> Tenant:
    """A sandbox server on a tenant of `count` more apps, each with one scheduling task (sandbox/large.py)."""
    sandbox, app = build_sandbox(app_count=large.USUAL_APPS + count)
    mcp, backend = build_server(Settings(sandbox=True), transport=SandboxTransport(app))
    return mcp, backend, sandbox


async def list_all(client: Client) -> int:
    seen, cursor = 0, None
    while True:
        args: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = (await client.call_tool("list_reload_tasks", args)).structured_content or {}
        seen += len(page.get("tasks", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return seen


async def preview_by_ids(client: Client, sandbox: Sandbox) -> int:
    refs = [{"kind": "reload", "id": task_id} for task_id in sandbox.tables["reload_tasks"]]
    preview = (await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs})).structured_content
    assert preview and preview["status"] == "confirmation_required", preview
    return len(refs)


async def preview_by_filter(client: Client, sandbox: Sandbox) -> int:
    """The same selection by a filter: the model writes a few tokens instead of every id."""
    args = {"enabled": False, "filter": {"kinds": ["reload"]}}
    result = await client.call_tool("set_tasks_enabled", args)
    preview = result.structured_content
    assert preview and preview["status"] == "confirmation_required", result.content
    return len(sandbox.tables["reload_tasks"])


# The seeded scheduling tasks of sandbox/large.py, and only they, are named so.
NIGHTLY = {"enabled": False, "filter": {"kinds": ["task"], "name_contains": "nightly-"}}


async def preview_scheduling_by_filter(client: Client, sandbox: Sandbox) -> int:
    """Scheduling tasks selected by a filter: the tenant-wide list, paged, not each app's tasks."""
    result = await client.call_tool("set_tasks_enabled", NIGHTLY)
    preview = result.structured_content
    assert preview and preview["status"] == "confirmation_required", result.content
    return sum(1 for t in sandbox.tables["tasks"].tasks.values() if t["name"].startswith("nightly-"))


Step = tuple[str, Callable[[Client, Sandbox], Awaitable[int]], Callable[[int], Any], Callable[[int], Tenant]]
BULK_STEPS: tuple[Step, ...] = (
    ("list all {n} reload tasks", lambda c, _s: list_all(c), lambda _n: {"limit": 100}, seeded),
    (
        "set_tasks_enabled preview of {n}, by ids",
        preview_by_ids,
        lambda n: {"enabled": False, "tasks": [{"kind": "reload", "id": "0" * 24}] * n},
        seeded,
    ),
    (
        "set_tasks_enabled preview of {n}, by filter",
        preview_by_filter,
        lambda _n: {"enabled": False, "filter": {"kinds": ["reload"]}},
        seeded,
    ),
    (
        "set_tasks_enabled preview of {n} scheduling tasks, by filter",
        preview_scheduling_by_filter,
        lambda _n: NIGHTLY,
        scheduling_tenant,
    ),
)


async def bulk_step(step: int, count: int, traced: bool) -> tuple[int, float, int, int, int]:
    """One bulk step on a fresh tenant: (items, seconds, peak bytes or 0, requests, 429s). Timed or traced, never
    both: tracemalloc would slow the timed pass down."""
    _, run, _, tenant = BULK_STEPS[step]
    mcp, backend, sandbox = tenant(count)
    # tracemalloc slows Python about tenfold: the traced pass lifts the selection's time budget so it still runs.
    selection.SCAN_SECONDS = 600.0 if traced else SCAN_SECONDS
    async with Client(mcp) as client:
        if traced:
            tracemalloc.start()
        start = time.perf_counter()
        items = await run(client, sandbox)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        if traced:
            tracemalloc.stop()
    sent, throttled = backend.qlik.requests_sent, sandbox.throttled
    await backend.aclose()
    return items, elapsed, peak, sent, throttled


async def bulk(count: int) -> list[Row]:
    """Each step on `count` reload tasks, paced to the tier limits: timed in one pass, its memory in another."""
    rows: list[Row] = []
    for step, (label, _, args, _) in enumerate(BULK_STEPS):
        items, seconds, _, sent, throttled = await bulk_step(step, count, traced=False)
        _, _, peak, _, _ = await bulk_step(step, count, traced=True)
        rows.append(
            (
                label.format(n=count),
                str(items),
                f"{seconds:.2f}",
                f"{peak / 2**20:.1f}",
                str(sent),
                str(throttled),
                str(tokens(args(count))),
            )
        )
    return rows


async def failure_lines() -> list[str]:
    """bench/failures.py's section, once it exists."""
    try:
        from bench import failures  # type: ignore[attr-defined]
    except ImportError:
        return []
    return await failures.measure()


def table(header: Row, rows: list[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def main(quick: bool) -> str:
    sections = [
        "## Tool catalogue (o200k tokens)",
        "`model-facing` counts name, description and inputSchema (what hosts show the model); `tools/list` "
        "counts everything sent, output schemas and annotations included; `ratio` = tools/list / model-facing.",
        table(
            ("toolset", "tools", "model-facing", "per tool", "tools/list", "ratio", "goal"),
            await catalogue_tokens(),
        ),
        "## Typical results (o200k tokens)",
        "`structured` is the structuredContent, `text` the text block sent beside it (goal: compact, never more "
        "than the structured result), `raw` the Qlik API payload the result was made from; `ratio` = structured "
        "/ raw.",
        table(("result", "structured", "text", "text goal", "raw", "ratio"), await result_tokens()),
        "## Tool-call latency, in-process MCP client vs the same raw HTTP call to the sandbox (ms)",
        table(("percentile", "MCP tool call", "raw HTTP", "ratio"), await latency(200 if quick else 1000)),
        "## Cold start over stdio (ms)",
        "Baseline: a one-tool MCPServer started the same way, measured in the same run. Our tools/list answers "
        "from the shipped catalogue; a first call builds its toolset (and here the sandbox tenant), so it is shown "
        "beside the baseline's first call (a ping) too.",
        table(("", "qlik-tasks-mcp --sandbox", "baseline", "ratio", "goal"), await cold_start(3 if quick else 7)),
        "## Bulk (paced to the tier limits; goal: zero 429s)",
        "Seconds from a timed pass; peak memory from a separate pass under tracemalloc. `argument tokens`: what "
        "the model writes to ask for it.",
        table(
            ("operation", "items", "seconds", "peak MiB (tracemalloc)", "requests", "429s", "argument tokens"),
            await bulk(5000),
        ),
    ]
    sections += [
        "## Concurrent MCP sessions over streamable HTTP (one replica, default settings)",
        "`bench/sessions.py`: every session at once initializes, lists the tools and makes three calls (ours: a "
        "read of the sandbox tenant and two schedule checks; the baseline, a one-tool MCPServer under uvicorn's "
        "defaults: three pings). Load generator and servers share the machine, so compare the error counts and the "
        "ratios; the former default cap (100 connections) is shown for the knob `QLIK_MCP_HTTP_MAX_CONNECTIONS`.",
        sessions.table(await sessions.rows(sessions.SESSIONS)),
    ]
    sections += await schedules.measure(quick)
    failures = await failure_lines()
    if failures:
        sections.append("\n".join(failures))
    return "\n\n".join(sections) + "\n"


def publish(report: str) -> None:
    header = (
        "# Benchmark results\n\nMade by `python -m bench.run` on "
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, Python {sys.version.split()[0]}).\n\n"
    )
    RESULTS.write_text(header + report)
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        body = report.replace("## ", "#### ")
        readme.write_text(f"{before}{start}\n{body}{end}{after}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args()
    out = anyio.run(main, options.quick)
    print(out)
    if not options.no_write:
        publish(out)
