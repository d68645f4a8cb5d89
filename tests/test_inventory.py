"""The one toolset inventory is what the server, the README and the ops tools all follow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qlik_tasks_mcp.tools.inventory import TOOLSETS
from tests.conftest import data, error_text, make_harness

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\w+) \| `(\w+)` \|", re.M)


async def test_readme_tool_table_is_the_catalogue() -> None:
    h = make_harness()
    try:
        async with h.client() as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
        served = [(info.toolset, info.name) for info in h.backend.tools]
    finally:
        await h.backend.aclose()
    assert [name for _, name in served] == listed
    readme = (ROOT / "README.md").read_text()
    assert ROW.findall(readme) == served
    assert list(dict.fromkeys(t for t, _ in served)) == [entry.name for entry in TOOLSETS]


def test_every_toolset_module_declares_its_operations() -> None:
    for entry in TOOLSETS:
        module = entry.load()
        assert entry.operations(), entry.name
        assert callable(module.service), entry.name
        if entry.kinds:
            assert callable(module.source), entry.name


async def test_ops_tools_reach_only_served_kinds() -> None:
    h = make_harness(toolsets="reload,ops")
    try:
        async with h.client() as client:
            result = await client.call_tool(
                "set_tasks_enabled",
                {"enabled": False, "tasks": [{"kind": "sharing", "id": "any"}, {"kind": "qalyptus", "id": "any"}]},
            )
            assert "not served here" in error_text(result)
            app = next(iter(h.sandbox.apps))
            preview = await client.call_tool("get_app_schedule_overview", {"app_id": app})
            assert {item["kind"] for item in data(preview)["items"]} <= {"reload"}
    finally:
        await h.backend.aclose()


def test_no_function_in_the_tools_package_is_longer_than_100_lines() -> None:
    long: list[str] = []
    for path in (ROOT / "qlik_tasks_mcp" / "tools").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
                if node.end_lineno - node.lineno + 1 > 100:
                    long.append(f"{path.name}:{node.lineno} {node.name}")
    assert not long, long


def test_wheel_has_one_top_level_import_name(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        pytest.fail(built.stderr[-2000:])
    (wheel,) = tmp_path.glob("*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    names = {name.split("/")[0] for name in files}
    assert {n for n in names if not n.endswith(".dist-info")} == {"qlik_tasks_mcp"}
    # What tools/list answers from, and the specs the sandbox checks bodies against, travel with the code.
    assert "qlik_tasks_mcp/tools/catalogue.json" in files
