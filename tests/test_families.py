"""Keeps "Adding a family" honest: every toolset of tools/inventory.py has its package, a service, a sample call for
each of its operations, a README row for each, and a task source when the ops tools reach its kinds. Each failure
says what to add, and where."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qlik_tasks_mcp.server.app import make_qalyptus_clients, make_qlik_client
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.inventory import TOOLSETS, Deps, Toolset
from qlik_tasks_mcp.tools.operation import Operation
from qlik_tasks_mcp.tools.sources import TaskSource
from tests.tool_samples import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "qlik_tasks_mcp" / "tools"
# A row of the README's tool table: | toolset | `tool` | what it does | annotations |
ROW = re.compile(r"^\| (\w+) \| `(\w+)` \|", re.M)
ANNOTATIONS = {"read": "read-only", "write": "write", "destructive": "destructive, gated"}
by_name = pytest.mark.parametrize("entry", TOOLSETS, ids=[t.name for t in TOOLSETS])


def readme_rows() -> dict[str, str]:
    """Each tool the README's table lists, with the toolset its row names."""
    return {tool: toolset for toolset, tool in ROW.findall((ROOT / "README.md").read_text(encoding="utf-8"))}


def operations(entry: Toolset) -> list[Operation]:
    where = f"qlik_tasks_mcp/tools/{entry.name}/tools.py"
    assert (TOOLS / entry.name / "__init__.py").is_file() and (TOOLS / entry.name / "tools.py").is_file(), (
        f"toolset {entry.name!r} is in tools/inventory.py but has no package: create "
        f"qlik_tasks_mcp/tools/{entry.name}/__init__.py and {where}, holding its operations"
    )
    found = entry.operations()
    assert found, (
        f"{where} declares no operation: declare each tool at module level with @read(title), @write(title) or "
        "@destructive(title, plan=...) from qlik_tasks_mcp.tools.operation"
    )
    return found


@by_name
def test_a_family_has_its_package_its_operations_and_a_service(entry: Toolset) -> None:
    operations(entry)
    assert callable(getattr(entry.load(), "service", None)), (
        f"add `def service(deps: Deps) -> <YourService>` to qlik_tasks_mcp/tools/{entry.name}/tools.py: the object "
        "its handlers take first, made from the process's Deps (tools/inventory.py)"
    )


@by_name
def test_every_operation_of_a_family_has_a_sample_call(entry: Toolset) -> None:
    missing = [op.name for op in operations(entry) if op.name not in SAMPLES]
    assert not missing, "add to tests/tool_samples.py, for each tool, valid arguments on the sandbox:\n" + "\n".join(
        f'@sample("{name}")\nasync def _{name}(h: Harness, destructive: bool) -> dict[str, Any]:\n    return {{...}}\n'
        for name in missing
    )


@by_name
def test_every_operation_of_a_family_has_a_readme_row_naming_its_toolset(entry: Toolset) -> None:
    rows = readme_rows()
    missing = [op for op in operations(entry) if op.name not in rows]
    assert not missing, (
        f"add to README.md's tool table (## Tools), with the other `{entry.name}` rows (a new family's after the "
        "last row):\n"
        + "\n".join(f"| {entry.name} | `{op.name}` | <what it does> | {ANNOTATIONS[op.effect]} |" for op in missing)
    )
    elsewhere = {op.name: rows[op.name] for op in operations(entry) if rows[op.name] != entry.name}
    assert not elsewhere, (
        f"README.md's tool table names another toolset for these tools of {entry.name!r} (tool: toolset named): "
        f"{elsewhere}; write {entry.name!r} in their first column"
    )


def test_every_readme_row_is_a_tool_of_a_family() -> None:
    declared = {op.name for entry in TOOLSETS for op in entry.operations()}
    stale = sorted(set(readme_rows()) - declared)
    assert not stale, f"README.md's tool table lists tools no toolset declares: {stale}; remove their rows"
    unused = sorted(set(SAMPLES) - declared)
    assert not unused, f"tests/tool_samples.py has samples for tools no toolset declares: {unused}; remove them"


@pytest.mark.anyio
@pytest.mark.parametrize("entry", [t for t in TOOLSETS if t.kinds], ids=[t.name for t in TOOLSETS if t.kinds])
async def test_a_family_whose_tasks_the_ops_tools_reach_has_a_task_source(entry: Toolset) -> None:
    where = f"qlik_tasks_mcp/tools/{entry.name}/tools.py"
    make = getattr(entry.load(), "source", None)
    assert callable(make), (
        f"toolset {entry.name!r} lists kinds {entry.kinds} in tools/inventory.py (the ops tools reach its tasks): "
        f"add `def source(deps: Deps) -> TaskSource` to {where} (the protocol is in tools/sources.py), or drop "
        "its kinds"
    )
    settings = Settings(sandbox=True)
    deps = Deps(qlik=make_qlik_client(settings), qalyptus=make_qalyptus_clients(settings))
    try:
        found = make(deps)
    finally:
        await deps.qlik.aclose()
        for client in deps.qalyptus.values():
            await client.aclose()
    protocol = {n for n in vars(TaskSource) if not n.startswith("_")} | set(TaskSource.__annotations__)
    lacking = sorted(n for n in protocol if not hasattr(found, n))
    assert not lacking, f"{where}: source(deps) must return a TaskSource (tools/sources.py); it lacks {lacking}"
    kind = getattr(found, "kind", None)
    assert kind in entry.kinds, (
        f"{where}: source(deps) reaches kind {kind!r}, which tools/inventory.py does not list for "
        f"{entry.name!r} (kinds={entry.kinds}): add it there"
    )
