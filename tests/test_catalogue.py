"""tools/list answers from the catalogue shipped with the package (a start builds no tool); each toolset is built on
its first call, by the one Registrar, into exactly what was listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qlik_tasks_mcp.server import catalogue, settings
from qlik_tasks_mcp.server.catalogue import built_catalogue, stale_catalogue, write_catalogue
from qlik_tasks_mcp.tools import inventory, registrar, served
from qlik_tasks_mcp.tools.inventory import TOOLSETS, Toolset
from qlik_tasks_mcp.tools.served import CATALOGUE_FILE, Listed, catalogue_text
from tests.conftest import data, error_text, make_harness

pytestmark = pytest.mark.anyio

FAMILY_MODULES = sorted(t.module for t in TOOLSETS)
# Every operation the inventory declares, read-write: the catalogue lists each once.
TOOL_COUNT = sum(len(t.operations()) for t in TOOLSETS)


async def test_the_shipped_catalogue_is_what_building_every_tool_lists() -> None:
    """The snapshot: `UPDATE_CATALOGUE=1` rewrites it from the code, as the command does."""
    if os.environ.get("UPDATE_CATALOGUE") == "1":
        await write_catalogue()
    assert len(json.loads(catalogue_text(await built_catalogue()))) == TOOL_COUNT
    problem = await stale_catalogue()
    assert problem is None, problem


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"read_only": True},
        {"toolsets": "reload,ops,qalyptus"},
        {"toolsets": "tasks,sharing", "read_only": True},
    ],
)
async def test_a_session_lists_exactly_what_the_first_calls_register(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    h = make_harness(**settings)
    try:
        async with h.client() as client:
            tools = (await client.list_tools()).tools
            listed = {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in tools}
            assert await h.mcp.registered_tools() == []
            # A first call of one tool per toolset builds it (the argument is refused before anything runs).
            firsts = {item.toolset: item.tool.name for item in reversed(h.mcp.served.listed)}
            for name in firsts.values():
                refused = await client.call_tool(name, {"probe": 1})
                assert "has no argument probe" in error_text(refused), name
        # Built in another order than listed: what each tool advertises is what it was built as.
        registered = {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in await h.mcp.registered_tools()}
        assert registered == listed
        assert h.mcp.served.built == set(firsts)
        assert "tools/list advertised" not in caplog.text
    finally:
        await h.backend.aclose()


async def test_a_toolset_that_fails_midway_is_served_whole_later_or_not_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    real = registrar.exposed_function

    def failing_at_cancel(op: Any, service: Any, gate: Any) -> Any:
        if op.name == "cancel_reload":
            raise RuntimeError("made to fail while building")
        return real(op, service, gate)

    h = make_harness(toolsets="reloads")
    try:
        async with h.client() as client:
            monkeypatch.setattr(registrar, "exposed_function", failing_at_cancel)
            failed = await client.call_tool("list_reloads", {"limit": 2})
            assert "The reloads tools could not be loaded on this server: RuntimeError" in error_text(failed)
            assert "made to fail" not in error_text(failed)
            # The tools registered before the failure are withdrawn: nothing of the toolset half-serves.
            assert await h.mcp.registered_tools() == [] and not h.mcp.served.registrar.registered
            monkeypatch.setattr(registrar, "exposed_function", real)
            assert data(await client.call_tool("list_reloads", {"limit": 2}))["reloads"]
        names = [info.name for info in h.mcp.served.registrar.registered]
        assert names == [info.name for info in h.backend.tools] and len(set(names)) == len(names)
    finally:
        await h.backend.aclose()


def with_effect(name: str, effect: str) -> tuple[Listed, ...]:
    """The shipped catalogue, with `name` listed as having `effect`."""
    return tuple(
        replace(item, effect=effect) if item.tool.name == name else item for item in served.shipped_catalogue()
    )


async def test_a_catalogue_listing_other_effects_refuses_the_toolset(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = with_effect("cancel_reload", "read")
    monkeypatch.setattr(served, "shipped_catalogue", lambda: changed)
    h = make_harness(toolsets="reloads")
    try:
        async with h.client() as client:
            refused = await client.call_tool("list_reloads", {"limit": 2})
        assert "not the ones the shipped catalogue lists" in error_text(refused)
        assert "python -m qlik_tasks_mcp.server.catalogue" in error_text(refused)
        assert await h.mcp.registered_tools() == []
    finally:
        await h.backend.aclose()


async def test_a_catalogue_with_other_texts_serves_what_was_built_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = served.shipped_catalogue()
    changed = tuple(
        replace(item, tool=item.tool.model_copy(update={"description": "Stale words."}))
        if item.tool.name == "get_reload"
        else item
        for item in shipped
    )
    monkeypatch.setattr(served, "shipped_catalogue", lambda: changed)
    h = make_harness(toolsets="reloads")
    try:
        async with h.client() as client:
            assert data(await client.call_tool("list_reloads", {"limit": 2}))["reloads"]
        assert "['get_reload']" in caplog.text and "python -m qlik_tasks_mcp.server.catalogue" in caplog.text
    finally:
        await h.backend.aclose()


def loaded_families(steps: str) -> list[str]:
    """The toolset modules a fresh process has loaded after `steps` (run with `mcp`, a sandbox server, and a
    connected in-process `client`)."""
    probe = (
        "import sys, anyio\n"
        "from mcp import Client\n"
        "from qlik_tasks_mcp.server.app import build_server\n"
        "from qlik_tasks_mcp.server.settings import Settings\n"
        "mcp, backend = build_server(Settings(sandbox=True))\n"
        "async def main():\n"
        "    async with Client(mcp) as client:\n"
        f"        assert len((await client.list_tools()).tools) == {TOOL_COUNT}\n"
        f"{steps}"
        "anyio.run(main)\n"
        f"print(' '.join(sorted(m for m in sys.modules if m in {FAMILY_MODULES!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QLIK_", "QALYPTUS_"))}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return done.stdout.split()


def test_listing_tools_loads_no_family_and_a_call_loads_only_its_own() -> None:
    assert loaded_families("") == []
    call = "        r = await client.call_tool('list_reloads', {'limit': 2})\n        assert not r.is_error, r\n"
    assert loaded_families(call) == ["qlik_tasks_mcp.tools.reloads.tools"]


async def test_the_first_ops_call_reaches_every_served_kind() -> None:
    h = make_harness(toolsets="reload,sharing,ops")
    try:
        async with h.client() as client:
            report = data(await client.call_tool("find_failures", {"hours": 168}))
        # Built on this first call: the sources of exactly the served families, none of their tools.
        assert set(report["requests"]) == {"reload", "sharing"}
        assert h.mcp.served.built == {"ops"}
    finally:
        await h.backend.aclose()


# A family as a contributor would write one (tools/<name>/tools.py): a read and a destructive operation.
SCRATCH = """
from typing import Annotated, Any

