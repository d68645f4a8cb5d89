"""What a list_tasks row and a find_failures report cost in o200k tokens (issue 28), beside the raw API payload
they are made from, in one run:

    .venv/bin/python -m bench.lean      (writes bench/lean.md)

A row carries its app and owner names; an id several rows share is said once per page (app_ids, owner_ids); a
report's first errors are fenced once, each distinct one on one line with its failures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

from bench.run import sandbox_server, tokens
from qlik_tasks_mcp.sandbox import build_sandbox
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings

ROW_GOAL = 120


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def measure(app_counts: tuple[int, ...] = (0, 150)) -> list[str]:
    rows = []
    for apps in app_counts:
        mcp, backend = sandbox_server() if not apps else _big(apps)
        raw = httpx.AsyncClient(
            transport=backend.qlik._http._transport,
            base_url=SANDBOX_URL,
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
        )
        async with Client(mcp) as client:
            listed = await client.call_tool("list_tasks", {"limit": 20})
            failures = await client.call_tool("find_failures", {"hours": 168})
        payload = (await raw.get("/api/scheduling/tasks", params={"limit": 20, "sort": "-updatedAt"})).json()
        await raw.aclose()
        await backend.aclose()
        page, report = listed.structured_content or {}, failures.structured_content or {}
        count = len(page.get("tasks", []))
        text = tokens(_text(listed))
        per_row = text / count if count else 0.0
        errors = report.get("errors") or ""
        lines = max(0, len(errors.splitlines()) - 2)
        tenant = "seeded sandbox" if not apps else f"sandbox, {apps} apps"
        rows.append(
            f"| {tenant} | {count} | {text} | {per_row:.1f} | {'met' if per_row <= ROW_GOAL else 'NOT met'} "
            f"(goal <= {ROW_GOAL}) | {tokens(payload)} | {len(report.get('groups', []))} | {lines} | "
            f"{tokens(_text(failures))} |"
        )
    header = (
        "| tenant | list_tasks rows | list_tasks tokens | per row | row goal | raw API page | failure groups | "
        "distinct first errors | find_failures tokens |\n|---|---|---|---|---|---|---|---|---|"
    )
    return [
        "## list_tasks(20) and find_failures(168 h), o200k tokens of the text a model reads",
        "`raw API page` is GET /api/scheduling/tasks?limit=20 as the tenant sends it (the floor a listing is made "
        "from). `distinct first errors` are the lines of find_failures' one fence: groups failing alike share one.",
        "\n".join([header, *rows]),
    ]


def _big(apps: int) -> tuple[Any, Any]:
    _, app = build_sandbox(app_count=apps)
    return build_server(Settings(sandbox=True), transport=SandboxTransport(app))


if __name__ == "__main__":
    report = "\n\n".join(anyio.run(measure)) + "\n"
    print(report)
    (Path(__file__).parent / "lean.md").write_text(
        f"# Result tokens\n\nMade by `python -m bench.lean` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} cores).\n\n{report.replace('## ', '### ')}"
    )
