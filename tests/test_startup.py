"""Start-up does only what a first tools/list needs: the sandbox is built on its first request, a real tenant's
server never loads the simulated one or its checker, and registering a tool derives no result schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings
from tests.conftest import data

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("jsonschema", "qlik_tasks_mcp.sandbox")


def sandbox_settings() -> Settings:
    flags: dict[str, Any] = {"sandbox": True}  # by field name, as the CLI passes flags
    return Settings(**flags)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("QLIK_", "QALYPTUS_"))}


def modules_after_build(settings: str) -> list[str]:
    """The heavy modules loaded, in a fresh process, by building a server with `settings` (a Settings(...) call)."""
    probe = (
        "import sys\n"
        "from qlik_tasks_mcp.server.app import build_server\n"
        "from qlik_tasks_mcp.server.settings import Settings\n"
        f"mcp, backend = build_server({settings})\n"
        "assert backend.tools\n"
        f"print(' '.join(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env(), check=True)
    return done.stdout.split()


def test_a_real_tenants_build_loads_neither_the_sandbox_nor_jsonschema() -> None:
    assert modules_after_build("Settings(tenant_url='https://t.eu.qlikcloud.com', api_key='k')") == []


def test_a_sandbox_build_loads_only_the_transport_not_the_tenant_nor_jsonschema() -> None:
    loaded = modules_after_build("Settings(sandbox=True)")
    # The package, its addresses (core), the fault types the transport maps, the transport: no family, no checker.
    assert set(loaded) == {
        "qlik_tasks_mcp.sandbox",
        "qlik_tasks_mcp.sandbox.core",
        "qlik_tasks_mcp.sandbox.faults",
        "qlik_tasks_mcp.sandbox.transport",
    }


async def test_the_sandbox_is_built_on_the_first_tool_call_not_for_tools_list() -> None:
    mcp, backend = build_server(sandbox_settings())
    assert backend.tenant is not None
    async with Client(mcp) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} >= {"list_reload_tasks", "get_reload_task"}
        assert not backend.tenant.built
        page = data(await client.call_tool("list_reload_tasks", {"limit": 5}))
        assert backend.tenant.builds == 1
        data(await client.call_tool("list_reload_tasks", {"limit": 5}))
        assert backend.tenant.builds == 1
    # The state the tools reached is the one the backend shows.
    assert backend.sandbox is not None
    listed_ids = {row["id"] for row in page["tasks"]}
    assert listed_ids and listed_ids <= set(backend.sandbox.tables["reload_tasks"])
    await backend.aclose()


async def test_asking_for_the_sandbox_state_before_any_request_builds_it_once() -> None:
    mcp, backend = build_server(sandbox_settings())
    assert backend.tenant is not None and not backend.tenant.built
    sandbox = backend.sandbox
    assert sandbox is not None and backend.tenant.builds == 1
    task_id = next(iter(sandbox.tables["reload_tasks"]))
    async with Client(mcp) as client:
        found = data(await client.call_tool("get_reload_task", {"task_id": task_id}))
    assert task_id in str(found) and backend.tenant.builds == 1
    await backend.aclose()


async def test_registration_derives_no_result_schema_and_results_meet_the_advertised_one() -> None:
    """The tools hand the SDK a CallToolResult, so registering one derives no output schema (most of a build's time
    was that); the small one the catalogue advertises is what results meet."""
    mcp, backend = build_server(sandbox_settings())
    async with Client(mcp) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("list_reload_tasks", {"limit": 3})
    await mcp.served.build_all()
    assert {t.name: t.output_schema for t in await mcp.list_tools()} == dict.fromkeys(listed)
    assert {t.name: t for t in await mcp.registered_tools()} == listed
    schema = listed["list_reload_tasks"].output_schema
    assert schema is not None and set(schema["properties"]) >= {"tasks"}
    jsonschema.validate(data(result), schema)
    await backend.aclose()


async def test_the_sandbox_command_lists_tools_then_serves_a_call_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "qlik_tasks_mcp", "--sandbox"], cwd=str(ROOT), env=clean_env()
    )
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            # The banner is printed at start, before any tenant is built.
            assert "SANDBOX MODE" in stderr.read_text()
            assert "list_reload_tasks" in names
            page = data(await client.call_tool("list_reload_tasks", {"limit": 2}))
    assert len(page["tasks"]) == 2
