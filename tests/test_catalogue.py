"""tools/list answers from the catalogue shipped with the package (a start builds no tool); each toolset is built on
its first call, by the one Registrar, into exactly what was listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from qlik_tasks_mcp.server.catalogue import built_catalogue
from qlik_tasks_mcp.tools.inventory import TOOLSETS
from qlik_tasks_mcp.tools.served import CATALOGUE_FILE, catalogue_text
from tests.conftest import data, make_harness

pytestmark = pytest.mark.anyio

FAMILY_MODULES = sorted(t.module for t in TOOLSETS)


async def test_the_shipped_catalogue_is_what_building_every_tool_lists() -> None:
    built = catalogue_text(await built_catalogue())
    assert len(json.loads(built)) == 56
    assert CATALOGUE_FILE.read_text(encoding="utf-8") == built, (
        "tools/catalogue.json is stale: run `python -m qlik_tasks_mcp.server.catalogue` and commit the file"
    )


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"read_only": True},
        {"toolsets": "reload,ops,qalyptus"},
        {"toolsets": "tasks,sharing", "read_only": True},
    ],
)
async def test_a_session_lists_exactly_what_the_first_calls_register(settings: dict[str, Any]) -> None:
    h = make_harness(**settings)
    try:
        async with h.client() as client:
            listed = [t.model_dump(by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools]
        assert [t["name"] for t in listed] == [info.name for info in h.backend.tools]
        assert not h.mcp.served.built
        h.mcp.served.build_all()
        registered = [t.model_dump(by_alias=True, exclude_none=True) for t in await h.mcp.registered_tools()]
        assert registered == listed
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
        "        assert len((await client.list_tools()).tools) == 56\n"
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
    assert loaded_families(call) == ["qlik_tasks_mcp.tools.reloads"]


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
