"""The installed command over stdio, as a host like Claude Desktop starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
OURS = ("QLIK_", "QALYPTUS_")
# Undocumented names other programs set: none may change or stop the server (LOG_LEVEL=info used to stop it).
BARE = {"LOG_LEVEL": "info", "READ_ONLY": "true", "PORT": "1", "HOST": "0.0.0.0", "API_KEY": "bare-key-0123456789"}  # noqa: S104


def command() -> list[str]:
    installed = shutil.which("qlik-tasks-mcp", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "qlik_tasks_mcp"]


async def test_sandbox_over_stdio_lists_and_calls_tools() -> None:
    cmd = command()
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--sandbox"],
        cwd=str(ROOT),
        env={k: v for k, v in os.environ.items() if not k.startswith(OURS)} | BARE,
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            # A write tool is listed: the bare READ_ONLY was not read.
            assert {"list_reload_tasks", "delete_reload_task"} <= names
            result = await client.call_tool("list_reload_tasks", {"limit": 2})
            assert not result.is_error
            assert len(result.structured_content["tasks"]) == 2
            preview = await client.call_tool(
                "delete_reload_task", {"task_id": result.structured_content["tasks"][0]["id"]}
            )
            assert preview.structured_content["status"] == "confirmation_required"
        errlog.seek(0)
        stderr = errlog.read()
    assert "SANDBOX MODE" in stderr
    assert SANDBOX_API_KEY not in stderr and BARE["API_KEY"] not in stderr
    assert '"outcome":"confirmation_required"' in stderr


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(OURS)} | (env or {})
    return subprocess.run(
        [*command(), *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_without_a_tenant_it_exits_and_names_the_settings() -> None:
    done = run_cli()
    assert done.returncode == 2
    assert "QLIK_TENANT_URL" in done.stderr and "QLIK_API_KEY" in done.stderr and "--sandbox" in done.stderr
    assert done.stdout == ""


def test_plain_http_tenant_is_refused() -> None:
    done = run_cli(env={"QLIK_TENANT_URL": "http://tenant.example.com", "QLIK_API_KEY": "abcdefghijklmnop"})
    assert done.returncode == 2
    assert "https://" in done.stderr
    assert "abcdefghijklmnop" not in done.stderr


def test_unknown_toolset_is_refused() -> None:
    done = run_cli("--sandbox", "--toolsets", "reload,nope")
    assert done.returncode == 2
    assert "nope" in done.stderr and "choose from" in done.stderr
