"""The one argument check: run on a tool's arguments before the SDK validates them, so that a mistake is answered
in one line that names the field and says what to send (pydantic's own report is several lines, with its type codes
and a link), and so that an argument the tool does not take is refused instead of silently dropped (a misspelt
`timezone` would otherwise mean UTC). A single value where a list is expected is wrapped, here and in the SDK alike
(`listed`), rather than refused."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import json
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from mcp.server.mcpserver import Context, Resolve
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails

LIST_ORIGINS = (list, tuple, set, frozenset, collections.abc.Sequence)
# How many fields one answer names: past that, the first ones and a count (the line stays one line).
MAX_NAMED = 4
# Parts of an error's location that name a union member or a validator, not a field.
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "set", "tuple", "literal"})


def _unwrapped(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def expects_list(annotation: Any) -> bool:
    """Whether `annotation` (optionally None, Annotated) is a list-like type."""
    bare = _unwrapped(annotation)
    origin = get_origin(bare)
    if origin in (Union, types.UnionType):
        arms = [a for a in get_args(bare) if a is not type(None)]
        return len(arms) == 1 and expects_list(arms[0])
    return bare in LIST_ORIGINS or origin in LIST_ORIGINS


def as_list(value: Any) -> Any:
    return value if value is None or isinstance(value, list | tuple | set | frozenset) else [value]


def listed(annotation: Any) -> Any:
    """`annotation`, accepting a single value where it expects a list (as a one-item list)."""
    return Annotated[annotation, BeforeValidator(as_list)] if expects_list(annotation) else annotation


def takes_argument(param: inspect.Parameter) -> bool:
    """Whether the caller sends `param` (not the request context, nor a value a resolver fills in)."""
    bare = _unwrapped(param.annotation)
    if isinstance(bare, type) and issubclass(bare, Context):
        return False
    return not any(isinstance(m, Resolve) for m in getattr(param.annotation, "__metadata__", ()))


class ArgumentCheck:
    """A tool's arguments checked as its function's parameters declare them (the model is built on first use)."""

    def __init__(self, tool: str, params: list[inspect.Parameter]) -> None:
        self.tool = tool
        self.params = [p for p in params if takes_argument(p)]

    @functools.cached_property
    def model(self) -> type[BaseModel]:
        fields: dict[str, Any] = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default) for p in self.params
        }
        config = ConfigDict(arbitrary_types_allowed=True)
        return create_model(f"{self.tool}_arguments", __config__=config, **fields)

    @functools.cached_property
    def takes(self) -> frozenset[str]:
        return frozenset(info.alias or name for name, info in self.model.model_fields.items())

    def refusal(self, arguments: dict[str, Any]) -> str | None:
        """One line saying what is wrong with `arguments`, or None when the SDK will accept them."""
        unknown = sorted(set(arguments) - self.takes)
        if unknown:
            return f"{self.tool} has no argument {', '.join(unknown)}; it takes: {', '.join(sorted(self.takes))}"
        try:
            self.model.model_validate(self._pre_parsed(arguments))
        except ValidationError as exc:
            return f"{self.tool}: {described(exc.errors(include_url=False, include_input=False))}"
        return None

    def _pre_parsed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """As the SDK reads them: a list or object sent as JSON text (some hosts do) is parsed first."""
        out = dict(arguments)
        for name, info in self.model.model_fields.items():
            value = arguments.get(info.alias or name)
            if isinstance(value, str) and info.annotation is not str:
                try:
                    parsed = json.loads(value)
                except (ValueError, RecursionError):
                    continue
                if isinstance(parsed, list | dict):
                    out[info.alias or name] = parsed
        return out


def described(errors: list[ErrorDetails]) -> str:
    """`field: what to send` for each field with an error (the arms of a union said together), in one line."""
    wanted: dict[str, list[str]] = {}
    for error in errors:
        phrases = wanted.setdefault(_where(error["loc"]), [])
        phrase = _what(error)
        if phrase not in phrases:
            phrases.append(phrase)
    parts = [f"{where}: {_either(phrases)}" if where else _either(phrases) for where, phrases in wanted.items()]
    more = len(parts) - MAX_NAMED
    line = "; ".join(parts[:MAX_NAMED]) + (f"; and {more} more" if more > 0 else "")
    return " ".join(line.split())


def _either(phrases: list[str]) -> str:
    """`send a string or a list`, not `send a string or send a list`."""
    rest = [p.removeprefix("send ") if phrases[0].startswith("send ") else p for p in phrases[1:]]
    return " or ".join([phrases[0], *rest])


def _where(loc: tuple[int | str, ...]) -> str:
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif _FIELD.fullmatch(part) and part not in _TYPE_TAGS:
            where += f".{part}" if where else part
    return where


def _what(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    fixed = {
        "missing": "required",
        "extra_forbidden": "unknown field",
        "int_type": "send an integer",
        "int_parsing": "send an integer",
        "int_from_float": "send a whole number",
        "float_type": "send a number",
        "float_parsing": "send a number",
        "string_type": "send a string",
        "bool_type": "send true or false",
        "bool_parsing": "send true or false",
        "list_type": "send a list",
        "tuple_type": "send a list",
        "set_type": "send a list",
        "dict_type": "send an object",
        "model_type": "send an object",
        "model_attributes_type": "send an object",
    }
    bounded = {
        "less_than_equal": ("send at most", "le"),
        "less_than": ("send less than", "lt"),
        "greater_than_equal": ("send at least", "ge"),
        "greater_than": ("send more than", "gt"),
        "string_too_long": ("send at most {} characters", "max_length"),
        "string_too_short": ("send at least {} characters", "min_length"),
        "too_long": ("send at most {} items", "max_length"),
        "too_short": ("send at least {} items", "min_length"),
        "literal_error": ("send one of", "expected"),
        "enum": ("send one of", "expected"),
        "string_pattern_mismatch": ("send text matching", "pattern"),
    }
    if kind in fixed:
        return fixed[kind]
    if kind in bounded and bounded[kind][1] in ctx:
        text, key = bounded[kind]
        return text.format(ctx[key]) if "{}" in text else f"{text} {ctx[key]}"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:1].lower() + message[1:]
