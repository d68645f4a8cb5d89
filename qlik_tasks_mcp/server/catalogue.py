"""`python -m qlik_tasks_mcp.server.catalogue`: rewrites tools/catalogue.json, the tools/list answer a start serves,
from the code: every tool built by the one Registrar, as a first call builds it, whatever the old file says (a
snapshot, as github-mcp-server's toolsnaps). `--check` only says whether it is current, and what changed.

The same from the tests: `UPDATE_CATALOGUE=1 .venv/bin/python -m pytest tests/test_catalogue.py`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server import MCPServer

from qlik_tasks_mcp.server.app import make_qalyptus_clients, make_qlik_client
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools import inventory, served
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import Gate
from qlik_tasks_mcp.tools.registrar import Registrar
from qlik_tasks_mcp.tools.served import REWRITE_COMMAND, Listed, ServedTools, catalogue_text

TEST_REWRITE = "UPDATE_CATALOGUE=1 .venv/bin/python -m pytest tests/test_catalogue.py"


async def built_catalogue() -> list[Listed]:
    """Every toolset of the inventory, read-write, built now; each tool as tools/list advertises it. Built apart
    from build_server, which serves the shipped file: what is written never depends on what was written before."""
    # The sandbox has a Qalyptus organization, so every toolset is served; the catalogue depends on no setting.
    flags: dict[str, Any] = {"sandbox": True, "read_only": False}
    settings = Settings(**flags)
    mcp: MCPServer[Any] = MCPServer("catalogue")
    registrar = Registrar(mcp, Audit(stream=sys.stderr), Gate(secrets.token_bytes(32)))
    clients = inventory.Deps(
        qlik=make_qlik_client(settings), qalyptus=make_qalyptus_clients(settings), served=inventory.TOOLSETS
    )
    try:
        await ServedTools(registrar, clients, check=False).build_all()
        infos = {info.name: info for info in registrar.registered}
        # In inventory order, each toolset's tools as declared (the order they were registered in).
        return [Listed(infos[t.name].toolset, infos[t.name].effect, t) for t in await registrar.advertised()]
    finally:
        await clients.qlik.aclose()
        for client in clients.qalyptus.values():
            await client.aclose()


def catalogue_file() -> Path:
    return served.CATALOGUE_FILE


async def write_catalogue() -> int:
    """What the command does: the catalogue file rewritten from the code. Returns the number of tools."""
    listed = await built_catalogue()
    catalogue_file().write_text(catalogue_text(listed), encoding="utf-8")
    return len(listed)


async def stale_catalogue() -> str | None:
    """None when the catalogue file is what the code builds; otherwise what differs, and the command to run."""
    built = await built_catalogue()
    path = catalogue_file()
    text = path.read_text(encoding="utf-8") if path.exists() else "[]"
    if text == catalogue_text(built):
        return None
    old = {e["tool"]["name"]: e for e in json.loads(text)}
    new = {item.tool.name: item.entry() for item in built}
    changes = [
        f"{label} {', '.join(names)}"
        for label, names in (
            ("new tools:", sorted(set(new) - set(old))),
            ("removed tools:", sorted(set(old) - set(new))),
            ("changed:", sorted(n for n in set(new) & set(old) if new[n] != old[n])),
        )
        if names
    ] or ["the order of the tools"]
    return (
        f"{path.name} is not what the code builds ({'; '.join(changes)}): rewrite it with `{REWRITE_COMMAND}` "
        f"(or `{TEST_REWRITE}`) and commit it"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REWRITE_COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped catalogue is not current")
    args = parser.parse_args(argv)
    if args.check:
        problem = anyio.run(stale_catalogue)
        print(problem or f"{catalogue_file().name}: current")
        return 1 if problem else 0
    count = anyio.run(write_catalogue)
    print(f"wrote {catalogue_file()} ({count} tools)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
