"""`python -m qlik_tasks_mcp.server.catalogue`: writes tools/catalogue.json, the tools/list answer a start serves,
from every tool built by the one Registrar, as a first call builds it. `--check` only says whether it is current."""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

import anyio
from mcp.server import MCPServer

from qlik_tasks_mcp.server.app import make_qalyptus_clients, make_qlik_client
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import Gate
from qlik_tasks_mcp.tools.inventory import NAMES, Deps
from qlik_tasks_mcp.tools.registrar import Registrar
from qlik_tasks_mcp.tools.served import CATALOGUE_FILE, Listed, ServedTools, catalogue_text


async def built_catalogue() -> list[Listed]:
    """Every toolset, read-write, built now; each tool as the SDK lists it once registered. Built apart from
    build_server, which serves the shipped file: what is written never depends on what was written before."""
    # The sandbox has a Qalyptus organization, so every toolset is served; the catalogue depends on no setting.
    flags: dict[str, Any] = {"sandbox": True, "read_only": False, "toolsets": ",".join(NAMES)}
    settings = Settings(**flags)
    mcp: MCPServer[Any] = MCPServer("catalogue")
    registrar = Registrar(mcp, Audit(stream=sys.stderr), Gate(secrets.token_bytes(32)))
    clients = Deps(qlik=make_qlik_client(settings), qalyptus=make_qalyptus_clients(settings))
    try:
        ServedTools(registrar, clients, check=False).build_all()
        infos = {info.name: info for info in registrar.registered}
        return [Listed(infos[t.name].toolset, infos[t.name].effect, t) for t in await mcp.list_tools()]
    finally:
        await clients.qlik.aclose()
        for client in clients.qalyptus.values():
            await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qlik_tasks_mcp.server.catalogue", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped catalogue is not current")
    args = parser.parse_args(argv)
    listed = anyio.run(built_catalogue)
    text = catalogue_text(listed)
    if args.check:
        current = CATALOGUE_FILE.exists() and CATALOGUE_FILE.read_text(encoding="utf-8") == text
        print(f"{CATALOGUE_FILE.name}: {'current' if current else 'stale; run without --check to rewrite it'}")
        return 0 if current else 1
    CATALOGUE_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {CATALOGUE_FILE} ({len(listed)} tools)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