from pydantic import Field

from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.model import Compact, Deleted
from qlik_tasks_mcp.tools.operation import destructive, read

NoteId = Annotated[str, Field(max_length=10, description="A note id, from list_scratch_notes.")]


class Notes:
    def __init__(self) -> None:
        self.notes = {"n1": "first", "n2": "second"}


def service(deps: Any) -> Notes:
    return Notes()


class NoteList(Compact):
    ids: list[str]


@read("List scratch notes")
async def list_scratch_notes(notes: Notes) -> NoteList:
    \"\"\"The scratch notes' ids.\"\"\"
    return NoteList(ids=sorted(notes.notes))


async def plan_delete(notes: Notes, note_id: NoteId) -> Plan:
    return Plan(action=f"Delete note {note_id}", changes=[notes.notes[note_id]], state=notes.notes[note_id])


@destructive("Delete scratch note", plan=plan_delete)
async def delete_scratch_note(notes: Notes, plan: Plan, note_id: NoteId) -> Deleted:
    \"\"\"Delete a scratch note.\"\"\"
    del notes.notes[note_id]
    return Deleted(id=note_id, deleted=True)
"""


@pytest.fixture
def scratch_family(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A throwaway family in the inventory (its module made from SCRATCH), and a copy of the shipped catalogue
    that the command rewrites and the server reads instead of the package's."""
    module = types.ModuleType("qlik_tasks_mcp.tools.scratch.tools")
    exec(compile(SCRATCH, "<scratch family>", "exec"), module.__dict__)  # noqa: S102 - the test's own source
    monkeypatch.setitem(sys.modules, module.__name__, module)
    family = Toolset("scratch", "scratch notes, a throwaway family")
    monkeypatch.setattr(inventory, "TOOLSETS", (*inventory.TOOLSETS, family))
    monkeypatch.setattr(settings, "TOOLSETS", (*settings.TOOLSETS, family.name))
    copy = tmp_path / "catalogue.json"
    copy.write_text(CATALOGUE_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(catalogue, "catalogue_file", lambda: copy)
    monkeypatch.setattr(served, "shipped_catalogue", lambda: served.read_catalogue(copy.read_text(encoding="utf-8")))
    return copy


async def test_a_new_family_is_reported_until_the_command_rewrites_the_catalogue_then_served(
    scratch_family: Path,
) -> None:
    problem = await stale_catalogue()
    assert problem is not None
    assert "new tools: delete_scratch_note, list_scratch_notes" in problem
    assert "`python -m qlik_tasks_mcp.server.catalogue`" in problem and "UPDATE_CATALOGUE=1" in problem

    # What `python -m qlik_tasks_mcp.server.catalogue` runs.
    assert await write_catalogue() == TOOL_COUNT + 2
    assert await stale_catalogue() is None

    h = make_harness(toolsets="reload,scratch")
    try:
        async with h.client() as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert {"list_scratch_notes", "delete_scratch_note"} <= set(listed)
            assert listed["delete_scratch_note"].annotations.destructive_hint  # type: ignore[union-attr]
            assert data(await client.call_tool("list_scratch_notes", {}))["ids"] == ["n1", "n2"]
            preview = data(await client.call_tool("delete_scratch_note", {"note_id": "n1"}))
            assert preview["status"] == "confirmation_required" and preview["confirm_token"]
            assert data(await client.call_tool("list_scratch_notes", {}))["ids"] == ["n1", "n2"]
            confirmed = {"note_id": "n1", "confirm_token": preview["confirm_token"]}
            done = data(await client.call_tool("delete_scratch_note", confirmed))
            assert done["status"] == "done" and done["result"] == {"id": "n1", "deleted": True}
            assert data(await client.call_tool("list_scratch_notes", {}))["ids"] == ["n2"]
    finally:
        await h.backend.aclose()
