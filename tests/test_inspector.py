"""A real outside client: the MCP Inspector CLI (legacy protocol era, no elicitation) over stdio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.test_stdio import ROOT, command

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"


def inspector(*args: str) -> dict:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx is required for the Inspector test: install Node.js (it ships npx)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLIK_")}
    done = subprocess.run(
        [npx, "-y", INSPECTOR, "--cli", *command(), "--sandbox", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_inspector_lists_tools_and_calls_list_reload_tasks() -> None:
    listed = inspector("--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert {"list_reload_tasks", "delete_reload_task"} <= names
    called = inspector("--method", "tools/call", "--tool-name", "list_reload_tasks", "--tool-arg", "limit=2")
    assert not called.get("isError")
    assert len(called["structuredContent"]["tasks"]) == 2
