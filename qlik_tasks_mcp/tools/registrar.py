"""What every tool family shares: the one registrar (honest annotations, error mapping, audit, the gate bound
to each destructive operation, the argument check, compact results), on the SDK's public API only.

A tool function returns the SDK a `CallToolResult` it made itself (the SDK passes one through unchanged): the
structured content is the result model's JSON and the text block is the same JSON, compact (the SDK would indent
it). What tools/list advertises is computed here too (`advertised`): the SDK's input schema slimmed, and a small
output schema from the result model (tools/schema.py); the served process answers tools/list from the catalogue
that these make (tools/served.py).
"""

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, get_type_hints

import anyio
import pydantic_core
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.client.http import collecting_notices
from qlik_tasks_mcp.tools.arguments import ArgumentCheck, listed
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import Consent, Gate, Gated, Plan, as_person, bind_call
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Resolver, argument_resolver, name_gaps, with_name_note
from qlik_tasks_mcp.tools.operation import Effect, Operation
from qlik_tasks_mcp.tools.params import ConfirmToken
from qlik_tasks_mcp.tools.schema import result_schema, slim_schema


@dataclass
class ToolInfo:
    name: str
    toolset: str
    effect: Effect


@dataclass
class Registrar:
    """Registers operations: annotations from one effect, errors mapped, writes audited, read-only honoured,
    and for a destructive operation the gate bound in: the resolver and `confirm_token` derived from its plan."""

    mcp: MCPServer
    audit: Audit
    gate: Gate
    read_only: bool = False
    registered: list[ToolInfo] = field(default_factory=list)
    # Per registered tool: its argument check and the model of its result.
    checks: dict[str, ArgumentCheck] = field(default_factory=dict)
    results: dict[str, type[BaseModel]] = field(default_factory=dict)

    def add_all(self, toolset: str, operations: Iterable[Operation], service: Any) -> None:
        for op in operations:
            self.add(toolset, op, service)

    def serves(self, effect: Effect) -> bool:
        """Read-only mode registers only the tools that read."""
        return effect == "read" or not self.read_only

    def add(self, toolset: str, op: Operation, service: Any) -> None:
        if not self.serves(op.effect):
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
        signature = inspect.signature(fn)
        returns = signature.return_annotation
        if not (isinstance(returns, type) and issubclass(returns, BaseModel)):
            raise TypeError(f"{name} must return a pydantic model (the structured result), not {returns!r}")
        self.mcp.add_tool(
            compact_result(self._audited(fn, name, effect), signature),
            name=name,
            title=title,
            description=" ".join((fn.__doc__ or "").split()),
            annotations=annotations,
        )
        self.registered.append(ToolInfo(name, toolset, effect))
        self.checks[name] = ArgumentCheck(name, list(signature.parameters.values()))
        self.results[name] = returns

    def withdraw(self, toolset: str) -> None:
        """Unregisters every tool of `toolset`: a toolset is served whole or not at all."""
        for info in [i for i in self.registered if i.toolset == toolset]:
            self.mcp.remove_tool(info.name)
            self.registered.remove(info)
            self.checks.pop(info.name, None)
            self.results.pop(info.name, None)

    async def advertised(self, names: Iterable[str] | None = None) -> list[MCPTool]:
        """The registered tools (those named, in registration order) as tools/list advertises them: as the SDK
        lists them, with the input schema slimmed and the result's output schema."""
        wanted = set(names) if names is not None else {info.name for info in self.registered}
        made = {tool.name: tool for tool in await self.mcp.list_tools() if tool.name in wanted}
        return [
            made[info.name].model_copy(
                update={
                    # The advertised input schema is what every conversation pays for; arguments are still
                    # validated by the full model, so slimming what is shown loosens nothing.
                    "input_schema": slim_schema(made[info.name].input_schema, info.name),
                    "output_schema": output_schema(self.results[info.name]),
                }
            )
            for info in self.registered
            if info.name in made
        ]

    def _audited(self, fn: Callable[..., Any], name: str, effect: Effect) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def call(**kwargs: Any) -> Any:
            args = audit_args(kwargs)
            audited = effect != "read"
            try:
                # Names are enrichment: the lookups that failed during the call become one note on its result.
                with bind_call(name, args), name_gaps() as gaps:
                    result = with_name_note(await fn(**kwargs), gaps)
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


