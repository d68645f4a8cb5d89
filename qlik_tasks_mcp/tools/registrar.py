"""What every tool family shares: the one registrar (honest annotations, error mapping, audit, the gate bound
to each destructive operation), and the common parameter types."""

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_type_hints

import anyio
import pydantic_core
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata, StrictJsonSchema
from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import Consent, Gate, Gated, Plan, bind_call
from qlik_tasks_mcp.tools.names import Resolver, argument_resolver, name_gaps, with_name_note
from qlik_tasks_mcp.tools.operation import Effect, Operation
from qlik_tasks_mcp.tools.params import ConfirmToken
from qlik_tasks_mcp.tools.schema import slim_schema

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


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
        description = " ".join((fn.__doc__ or "").split())
        output = output_schema_of(inspect.signature(fn).return_annotation)
        self.mcp.add_tool(
            self._audited(fn, name, effect),
            name=name,
            title=title,
            description=description,
            annotations=annotations,
            # Given a schema of ours, the SDK skips deriving one (most of a start's time); CompactResults adds it.
            structured_output=False if output else None,
        )
        self.registered.append(ToolInfo(name, toolset, effect))
        # The advertised input schema is what every conversation pays for; arguments are still validated
        # by the full pydantic model, so slimming what is shown loosens nothing.
        # The SDK has no public hook for this.
        tool = self.mcp._tool_manager.get_tool(name)
        if tool is not None:
            tool.parameters = slim_schema(tool.parameters, name)
            tool.fn_metadata = CompactResults.of(
                tool.fn_metadata, refusing_unknown(tool.fn_metadata.arg_model, name), output
            )

    def withdraw(self, toolset: str) -> None:
        """Unregisters every tool of `toolset`: a toolset is served whole or not at all."""
        for info in [i for i in self.registered if i.toolset == toolset]:
            if self.mcp._tool_manager.get_tool(info.name) is not None:
                self.mcp.remove_tool(info.name)
            self.registered.remove(info)

    def advertises(self, tool: MCPTool) -> bool:
        """Whether the registered tool of that name is advertised as `tool` says (the SDK lists these fields)."""
        made = self.mcp._tool_manager.get_tool(tool.name)
        if made is None:
            return False
        advertised = (made.title, made.description, made.parameters, made.output_schema, made.annotations)
        return advertised == (tool.title, tool.description, tool.input_schema, tool.output_schema, tool.annotations)

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

    async def ask(ctx: Context, **kwargs: Any) -> Elicit[Consent] | None:
        args = await resolved(kwargs)
        return await gate.ask(ctx, lambda: plan_of(service, **args))

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


KnownOnly = Callable[[dict[str, Any]], None]


class OutputJsonSchema(StrictJsonSchema):
    """The SDK's output-schema generator, with JSON-native defaults written as they are: pydantic otherwise builds
    a TypeAdapter per default (hundreds per start) to encode each one, to the same value."""

    def encode_default(self, dft: Any) -> Any:
        if dft is None or type(dft) in (str, int, bool):
            return dft
        return super().encode_default(dft)


@dataclass(frozen=True)
class OutputSchema:
    """A structured result's model and its published JSON schema, as the SDK's FuncMetadata would derive them."""

    model: type[BaseModel]
    schema: dict[str, Any]


@functools.cache
def _model_output_schema(model: type[BaseModel]) -> OutputSchema | None:
    schema = model.model_json_schema(schema_generator=OutputJsonSchema)
    # A root `$ref` (a recursive model) the SDK reshapes itself (func_metadata._inline_root_ref): left to it.
    return None if "$ref" in schema else OutputSchema(model, schema)


def output_schema_of(returns: Any) -> OutputSchema | None:
    """The output schema of a tool returning `returns`, once per model in the process (tools share result models),
    or None where the SDK should derive it (a return that is not a pydantic model)."""
    if isinstance(returns, type) and issubclass(returns, BaseModel):
        return _model_output_schema(returns)
    return None


def refusing_unknown(model: type[ArgModelBase], tool: str) -> KnownOnly:
    """The SDK drops arguments it does not know; a misspelt `timezone` would then silently mean UTC.

    A check run before the model validates (CompactResults.validate_arguments): no model subclass per tool, which
    cost cold start a class build each."""
    known = frozenset(info.alias or name for name, info in model.model_fields.items())
    takes = ", ".join(sorted(known))

    def known_only(data: dict[str, Any]) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            error = ValueError(f"{tool} has no argument {', '.join(unknown)}; it takes: {takes}")
            line = {"type": "value_error", "loc": (), "input": data, "ctx": {"error": error}}
            raise ValidationError.from_exception_data(model.__name__, [line])  # type: ignore[list-item]

    return known_only


class CompactResults(FuncMetadata):
    """The SDK's result conversion (mcp/server/mcpserver/utilities/func_metadata.py FuncMetadata.convert_result,
    called by tools/base.py Tool.run) puts a structured result in the text block a second time, as JSON indented
    by 2. Overridden here, at our layer: the text block is the structured content as compact JSON, the same data,
    so a host that reads only the text still gets everything, at no extra tokens for indentation."""

    known_only: KnownOnly | None = None

    @classmethod
    def of(cls, made: FuncMetadata, known_only: KnownOnly, output: "OutputSchema | None" = None) -> "CompactResults":
        """`made` as the SDK built it; `output`: the result's model and schema when computed here instead."""
        if output is not None:
            # A model returned as it is: what the SDK derives for one (no {"result": ...} wrapper).
            return cls(
                arg_model=made.arg_model, output_schema=output.schema, output_model=output.model, known_only=known_only
            )
        return cls(
            arg_model=made.arg_model,
            output_schema=made.output_schema,
            output_model=made.output_model,
            wrap_output=made.wrap_output,
            known_only=known_only,
        )

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        if self.known_only is not None:
            self.known_only(arguments_to_validate)
        return super().validate_arguments(arguments_to_validate)

    def convert_result(self, result: Any) -> CallToolResult | InputRequiredResult:
        converted = super().convert_result(result)
        if isinstance(converted, CallToolResult) and converted.structured_content is not None:
            text = pydantic_core.to_json(converted.structured_content).decode()
            return converted.model_copy(update={"content": [TextContent(type="text", text=text)]})
        return converted


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
