"""What every conversation and answer costs: the catalogue a host shows the model, the text block beside each
structured result, and bulk changes selected by a filter instead of thousands of ids (issue 19)."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.types import TextContent, Tool

from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.tools.inventory import (
    READ_ONLY_TOKENS_PER_TOOL_GOAL,
    TOKENS_PER_TOOL_GOAL,
    TOOLS_LIST_RATIO_GOAL,
)
from qlik_tasks_mcp.tools.ops import selection
from qlik_tasks_mcp.tools.served import shipped_catalogue
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio
APPS = 150


@functools.cache
def o200k() -> Any:
    """The encoding the goals are stated in (bpe-openai, the test extra, ships its BPE data: nothing is downloaded)."""
    with warnings.catch_warnings():
        # bpe-openai 0.1.4 reads its data through importlib.resources.open_binary, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        return bpe_openai.get_encoding("o200k_base")


def tokens(text: str) -> int:
    return len(o200k().encode(text))


def model_facing(tools: list[Tool]) -> str:
    """What hosts put in front of the model: each tool's name, description and input schema, as compact JSON."""
    shown = [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in tools]
    return json.dumps(shown, separators=(",", ":"))


async def listed(**settings: Any) -> list[Tool]:
    h = make_harness(**settings)
    try:
        async with h.client() as client:
            return (await client.list_tools()).tools
    finally:
        await h.backend.aclose()


@pytest.mark.parametrize(
    ("read_only", "per_tool"), [(False, TOKENS_PER_TOOL_GOAL), (True, READ_ONLY_TOKENS_PER_TOOL_GOAL)]
)
async def test_the_catalogue_stays_within_its_token_goal(read_only: bool, per_tool: int) -> None:
    tools = await listed(read_only=read_only)
    cost = tokens(model_facing(tools))
    goal = per_tool * len(tools)
    assert cost <= goal, f"{len(tools)} tools cost {cost} model-facing tokens (o200k); goal {goal}"


async def test_every_advertised_schema_names_every_parameter_and_no_validation_noise(harness: Harness) -> None:
    async with harness.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    await harness.mcp.served.build_all()
    # What the SDK validates arguments against: its own schema of each registered tool.
    validated = {t.name: t.input_schema for t in await harness.mcp.list_tools()}
    for name, tool in tools.items():
        assert set(tool.input_schema.get("properties", {})) == set(validated[name].get("properties", {})), name
        text = json.dumps(tool.input_schema)
        for noise in ('"title"', '"maxLength"', '"additionalProperties"', '"$ref"'):
            assert noise not in text, (name, noise)
        assert tool.description and "\n" not in tool.description and "  " not in tool.description, name


def test_tools_list_stays_within_twice_the_model_facing_catalogue() -> None:
    """Output schemas and annotations travel in tools/list too (hosts that forward them pay for them): the whole
    answer stays within twice what the model is shown."""
    tools = [item.tool for item in shipped_catalogue()]
    wire = json.dumps(
        [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools], separators=(",", ":")
    )
    facing = tokens(model_facing(tools))
    assert tokens(wire) <= TOOLS_LIST_RATIO_GOAL * facing, (tokens(wire), facing)


async def test_bounds_left_out_of_the_schema_are_still_enforced(harness: Harness) -> None:
    async with harness.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "maximum" not in tools["list_reload_tasks"].input_schema["properties"]["limit"]
        too_many = await client.call_tool("list_reload_tasks", {"limit": 101})
        too_long = await client.call_tool("get_reload_task", {"task_id": "x" * 129})
    assert "limit" in error_text(too_many) and "100" in error_text(too_many)
    assert "task_id" in error_text(too_long)


