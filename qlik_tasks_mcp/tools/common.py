"""What every tool family shares: registration with honest annotations, error mapping, audit, common types."""

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, create_model, model_validator

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput, UnsafeLinkError
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import CONFIRM_HELP, Gate, Gated, bind_call

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

Kind = Literal["read", "write", "destructive"]

# Shared parameter types: each says what to pass, briefly, because every token is paid per conversation.
Limit = Annotated[int, Field(ge=1, le=100, description="Items per page (1-100).")]
Cursor = Annotated[str | None, Field(default=None, max_length=4000, description="next_cursor from the previous page.")]
ConfirmToken = Annotated[str | None, Field(default=None, max_length=200, description=CONFIRM_HELP)]


@dataclass
class ToolInfo:
    name: str
    toolset: str
    kind: Kind


@dataclass
class Registrar:
    """Registers a family's tools: annotations from one `kind`, errors mapped, writes audited, read-only honoured."""

    mcp: MCPServer
    audit: Audit
    gate: Gate
    read_only: bool = False
    registered: list[ToolInfo] = field(default_factory=list)

    def tool(self, toolset: str, kind: Kind, *, title: str, idempotent: bool = False) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            name = fn.__name__
            if kind != "read" and self.read_only:
                return fn
            if kind == "destructive" and "confirm_token" not in fn.__annotations__:
                raise TypeError(f"destructive tool {name} must take confirm_token and use the gate")
            annotations = ToolAnnotations(
                title=title,
                read_only_hint=kind == "read",
                destructive_hint=kind == "destructive",
                idempotent_hint=True if kind == "read" else idempotent,
                open_world_hint=True,
            )
            self.mcp.add_tool(self._wrap(fn, name, kind), name=name, title=title, annotations=annotations)
            # The advertised input schema is what every conversation pays for; arguments are still validated
            # by the full pydantic model, so slimming what is shown loosens nothing.
            # The SDK has no public hook for this.
            tool = self.mcp._tool_manager.get_tool(name)
            if tool is not None:
                tool.parameters = slim_schema(tool.parameters)
                tool.fn_metadata.arg_model = refusing_unknown(tool.fn_metadata.arg_model, name)
            self.registered.append(ToolInfo(name, toolset, kind))
            return fn

        return decorate

    def _wrap(self, fn: Callable[..., Any], name: str, kind: Kind) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def call(**kwargs: Any) -> Any:
            args = audit_args(kwargs)
            try:
                with bind_call(name, args):
                    result = await fn(**kwargs)
            except (ApiError, InvalidInput, UnsafeLinkError) as exc:
                if kind != "read":
                    self.audit.write(name, args, "error", str(exc))
                raise ToolError(str(exc)) from None
            except ToolError as exc:
                if kind != "read":
                    self.audit.write(name, args, "refused", str(exc))
                raise
            if kind != "read":
                outcome = result.status if isinstance(result, Gated) else "done"
                self.audit.write(name, args, outcome)
            return result

        return call

    def resolver(self, fn: F) -> F:
        """Wrap a gate resolver: it runs before the tool body, so it needs the same error mapping."""

        @functools.wraps(fn)
        async def resolve(**kwargs: Any) -> Any:
            try:
                return await fn(**kwargs)
            except (ApiError, InvalidInput, UnsafeLinkError) as exc:
                raise ToolError(str(exc)) from None

        return resolve  # type: ignore[return-value]


def refusing_unknown(model: type[M], tool: str) -> type[M]:
    """The SDK drops arguments it does not know; a misspelt `timezone` would then silently mean UTC."""
    known = frozenset(info.alias or name for name, info in model.model_fields.items())
    takes = ", ".join(sorted(known))

    def known_only(cls: type[M], data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValueError(f"{tool} has no argument {', '.join(unknown)}; it takes: {takes}")
        return data

    validators = {"known_only": model_validator(mode="before")(known_only)}  # type: ignore[arg-type]
    return create_model(model.__name__, __base__=model, __validators__=validators)  # type: ignore[call-overload]


def slim_schema(schema: Any) -> Any:
    """Drop generated titles and the `null` arm of optional parameters (absent already means null)."""
    if isinstance(schema, list):
        return [slim_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: slim_schema(sub) for name, sub in value.items()}
        else:
            out[key] = slim_schema(value)
    arms = out.get("anyOf")
    if isinstance(arms, list) and out.get("default", ...) is None:
        kept = [arm for arm in arms if arm != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(arms):
            del out["anyOf"]
            out.pop("default")
            out = kept[0] | out
    return out


def audit_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, Context) or key == "consent":
            continue
        if key == "confirm_token":
            out[key] = "<given>" if value else None
        elif isinstance(value, BaseModel):
            out[key] = value.model_dump(mode="json", exclude_none=True)
        else:
            out[key] = value
    return out


def put_owner_note(owners: Iterable[str | None]) -> str:
    """What a PUT of a reload task or task does besides the change: Qlik makes the caller the owner."""
    counts = Counter(o or "unknown" for o in owners)
    now = ", ".join(f"{o} ({n})" if n > 1 else o for o, n in counts.most_common(5))
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return (
        f"Qlik makes the caller (this API key's user) the owner of what it updates; now owned by {now}{more}, "
        "afterwards it runs with the caller's access."
    )
