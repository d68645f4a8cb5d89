"""Concurrent MCP sessions over streamable HTTP against one replica at default settings, beside a one-tool
baseline server (the SDK's own streamable HTTP app under uvicorn's defaults), measured in the same run.

    .venv/bin/python -m bench.sessions [--sessions 200]

Each session initializes, lists the tools and makes its calls (ours: one read that reaches the sandbox tenant and
two that do not; the baseline: three pings), all sessions at once. Errors count any failed session or call.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 200
BASELINE = """
import sys
import uvicorn
from mcp.server import MCPServer
mcp = MCPServer("baseline")
@mcp.tool()
def ping() -> str:
    return "pong"
print("listening", file=sys.stderr, flush=True)
uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""
OURS_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_reload_tasks", {"limit": 1}),
    ("explain_schedule", {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"], "time_zone": "Europe/Zurich"}),
    ("explain_schedule", {"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=30"]}),
]
BASELINE_CALLS: list[tuple[str, dict[str, Any]]] = [("ping", {})] * 3


@dataclass
class Load:
    sessions: int
    calls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""
    seconds: float = 0.0
    server_cpu: float = 0.0
    # From the server's own request log (ours only): answers of 500 and above, and requests that got no answer.
    server_5xx: int | None = None

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies) or [0.0]
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start(args: list[str], env: dict[str, str], port: int, log: Any = None) -> anyio.abc.Process:
    devnull = subprocess.DEVNULL
    process = await anyio.open_process(args, env=env, cwd=ROOT, stdin=devnull, stdout=devnull, stderr=log or devnull)
    with anyio.fail_after(60):
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return process
            await anyio.sleep(0.05)


async def session(url: str, calls: list[tuple[str, dict[str, Any]]], load: Load) -> None:
    try:
        async with Client(url) as client:
            await client.list_tools()
            for name, arguments in calls:
                started = time.perf_counter()
                result = await client.call_tool(name, arguments)
                load.latencies.append(time.perf_counter() - started)
                load.calls += 1
                if result.is_error:
                    load.errors += 1
                    load.first_error = load.first_error or str(result.content)[:200]
    except Exception as exc:
        load.errors += 1
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        load.first_error = load.first_error or f"{type(leaf).__name__}: {leaf}"[:300]


async def measure(args: list[str], env: dict[str, str], port: int, calls: list[tuple[str, dict[str, Any]]], n: int):
    log = tempfile.TemporaryFile()
    load = Load(n)
    process = await start(args, env, port, log)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as warm:  # builds the toolsets and the sandbox before the clock starts
            for name, arguments in calls[:2]:
                await warm.call_tool(name, arguments)
        cpu = cpu_seconds(process.pid)
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(n):
                group.start_soon(session, url, calls, load)
        load.seconds = time.perf_counter() - started
        load.server_cpu = cpu_seconds(process.pid) - cpu
        return load
    finally:
        process.terminate()
        await process.wait()
        log.seek(0)
        load.server_5xx = server_errors(log.read().decode("utf-8", "replace"))
        log.close()


def server_errors(stderr: str) -> int | None:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith('{"ts"')]
    requests = [line for line in lines if line.get("event") == "http_request"]
    if not requests:
        return None
    return sum(1 for line in requests if line["status"] >= 500 or line["status"] == 0)


def cpu_seconds(pid: int) -> float:
    """The server process's CPU time (user + system): its own cost, whatever else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QLIK_", "QALYPTUS_"))}
    return env | extra


async def rows(n: int) -> list[tuple[str, ...]]:
    """Ours at default settings, ours at the former cap of 100 connections, and the baseline."""
    ours = [sys.executable, "-m", "qlik_tasks_mcp", "--sandbox", "--transport", "http", "--port"]
    port = free_port()
    default = await measure([*ours, str(port)], environment(), port, OURS_CALLS, n)
    port = free_port()
    capped = await measure([*ours, str(port)], environment(QLIK_MCP_HTTP_MAX_CONNECTIONS="100"), port, OURS_CALLS, n)
    port = free_port()
    baseline = await measure([sys.executable, "-c", BASELINE, str(port)], environment(), port, BASELINE_CALLS, n)
    out = []
    FIRST_ERRORS.update(
        {"default": default.first_error, "capped": capped.first_error, "baseline": baseline.first_error}
    )
    for name, load in (
        ("qlik-tasks-mcp, defaults (1000 connections)", default),
        ("qlik-tasks-mcp, QLIK_MCP_HTTP_MAX_CONNECTIONS=100 (the former default)", capped),
        ("baseline: one-tool MCPServer, uvicorn defaults", baseline),
    ):
        out.append(
            (
                name,
                str(load.sessions),
                str(load.calls),
                f"{load.percentile(50):.0f}",
                f"{load.percentile(99):.0f}",
                str(load.errors),
                "-" if load.server_5xx is None else str(load.server_5xx),
                f"{load.seconds:.1f}",
                f"{load.server_cpu * 1000 / max(load.calls, 1):.1f}",
            )
        )
    ratio50 = default.percentile(50) / max(baseline.percentile(50), 0.001)
    ratio99 = default.percentile(99) / max(baseline.percentile(99), 0.001)
    cpu = (default.server_cpu / max(default.calls, 1)) / max(baseline.server_cpu / max(baseline.calls, 1), 1e-6)
    out.append(("ours / baseline", "", "", f"{ratio50:.2f}x", f"{ratio99:.2f}x", "", "", "", f"{cpu:.2f}x"))
    return out


FIRST_ERRORS: dict[str, str] = {}
HEADER = ("server", "sessions", "calls", "p50 ms", "p99 ms", "errors", "server 5xx", "wall s", "server CPU ms per call")


def table(found: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in found]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    options = parser.parse_args()
    print(table(anyio.run(rows, options.sessions)))
    for name, error in FIRST_ERRORS.items():
        print(f"first error, {name}: {error}", file=sys.stderr)
