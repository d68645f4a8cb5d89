"""Qlik's contract as the sandbox reads it: request schemas, field lists and error bodies, from the vendored specs.

Every JSON request body is checked against the request schema of its operation in the spec (jsonschema,
the spec's own `$ref`s). Where Qlik's own examples break their schema (tasks.json's Task example has the
name "Reload app4 when Task 1,2,3 succeeded", a state "App4.Reload" of type "event"; scheduling-tasks.json
shows RRULE `recurrence` schedules and `appId` correlations), the example wins: the schema is widened just
enough to take it (a `pattern` is dropped, an `enum` gains the value, a `type` gains the value's type, a
`oneOf` of `required` alternatives gains one requiring the example's field). /api/v1/tasks and
/api/scheduling/tasks are one service describing one Task document, so each one's examples widen both.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from starlette.responses import JSONResponse, Response

from qlik_tasks_mcp.specs import QLIK

# Specs whose examples widen one another's schemas (the same service's documents).
SIBLINGS = {"tasks.json": ("scheduling-tasks.json",), "scheduling-tasks.json": ("tasks.json",)}
RELAXABLE = {"pattern", "enum", "type", "oneOf"}
MAX_WIDENING_ROUNDS = 20


@cache
def spec(name: str) -> dict[str, Any]:
    return json.loads((QLIK / name).read_text(encoding="utf-8"))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def request_schema_name(name: str, method: str, template: str) -> str:
    """The component named by the operation's JSON request body."""
    op = spec(name)["paths"][template][method.lower()]
    return _ref_name(op["requestBody"]["content"]["application/json"]["schema"]["$ref"])


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _without_read_only(example: Any, schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """An example stripped of the fields the schema marks readOnly (they come from responses, not requests)."""
    if "$ref" in schema:
        schema = schemas[_ref_name(schema["$ref"])]
    props = schema.get("properties") or {}
    if not isinstance(example, dict):
        return example
    return {
        k: _without_read_only(v, props.get(k, {}), schemas)
        for k, v in example.items()
        if not props.get(k, {}).get("readOnly")
    }


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The errors to widen for: inside a oneOf, those of the alternatives of the instance's own type."""
    if error.validator != "oneOf" or not error.context:
        yield error
        return
    by_arm: dict[Any, list[ValidationError]] = {}
    for inner in error.context:
        by_arm.setdefault(inner.relative_schema_path[0], []).append(inner)
    arms = [errs for errs in by_arm.values() if not any(e.validator == "type" and not e.path for e in errs)]
    if arms and all(e.validator == "required" for errs in arms for e in errs):
        yield error
        return
    for errs in arms:
        for inner in errs:
            yield from _leaves(inner)


def _widen(error: ValidationError) -> bool:
    """Loosen the schema node `error` came from just enough to take its instance; False if it cannot."""
    node, instance = error.schema, error.instance
    if not isinstance(node, dict) or error.validator not in RELAXABLE:
        return False
    if error.validator == "pattern":
        node.pop("pattern")
    elif error.validator == "enum":
        node["enum"] = [*node["enum"], instance]
    elif error.validator == "type":
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if _json_type(instance) in kinds:
            return False
        node["type"] = [*kinds, _json_type(instance)]
    else:
        named = {k for arm in node["oneOf"] for k in arm.get("required", [])}
        extra = next((k for k in instance if k not in named), None) if isinstance(instance, dict) else None
        if extra is None:
            return False
        node["oneOf"] = [*node["oneOf"], {"required": [extra]}]
    return True


def _widen_by(validator: Draft7Validator, example: Any) -> None:
    for _ in range(MAX_WIDENING_ROUNDS):
        errors = [leaf for error in validator.iter_errors(example) for leaf in _leaves(error)]
        if not any([_widen(e) for e in errors]):
            return


def _examples(name: str) -> Iterator[tuple[str, Any]]:
    """(component name, example) for every request-side example the spec publishes."""
    document = spec(name)
    schemas = document["components"]["schemas"]
    for component, schema in schemas.items():
        if "example" in schema:
            yield component, _without_read_only(schema["example"], schema, schemas)
    for ops in document["paths"].values():
        for op in ops.values():
            content = (
                op.get("requestBody", {}).get("content", {}).get("application/json", {}) if isinstance(op, dict) else {}
            )
            ref = content.get("schema", {}).get("$ref")
            for example in (content.get("examples") or {}).values():
                target = example.get("$ref")
                value = document["components"]["examples"][_ref_name(target)] if target else example
                if ref and "value" in value:
                    component = _ref_name(ref)
                    yield component, _without_read_only(value["value"], schemas[component], schemas)


def _nullable(node: Any) -> None:
    """OpenAPI 3.0 `nullable: true` as JSON Schema says it: null is one more type the value may have."""
    if isinstance(node, list):
        for item in node:
            _nullable(item)
    elif isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        for value in node.values():
            _nullable(value)


@cache
def components(name: str) -> dict[str, Any]:
    """The spec's component schemas, nullable read as JSON Schema, widened by its own examples and its siblings'."""
    schemas = copy.deepcopy(spec(name)["components"]["schemas"])
    _nullable(schemas)
    for source in (name, *SIBLINGS.get(name, ())):
        for component, example in _examples(source):
            if component in schemas:
                _widen_by(_validator_for(schemas, component), example)
    return schemas


def _validator_for(schemas: dict[str, Any], component: str) -> Draft7Validator:
    # OpenAPI 3.0 component schemas are JSON Schema draft 4-7 keywords; the refs point into components.
    return Draft7Validator({"$ref": f"#/components/schemas/{component}", "components": {"schemas": schemas}})


@cache
def validator(name: str, component: str) -> Draft7Validator:
    return _validator_for(components(name), component)


def problems(name: str, component: str, body: Any, limit: int = 5) -> list[str]:
    """Where `body` breaks the (widened) schema `component` of spec `name`, one short line each."""
    found = sorted(validator(name, component).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    lines = []
    for error in found[:limit]:
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        lines.append(f"{where}: {error.message[:160]}")
    return lines


@cache
def _field_validator(name: str, component: str, field: str) -> Draft7Validator:
    schemas = components(name)
    pointer = f"#/components/schemas/{component}/properties/{field}"
    return Draft7Validator({"$ref": pointer, "components": {"schemas": schemas}})


def field_problems(name: str, component: str, field: str, value: Any) -> list[str]:
    """Where `value` breaks the schema of property `field` of `component` (a JSON Patch value, say)."""
    return [e.message[:160] for e in _field_validator(name, component, field).iter_errors(value)][:3]


def checker(name: str, component: str) -> Callable[[Any], list[str]]:
    """The request body check for an operation whose body is the schema `component` of spec `name`."""
    validator(name, component)  # built now, at start-up, not on the first request

    def check(body: Any) -> list[str]:
        return problems(name, component, body)

    return check


def properties(name: str, component: str) -> dict[str, Any]:
    """A component's properties, `allOf` parts merged, refs followed."""
    schemas = spec(name)["components"]["schemas"]
    schema = schemas[component]
    merged: dict[str, Any] = dict(schema.get("properties") or {})
    for part in schema.get("allOf") or []:
        if "$ref" in part:
            merged |= properties(name, _ref_name(part["$ref"]))
        merged |= part.get("properties") or {}
    return merged


def writable(name: str, component: str) -> tuple[str, ...]:
    """The fields of a component a request may set: every property the spec does not mark readOnly."""
    return tuple(k for k, v in properties(name, component).items() if not v.get("readOnly"))


def enum(name: str, component: str, field: str) -> tuple[str, ...]:
    return tuple(properties(name, component)[field]["enum"])


# Error bodies --------------------------------------------------------------------------------------------

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ErrorShape:
    """How a family's spec writes errors: `Errors` with string codes, or `ErrorResponse` with integer codes."""

    code_prefix: str | None  # None: the integer HTTP status is the code (tasks, scheduling tasks)
    http_meta: bool = False  # sharing-tasks adds meta.httpCode

    def __call__(self, status: int, detail: str, title: str | None = None) -> Response:
        title = title or TITLES.get(status, "Error")
        error: dict[str, Any]
        if self.code_prefix is None:
            error = {"code": status, "title": title, "context": detail, "timestamp": _now()}
        else:
            error = {"code": f"{self.code_prefix}-{status}", "title": title, "detail": detail}
            if self.http_meta:
                error["meta"] = {"httpCode": status}
        return JSONResponse({"errors": [error], "traceId": f"{random.getrandbits(64):016x}"}, status_code=status)


RELOAD_TASKS_ERRORS = ErrorShape("RELOAD-TASKS")
SHARING_ERRORS = ErrorShape("HTTP", http_meta=True)
TASKS_ERRORS = ErrorShape(None)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
