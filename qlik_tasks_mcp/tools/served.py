"""The served tools: advertised from the catalogue shipped with the package, each toolset built on its first call.

Building a tool (its family's module, its argument and result models, its schemas) was most of a start, and a host
lists tools long before it calls one, if it ever does. So tools/list answers from `catalogue.json`, which
`python -m qlik_tasks_mcp.server.catalogue` writes from every tool built and a test keeps equal to it; a toolset's
module is loaded and its tools registered (by the one Registrar, exactly as they are listed) when one of them is
first called.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.types import Tool as MCPTool

from qlik_tasks_mcp.tools.common import Registrar, ToolInfo
from qlik_tasks_mcp.tools.inventory import Clients, Toolset
from qlik_tasks_mcp.tools.operation import Effect

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")


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
    entries = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    return tuple(Listed(e["toolset"], e["effect"], MCPTool.model_validate(e["tool"])) for e in entries)


def catalogue_text(listed: Iterable[Listed]) -> str:
    """The catalogue file's text: one tool per entry, indented so that a change to a tool reads as a small diff."""
    return json.dumps([item.entry() for item in listed], indent=1, ensure_ascii=False) + "\n"


@dataclass
class ServedTools:
    """The chosen toolsets' tools: listed from the catalogue, registered on first call."""

    registrar: Registrar
    clients: Clients
    toolsets: list[Toolset]
    built: set[str] = field(default_factory=set)

    @functools.cached_property
    def listed(self) -> list[Listed]:
        # The registrar's rule: read-only mode registers only the tools that read.
        served = {t.name for t in self.toolsets}
        return [
            item
            for item in shipped_catalogue()
            if item.toolset in served and (item.effect == "read" or not self.registrar.read_only)
        ]

    @functools.cached_property
    def by_name(self) -> dict[str, Listed]:
        return {item.tool.name: item for item in self.listed}

    def advertised(self) -> list[MCPTool]:
        return [item.tool for item in self.listed]

    def infos(self) -> list[ToolInfo]:
        return [ToolInfo(item.tool.name, item.toolset, item.effect) for item in self.listed]

    def build(self, tool: str) -> None:
        """Registers the toolset serving `tool`, unless it is registered already; an unknown name builds nothing."""
        item = self.by_name.get(tool)
        if item is not None:
            self._build(next(t for t in self.toolsets if t.name == item.toolset))

    def build_all(self) -> None:
        for entry in self.toolsets:
            self._build(entry)

    def _build(self, entry: Toolset) -> None:
        if entry.name in self.built:
            return
        with collector_paused():
            service = entry.load().service(self.clients)
            self.registrar.add_all(entry.name, entry.operations(), service)
        self.built.add(entry.name)


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
