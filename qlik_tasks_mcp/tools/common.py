"""What every tool family shares: the one registrar (honest annotations, error mapping, audit, the gate bound
to each destructive operation), and the common parameter types."""

import functools
import inspect
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_jsonable_python

from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.tools.audit import Audit
from qlik_tasks_mcp.tools.gate import Consent, Gate, Gated, Plan, bind_call
from qlik_tasks_mcp.tools.operation import Effect, Operation

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

# Shared parameter types: each says what to pass, briefly, because every token is paid per conversation.
Limit = Annotated[int, Field(ge=1, le=100, description="Max 100.")]
Cursor = Annotated[str | None, Field(default=None, max_length=4000, description="From next_cursor.")]
# Said at length once, in the server's instructions (server/app.py), not in every destructive tool's schema.
ConfirmToken = Annotated[str | None, Field(default=None, max_length=200)]
# Parameters many tools share, described once in the server's instructions; the schema keeps a short reminder.
SHARED_PARAMETERS = {"organization": "Name; default: the first."}
# Bounds only validation needs: the argument model still enforces them, and a value past one gets an error naming
# the parameter, so advertising them costs every conversation tokens for nothing a caller acts on.
VALIDATION_ONLY = frozenset(
    {"maxLength", "minLength", "maxItems", "minItems", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"}
)


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


def slim_schema(schema: dict[str, Any], tool: str = "") -> dict[str, Any]:
    """The input schema a host shows the model, said once and short: definitions used once inlined, no generated
    titles, no bounds only validation needs, no `additionalProperties: false` (unknown fields are refused anyway),
    no `null` arm of an optional parameter (absent already means null), no description that only repeats the
    tool's and the parameter's names, and shared parameters' short reminders."""
    slim = _slimmed(_inlined(schema), _words(tool))
    for name, text in SHARED_PARAMETERS.items():
        if name in slim.get("properties", {}):
            slim["properties"][name]["description"] = text
    return slim


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each definition used once put in its place; definitions used more often (or recursive) stay."""
    defs: dict[str, Any] = schema.get("$defs", {})
    uses = Counter(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(schema)))
    inline = {name for name, count in uses.items() if count == 1 and f'"#/$defs/{name}"' not in json.dumps(defs[name])}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        name = ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else ""
        if name in inline:
            # The reference's own keys (its description) say more about this use than the definition's.
            return walk(defs[name]) | {k: walk(v) for k, v in node.items() if k != "$ref"}
        return {k: walk(v) for k, v in node.items()}

    out = {k: walk(v) for k, v in schema.items() if k != "$defs"}
    kept = {name: walk(d) for name, d in defs.items() if name not in inline}
    return out | ({"$defs": kept} if kept else {})


def _slimmed(schema: Any, tool_words: frozenset[str]) -> Any:
    if isinstance(schema, list):
        return [_slimmed(item, tool_words) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if _noise(key, value):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _property(name, sub, key, tool_words) for name, sub in value.items()}
        else:
            out[key] = _slimmed(value, tool_words)
    enum = out.get("enum")
    if out.get("type") == "string" and isinstance(enum, list) and all(isinstance(v, str) for v in enum):
        del out["type"]  # the values say it
    return _without_null_arm(out)


def _noise(key: str, value: Any) -> bool:
    return (
        (key == "title" and isinstance(value, str))
        or key in VALIDATION_ONLY
        or (key == "additionalProperties" and value is False)
        or (key == "default" and value == [])
    )


def _property(name: str, schema: Any, where: str, tool_words: frozenset[str]) -> Any:
    slim = _slimmed(schema, tool_words)
    text = slim.get("description") if isinstance(slim, dict) and where == "properties" else None
    if isinstance(text, str) and _words(text) <= tool_words | _words(name):
        del slim["description"]
    return slim


def _without_null_arm(schema: dict[str, Any]) -> dict[str, Any]:
    arms = schema.get("anyOf")
    if isinstance(arms, list) and schema.get("default", ...) is None:
        kept = [arm for arm in arms if arm != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(arms):
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            schema = kept[0] | rest
    return schema


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
