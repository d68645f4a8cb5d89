"""The one inventory of toolsets: settings, --help, the server build, the ops tools, the README and the tests read it.

A toolset's module declares its operations at module level and two factories over the process's clients:
`service(clients)`, the object its handlers take first, and, for a family whose tasks the ops tools reach,
`source(clients)`, its `TaskSource`. What this inventory says about a toolset is known without loading its module:
a start loads none (tools/served.py).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from qlik_tasks_mcp.tools.operation import Operation, operations_of

if TYPE_CHECKING:
    from qlik_tasks_mcp.client.qalyptus import QalyptusClient
    from qlik_tasks_mcp.client.qlik import QlikClient
    from qlik_tasks_mcp.tools.names import Names
    from qlik_tasks_mcp.tools.sources import TaskSource


@dataclass(frozen=True)
class Toolset:
    name: str
    description: str
    # The task kinds the ops tools may reach through this toolset (and only while it is served).
    kinds: tuple[str, ...] = ()
    # Qalyptus toolsets need a configured organization; without one this process cannot serve them.
    needs_qalyptus: bool = False

    def can_serve(self, clients: Deps) -> bool:
        return bool(clients.qalyptus) or not self.needs_qalyptus

    @property
    def module(self) -> str:
        """Each toolset's operations live in `tools/<name>/tools.py`, beside what only that family uses."""
        return f"qlik_tasks_mcp.tools.{self.name}.tools"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def operations(self) -> list[Operation]:
        return operations_of(vars(self.load()))


TOOLSETS: tuple[Toolset, ...] = (
    Toolset(
        "reload",
        "reload tasks, /api/v1/reload-tasks (deprecated by Qlik)",
        ("reload",),
    ),
    Toolset(
        "tasks", "tasks and task chains, /api/scheduling/tasks (or /api/v1/tasks where a tenant lacks it)", ("task",)
    ),
    Toolset(
        "reloads",
        "app reloads (start, follow, cancel), their script logs, load scripts and script checks, /api/v1/reloads",
    ),
    Toolset(
        "sharing",
        "report subscriptions and chart sharing, /api/v1/sharing-tasks",
        ("sharing",),
    ),
    Toolset("directory", "apps and users by name: /api/v1/items, /api/v1/users"),
    Toolset("ops", "across every served kind: failures, schedules, bulk enable/disable"),
    Toolset("qalyptus", "Qalyptus Cloud report tasks", ("qalyptus",), True),
)
NAMES: tuple[str, ...] = tuple(t.name for t in TOOLSETS)

# The catalogue's token goal (o200k tokens of what hosts show the model: name, description, input schema), per
# listed tool so that it grows with the inventory: every conversation pays for every tool listed. The test and the
# bench read it here.
TOKENS_PER_TOOL_GOAL = 143
READ_ONLY_TOKENS_PER_TOOL_GOAL = 110
# tools/list as sent (output schemas, annotations and titles too) at most this many times the model-facing part.
TOOLS_LIST_RATIO_GOAL = 2.0


def toolset(name: str) -> Toolset:
    for entry in TOOLSETS:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown toolset {name!r}; choose from {', '.join(NAMES)}")


@dataclass
class Deps:
    """What the services are made from, once per process."""

    qlik: QlikClient
    qalyptus: dict[str, QalyptusClient] = field(default_factory=dict)
    # QLIK_TASKS_API: which API the tasks toolset uses (auto | scheduling | v1).
    tasks_api: Literal["auto", "scheduling", "v1"] = "auto"
    # The toolsets this process serves (of those chosen, the ones it can): the ops tools reach only their kinds.
    served: tuple[Toolset, ...] = TOOLSETS

    def __post_init__(self) -> None:
        self.served = tuple(entry for entry in self.served if entry.can_serve(self))

    @functools.cached_property
    def names(self) -> Names:
        """The one name lookup (apps, users, spaces, the caller), shared by every family for its lists and previews."""
        # Imported with the first family that needs it: a start loads no family (tools/served.py).
        from qlik_tasks_mcp.tools.names import Names

        return Names.of(self.qlik)

    @functools.cached_property
    def sources(self) -> dict[str, TaskSource]:
        """The served families' task sources, by kind: made when the ops tools first need them, since making them
        loads every served family's module."""
        sources: dict[str, TaskSource] = {}
        for entry in self.served:
            make = getattr(entry.load(), "source", None)
            if make is not None:
                found = make(self)
                sources[found.kind] = found
        return sources
