"""What every tool family shares: the one registrar (honest annotations, error mapping, audit, the gate bound
to each destructive operation), and the common parameter types."""

import functools
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_type_hints

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, create_model, model_validator

from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import CONFIRM_HELP, Consent, Gate, Gated, Plan, bind_call
from qlik_tasks_mcp.tools.operation import Effect, Operation

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

# Shared parameter types: each says what to pass, briefly, because every token is paid per conversation.
Limit = Annotated[int, Field(ge=1, le=100, description="Items per page (1-100).")]
Cursor = Annotated[str | None, Field(default=None, max_length=4000, description="next_cursor from the previous page.")]
ConfirmToken = Annotated[str | None, Field(default=None, max_length=200, description=CONFIRM_HELP)]


@dataclass
class ToolInfo:
    name: str
    toolset: str
    kind: Effect


@dataclass
class Registrar:
    """Registers operations: annotations from one effect, errors mapped, writes audited, read-only honoured,
    and for a destructive operation the gate bound in: the resolver and `confirm_token` derived from its plan."""

    mcp: MCPServer
    audit: Audit
    gate: Gate
    read_only: bool = False
    registered: list[ToolInfo] = field(default_factory=list)

    def add_all(self, toolset: str, operations: Iterable[Operation], service: Any) -> None:
        for op in operations:
            self.add(toolset, op, service)

    def add(self, toolset: str, op: Operation, service: Any) -> None:
        if op.effect != "read" and self.read_only:
            return
        exposed = exposed_function(op, service, self.gate)
        self._register(toolset, op.effect, exposed, op.title, op.idempotent)

    def _register(self, toolset: str, effect: Effect, fn: Callable[..., Any], title: str, idempotent: bool) -> None:
        name = fn.__name__
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=effect == "read",
            destructive_hint=effect == "destructive",
            idempotent_hint=True if effect == "read" else idempotent,
            open_world_hint=True,
        )
        self.mcp.add_tool(self._audited(fn, name, effect), name=name, title=title, annotations=annotations)
        # The advertised input schema is what every conversation pays for; arguments are still validated
        # by the full pydantic model, so slimming what is shown loosens nothing.
        # The SDK has no public hook for this.
        tool = self.mcp._tool_manager.get_tool(name)
        if tool is not None:
            tool.parameters = slim_schema(tool.parameters)
            tool.fn_metadata.arg_model = refusing_unknown(tool.fn_metadata.arg_model, name)
        self.registered.append(ToolInfo(name, toolset, effect))

    def _audited(self, fn: Callable[..., Any], name: str, effect: Effect) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def call(**kwargs: Any) -> Any:
            args = audit_args(kwargs)
            audited = effect != "read"
            try:
                with bind_call(name, args):
                    result = await fn(**kwargs)
            except ClientError as exc:
                if audited:
                    self.audit.write(name, args, "error", str(exc))
                raise ToolError(str(exc)) from None
            except ToolError as exc:
                if audited:
                    self.audit.write(name, args, "refused", str(exc))
                raise
            except anyio.get_cancelled_exc_class():
                if audited:
                    self.audit.write(name, args, "cancelled")
                raise
            except Exception as exc:
                # Every outcome of a writing call leaves a line, the unexpected ones too.
                if audited:
                    self.audit.write(name, args, "failed", f"{type(exc).__name__}: {exc}")
                raise
            if audited:
                outcome = result.status if isinstance(result, Gated) else "done"
                self.audit.write(name, args, outcome)
            return result

        return call


def mapped_errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A resolver runs before the tool body, so it needs the same error mapping."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except ClientError as exc:
            raise ToolError(str(exc)) from None

    return call


def _signature(fn: Callable[..., Any], skip: int) -> list[inspect.Parameter]:
    """`fn`'s parameters after the first `skip`, keyword-only, with annotations resolved to objects."""
    hints = get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)) for p in params]


def _function(
    name: str, body: Callable[..., Awaitable[Any]], params: list[inspect.Parameter], returns: Any, doc: str | None
) -> Callable[..., Awaitable[Any]]:
    """A function the SDK reads like a hand-written one: its name, signature, annotations and docstring."""
    fn: Any = body
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__signature__ = inspect.Signature(params, return_annotation=returns)
    fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    return fn


def _pick(kwargs: dict[str, Any], params: list[inspect.Parameter]) -> dict[str, Any]:
    return {p.name: kwargs[p.name] for p in params if p.name in kwargs}


def exposed_function(op: Operation, service: Any, gate: Gate) -> Callable[..., Awaitable[Any]]:
    """The tool function for `op`, with its service bound (and, if destructive, the gate)."""
    returns = get_type_hints(op.handler, include_extras=True).get("return", Any)
    if op.effect != "destructive":
        params = _signature(op.handler, 1)

        async def call(**kwargs: Any) -> Any:
            return await op.handler(service, **kwargs)

        return _function(op.name, call, params, returns, op.handler.__doc__)
    return _gated_function(op, service, gate, returns)


def _gated_function(op: Operation, service: Any, gate: Gate, returns: Any) -> Callable[..., Awaitable[Any]]:
    assert op.plan is not None
    plan_of, action = op.plan, op.handler
    plan_params = _signature(plan_of, 1)
    action_params = _signature(action, 2)
    missing = {p.name for p in plan_params} - {p.name for p in action_params}
    if missing:
        raise TypeError(f"{op.name}: its plan takes {sorted(missing)}, which the tool does not")

    async def ask(ctx: Context, **kwargs: Any) -> Elicit[Consent] | None:
        return await gate.ask(ctx, lambda: plan_of(service, **kwargs))

    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    resolver = _function(f"ask_{op.name}", mapped_errors(ask), [context, *plan_params], Elicit[Consent] | None, None)
    consent = inspect.Parameter(
        "consent",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[ElicitationResult[Consent], Resolve(resolver)],
    )
    token = inspect.Parameter("confirm_token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfirmToken)

    async def call(**kwargs: Any) -> Any:
        plan: Plan = await plan_of(service, **_pick(kwargs, plan_params))
        args = _pick(kwargs, action_params)
        return await gate.run(
            plan=plan,
            consent=kwargs["consent"],
            confirm_token=kwargs.get("confirm_token"),
            act=lambda: action(service, plan, **args),
        )

    params = [*action_params, consent, token]
    return _function(op.name, call, params, Gated[returns], op.handler.__doc__)


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


def put_owner_note(
    owners: Iterable[str | None], *, caller: str | None = None, labels: Mapping[str, str] | None = None
) -> str:
    """What a PUT of a reload task or task does besides the change: Qlik makes the caller the owner.

    `caller`: the caller's user id (Names.me()); tasks it owns already change no hands, and when it owns them
    all the note is "". `labels`: how to show an owner id (Names.describe_users()).
    """
    counts = Counter((labels or {}).get(o, o) if o else "unknown" for o in owners if not caller or o != caller)
    if not counts:
        return ""
    now = ", ".join(f"{o} ({n})" if n > 1 else o for o, n in counts.most_common(5))
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return (
        f"Qlik makes the caller (this API key's user) the owner of what it updates; now owned by {now}{more}, "
        "afterwards it runs with the caller's access."
    )
