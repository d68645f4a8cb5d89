"""Tools declared at module level as operations: a handler, its effect, and for a destructive one its plan.

A handler's first parameter is its family's service (an API client, the Qalyptus organizations, the task sources);
the registrar binds it. A destructive operation is written once: `plan(service, **args)` says what would change,
read from the target's current state, and the handler is the action, called as `handler(service, plan, **args)`
only after the gate has a yes. The registrar derives the confirmation resolver and `confirm_token` from that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from qlik_tasks_mcp.tools.gate import Plan

Effect = Literal["read", "write", "destructive"]
Handler = Callable[..., Awaitable[Any]]
Planner = Callable[..., Awaitable[Plan]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    effect: Effect
    title: str
    idempotent: bool = False
    plan: Planner | None = None

    @property
    def name(self) -> str:
        return self.handler.__name__


def read(title: str) -> Callable[[Handler], Operation]:
    return lambda handler: Operation(handler, "read", title, idempotent=True)


def write(title: str, *, idempotent: bool = False) -> Callable[[Handler], Operation]:
    return lambda handler: Operation(handler, "write", title, idempotent=idempotent)


def destructive(title: str, *, plan: Planner, idempotent: bool = False) -> Callable[[Handler], Operation]:
    return lambda handler: Operation(handler, "destructive", title, idempotent=idempotent, plan=plan)


def operations_of(namespace: dict[str, Any]) -> list[Operation]:
    """A module's operations, in the order they are declared (the catalogue keeps that order)."""
    return [value for value in namespace.values() if isinstance(value, Operation)]