@functools.cache
def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The output schema advertised for a tool returning `model`, once per model in the process (tools share
    result models)."""
    return result_schema(model.model_json_schema(), drops_empty=issubclass(model, Compact))


# The result key of the API's own notices (deprecations read from response headers, client/http.py). Their own
# key: a preview's `notes` are what the user is asked about, and a notice about the API is not part of that.
API_NOTES = "api_notes"


def compact_result(fn: Callable[..., Awaitable[BaseModel]], signature: inspect.Signature) -> Callable[..., Any]:
    """`fn` answering the SDK a `CallToolResult`: the model's JSON as structured content (with the API's notices of
    the call, if any), and as the text block compact JSON of the same data, so a host that reads only the text
    still gets everything."""

    @functools.wraps(fn)
    async def call(**kwargs: Any) -> CallToolResult:
        with collecting_notices() as notices:
            result = await fn(**kwargs)
        structured = result.model_dump(mode="json", by_alias=True)
        if notices:
            structured[API_NOTES] = list(notices)
        text = pydantic_core.to_json(structured).decode()
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

    # Read by the SDK: the parameters (its argument model and schema) and a return it passes through unchanged.
    call.__signature__ = signature.replace(return_annotation=CallToolResult)  # type: ignore[attr-defined]
    call.__annotations__ = {**fn.__annotations__, "return": CallToolResult}
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
    # A single value where a list is expected is taken as a list of one (tools/arguments.py).
    return [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=listed(hints.get(p.name, p.annotation)))
        for p in params
    ]


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
    resolved = _resolving(argument_resolver(service))
    if op.effect != "destructive":
        params = _signature(op.handler, 1)

        async def call(**kwargs: Any) -> Any:
            return await op.handler(service, **(await resolved(kwargs)))

        return _function(op.name, call, params, returns, op.handler.__doc__)
    return _gated_function(op, service, gate, returns, resolved)


def _resolving(resolver: Resolver | None) -> Resolver:
    """App and user names in arguments become ids (names.argument_resolver) for the families that look names up."""

    async def same(kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs

    return resolver or same


def _gated_function(
    op: Operation, service: Any, gate: Gate, returns: Any, resolved: Resolver
) -> Callable[..., Awaitable[Any]]:
    assert op.plan is not None
    plan_of, action = op.plan, op.handler
    plan_params = _signature(plan_of, 1)
    action_params = _signature(action, 2)
    missing = {p.name for p in plan_params} - {p.name for p in action_params}
    if missing:
        raise TypeError(f"{op.name}: its plan takes {sorted(missing)}, which the tool does not")

    async def planned(**args: Any) -> Plan:
        return as_person(await plan_of(service, **args))

    async def ask(ctx: Context, **kwargs: Any) -> Elicit[Consent] | None:
        args = await resolved(kwargs)
        return await gate.ask(ctx, lambda: planned(**args))

    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    resolver = _function(f"ask_{op.name}", mapped_errors(ask), [context, *plan_params], Elicit[Consent] | None, None)
    consent = inspect.Parameter(
        "consent",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[ElicitationResult[Consent], Resolve(resolver)],
    )
    token = inspect.Parameter("confirm_token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfirmToken)

    async def call(**kwargs: Any) -> Any:
        kwargs = await resolved(kwargs)
        plan: Plan = await planned(**_pick(kwargs, plan_params))
        args = _pick(kwargs, action_params)
        return await gate.run(
            plan=plan,
            consent=kwargs["consent"],
            confirm_token=kwargs.get("confirm_token"),
            act=lambda: action(service, plan, **args),
        )

    params = [*action_params, consent, token]
    return _function(op.name, call, params, Gated[returns], op.handler.__doc__)


def audit_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, Context) or key == "consent":
            continue
        if key == "confirm_token":
            out[key] = "<given>" if value else None
        else:
            # Models inside lists too (set_tasks_enabled's tasks): the audit line and the token bind their fields.
            out[key] = to_jsonable_python(value, exclude_none=True)
    return out
