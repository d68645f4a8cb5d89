"""The served tools: advertised from the catalogue shipped with the package, each toolset built on its first call.

Building a tool (its family's module, its argument and result models, its schemas) was most of a start, and a host
lists tools long before it calls one, if it ever does. So tools/list answers from `catalogue.json`, a snapshot that
`python -m qlik_tasks_mcp.server.catalogue` rewrites from the code (whatever the old file says) and that
tests/test_catalogue.py keeps equal to it; a toolset's module is loaded and its tools registered (by the one
Registrar, exactly as they are listed) when one of them is first called (server/dispatch.py routes both).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import Tool as MCPTool

from qlik_tasks_mcp.tools.inventory import Deps, Toolset, toolset
from qlik_tasks_mcp.tools.operation import Effect
from qlik_tasks_mcp.tools.registrar import Registrar, ToolInfo

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")
# The one documented command that rewrites the catalogue from the code.
REWRITE_COMMAND = "python -m qlik_tasks_mcp.server.catalogue"
REWRITE = f"rewrite it with `{REWRITE_COMMAND}`"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listed:
    """One tool as tools/list advertises it, with the toolset that serves it and its effect."""

    toolset: str
    effect: Effect
    tool: MCPTool

    def entry(self) -> dict[str, Any]:
        advertised = self.tool.model_dump(by_alias=True, exclude_none=True, mode="json")
        return {"toolset": self.toolset, "effect": self.effect, "tool": advertised}


@functools.cache
def shipped_catalogue() -> tuple[Listed, ...]:
    # Read as package data, so that it is found wherever the package is (a zip included).
    return read_catalogue(resources.files("qlik_tasks_mcp.tools").joinpath(CATALOGUE_FILE.name).read_text("utf-8"))


def read_catalogue(text: str) -> tuple[Listed, ...]:
    entries = json.loads(text)
    return tuple(Listed(e["toolset"], e["effect"], MCPTool.model_validate(e["tool"])) for e in entries)


def catalogue_text(listed: Iterable[Listed]) -> str:
    """The catalogue file's text: one tool per entry, indented so that a change to a tool reads as a small diff."""
    return json.dumps([item.entry() for item in listed], indent=1, ensure_ascii=False) + "\n"


@dataclass
class ServedTools:
    """The served toolsets' tools (`clients.served`): listed from the catalogue, registered on first call."""

    registrar: Registrar
    clients: Deps
    built: set[str] = field(default_factory=set)
    # Off only for the catalogue writer, which builds what the code declares whatever the shipped file says.
    check: bool = True
    # Two first calls of one toolset at once build it once.
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @functools.cached_property
    def listed(self) -> list[Listed]:
        served = {t.name for t in self.clients.served}
        return [item for item in shipped_catalogue() if item.toolset in served and self.registrar.serves(item.effect)]

    @functools.cached_property
    def by_name(self) -> dict[str, Listed]:
        return {item.tool.name: item for item in self.listed}

    def advertised(self) -> list[MCPTool]:
        return [item.tool for item in self.listed]

    def infos(self) -> list[ToolInfo]:
        return [ToolInfo(item.tool.name, item.toolset, item.effect) for item in self.listed]

    async def build(self, tool: str) -> None:
        """Registers the toolset serving `tool`, unless it is registered already; an unknown name builds nothing."""
        item = self.by_name.get(tool)
        if item is not None and item.toolset not in self.built:
            async with self.lock:
                await self._build(toolset(item.toolset))

    async def build_all(self) -> None:
        async with self.lock:
            for entry in self.clients.served:
                await self._build(entry)

    async def _build(self, entry: Toolset) -> None:
        if entry.name in self.built:
            return
        try:
            with collector_paused():
                service = entry.load().service(self.clients)
                self.registrar.add_all(entry.name, entry.operations(), service)
            if self.check:
                await self._check(entry)
        except Exception as exc:
            self.registrar.withdraw(entry.name)
            reason = (
                str(exc) if isinstance(exc, CatalogueMismatch) else f"{type(exc).__name__}; the server log says why"
            )
            log.exception("the %s toolset could not be built", entry.name)
            raise ToolError(f"The {entry.name} tools could not be loaded on this server: {reason}.") from None
        self.built.add(entry.name)

    async def _check(self, entry: Toolset) -> None:
        """The built toolset against what was listed: other tools or effects refuse (a host was told otherwise
        what they do); another description or schema serves what was built, with a warning to rewrite the file."""
        listed = {i.tool.name: i for i in self.listed if i.toolset == entry.name}
        built = {i.name: i.effect for i in self.registrar.registered if i.toolset == entry.name}
        if built != {name: item.effect for name, item in listed.items()}:
            raise CatalogueMismatch(
                f"its tools are not the ones the shipped catalogue lists (listed {sorted(listed)}, built "
                f"{sorted(built)}); {REWRITE}"
            )
        made = {tool.name: tool for tool in await self.registrar.advertised(listed)}
        drifted = sorted(name for name, item in listed.items() if made.get(name) != item.tool)
        if drifted:
            log.warning("tools/list advertised other schemas or texts than %s build; %s", drifted, REWRITE)


class CatalogueMismatch(Exception):
    """A toolset built other tools, or tools of other effects, than the shipped catalogue lists."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Building a toolset allocates many long-lived objects (its module's models, schemas) and no garbage: the
    cyclic collector would rescan them over and over, about a fifth of the build's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