async def test_the_text_block_is_the_structured_result_as_compact_json(harness: Harness) -> None:
    async with harness.client() as client:
        listing = await client.call_tool("list_reload_tasks", {"limit": 5})
        task_id = data(listing)["tasks"][0]["id"]
        preview = await client.call_tool("delete_reload_task", {"task_id": task_id})
    for result in (listing, preview):
        structured = data(result)
        assert len(result.content) == 1 and isinstance(result.content[0], TextContent)
        text = result.content[0].text
        assert json.loads(text) == structured
        assert text == json.dumps(structured, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture
async def many() -> AsyncIterator[Harness]:
    h = make_harness(sandbox_options={"app_count": APPS})
    yield h
    await h.backend.aclose()


def reload_states(h: Harness) -> dict[str, str]:
    return {i: t["state"] for i, t in h.sandbox.tables["reload_tasks"].items()}


async def test_a_filter_selects_many_tasks_the_preview_pages_and_the_token_acts_on_exactly_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short pages, so a sandbox's worth of tasks (within the write tier's pace) spans several.
    monkeypatch.setattr(selection, "PREVIEW_LINES", 2)
    before = copy.deepcopy(harness.sandbox.tables)
    chosen = {i for i, state in reload_states(harness).items() if state == "Enabled"}
    pages = -(-len(chosen) // 2)
    assert pages >= 3
    args = {"enabled": False, "filter": {"kinds": ["reload"], "enabled": True}}
    async with harness.client() as client:
        shown = [data(await client.call_tool("set_tasks_enabled", args | {"page": n})) for n in range(1, pages + 1)]
        assert harness.sandbox.tables == before
        assert all(p["action"].startswith(f"Disable {len(chosen)} tasks (") for p in shown)
        assert len(shown[0]["changes"]) == 2 + 1 and "page=2" in shown[0]["changes"][-1]
        assert all(task_id in " ".join(c for p in shown for c in p["changes"]) for task_id in chosen)
        beyond = await client.call_tool("set_tasks_enabled", args | {"page": pages + 1})
        assert "past the last page" in error_text(beyond)
        last = args | {"page": pages, "confirm_token": shown[-1]["confirm_token"]}
        done = data(await client.call_tool("set_tasks_enabled", last))
    assert done["status"] == "done" and done["result"]["changed"] == len(chosen), done["result"]
    after = reload_states(harness)
    assert all(after[i] == "Disabled" for i in chosen)
    assert all(after[i] == before["reload_tasks"][i]["state"] for i in set(after) - chosen)
    assert {k: v for k, v in harness.sandbox.tables.items() if k != "reload_tasks"} == {
        k: v for k, v in before.items() if k != "reload_tasks"
    }


async def test_a_selection_that_changed_after_the_preview_is_refused(harness: Harness) -> None:
    args = {"enabled": False, "filter": {"kinds": ["reload"], "enabled": True}}
    async with harness.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", args))
        # One of the selected tasks is disabled elsewhere: the filter now matches one task fewer.
        gone = next(t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
        gone["state"] = "Disabled"
        before = copy.deepcopy(harness.sandbox.tables)
        refused = await client.call_tool("set_tasks_enabled", args | {"confirm_token": preview["confirm_token"]})
    assert "Nothing was changed" in error_text(refused)
    assert harness.sandbox.tables == before


async def test_a_selection_cut_by_the_request_budget_is_refused(many: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "SELECT_REQUESTS", 20)
    before = copy.deepcopy(many.sandbox.tables)
    async with many.client() as client:
        cut = await client.call_tool("set_tasks_enabled", {"enabled": False, "filter": {"kinds": ["reload"]}})
    text = error_text(cut)
    assert "within 20 requests" in text and "partial selection is never changed" in text
    assert many.sandbox.tables == before


async def test_a_filter_by_owner_app_and_name_selects_only_those(harness: Harness) -> None:
    task = next(t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
    same = [
        t["id"]
        for t in harness.sandbox.tables["reload_tasks"].values()
        if t["appId"] == task["appId"] and t["userId"] == task["userId"] and t["state"] == "Enabled"
    ]
    only = {"app_id": task["appId"], "owner_id": task["userId"], "kinds": ["reload"]}
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    word = next(t["name"] for t in sharing.values() if t["enabled"]).split()[0].upper()
    named = [i for i, t in sharing.items() if word.casefold() in t["name"].casefold() and t["enabled"]]
    by_name = {"kinds": ["sharing"], "name_contains": word}
    async with harness.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "filter": only}))
        sharing_preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "filter": by_name}))
    assert preview["action"].startswith(f"Disable {len(same)} tasks (")
    assert all(task_id in " ".join(preview["changes"]) for task_id in same)
    assert sharing_preview["action"].startswith(f"Disable {len(named)} tasks ({len(named)} sharing)")
    assert all(task_id in " ".join(sharing_preview["changes"]) for task_id in named)


def test_a_real_tenants_server_imports_neither_the_sandbox_nor_jsonschema() -> None:
    """In a fresh process (this one has both loaded): building for a real tenant leaves them unimported."""
    probe = (
        "import sys\n"
        "from qlik_tasks_mcp.server.app import build_server\n"
        "from qlik_tasks_mcp.server.settings import Settings\n"
        "mcp, backend = build_server(Settings(tenant_url='https://t.eu.qlikcloud.com', api_key='k'))\n"
        "assert backend.tools\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jsonschema', 'qlik_tasks_mcp.sandbox'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QLIK_")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]", done.stdout
