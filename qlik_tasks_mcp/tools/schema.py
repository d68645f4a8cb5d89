"""The schemas tools/list advertises: said once and short (tools/list is paid by every conversation), in the
subset of JSON Schema every major host's function declarations accept (Gemini's is the narrowest: an OpenAPI 3.0
subset without `additionalProperties`, `propertyNames`, `$ref`, `const` or an `enum` without its `type`)."""

import json
import re
from collections import Counter
from typing import Any

from qlik_tasks_mcp.tools.params import SHARED_PARAMETERS

# Bounds only validation needs: the argument model still enforces them, and a value past one gets an error naming
# the parameter, so advertising them costs every conversation tokens for nothing a caller acts on.
VALIDATION_ONLY = frozenset(
    {
        *("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"),
        *("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"),
        # Keys of a free-form object: Gemini rejects the keyword; the model enforces it and the description says it.
        "propertyNames",
    }
)


def slim_schema(schema: dict[str, Any], tool: str = "") -> dict[str, Any]:
    """The input schema a host shows the model, said once and short: definitions used once inlined, no generated
    titles, no bounds only validation needs, no `additionalProperties` (unknown fields are refused anyway, a
    free-form object's values are checked by the model and said by its description; Gemini rejects the keyword),
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
    return _merged_enums(_without_null_arm(out))


def _merged_enums(schema: dict[str, Any]) -> dict[str, Any]:
    """A `const` said as a one-value `enum`, and `anyOf` arms that are all enums of one type said as one enum
    (`Literal[...] | Literal["both"]`): Gemini's function declarations know neither `const` nor such arms."""
    if "const" in schema:
        value = schema.pop("const")
        schema = {"type": _value_type(value), **schema, "enum": [value]}
    arms = schema.get("anyOf")
    if isinstance(arms, list) and arms and all(isinstance(a, dict) and set(a) <= {"enum", "type"} for a in arms):
        kinds = {a.get("type") for a in arms}
        if len(kinds) == 1 and all("enum" in a for a in arms):
            values = list(dict.fromkeys(v for a in arms for v in a["enum"]))
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            schema = {"type": kinds.pop(), "enum": values, **rest}
    return schema


def _noise(key: str, value: Any) -> bool:
    return (
        (key == "title" and isinstance(value, str))
        or key in VALIDATION_ONLY
        or key == "additionalProperties"
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


def result_schema(schema: dict[str, Any], *, drops_empty: bool = False) -> dict[str, Any]:
    """The output schema advertised for a result whose full JSON schema is `schema`: its fields and their JSON
    types, one level deep. Hosts do not show output schemas to the model, yet tools/list carries them to every
    conversation (the full ones were three quarters of it); a client that validates results still checks every
    field the result has, and the text block beside each result is the same data. `drops_empty`: the result
    leaves out an optional field rather than send it null (tools/model.py Compact)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    required: list[str] = schema.get("required", [])
    fields = {
        name: _typed(sub, defs, nullable=name in required or not drops_empty)
        for name, sub in schema.get("properties", {}).items()
    }
    out: dict[str, Any] = {"type": "object", "properties": fields}
    if required:
        out["required"] = required
    return out


def _typed(schema: dict[str, Any], defs: dict[str, Any], *, nullable: bool) -> dict[str, Any]:
    kinds = _json_types(schema, defs)
    if not nullable and len(kinds) > 1:
        kinds = [kind for kind in kinds if kind != "null"]
    return {"type": kinds[0] if len(kinds) == 1 else kinds} if kinds else {}


def _json_types(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """The JSON types a value of `schema` may have ([] for any), following `$ref`s and `anyOf`/`oneOf` arms."""
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return _json_types(defs[ref.rsplit("/", 1)[-1]], defs)
    arms = schema.get("anyOf") or schema.get("oneOf")
    if arms:
        kinds: list[str] = []
        for arm in arms:
            found = _json_types(arm, defs)
            if not found:
                return []
            kinds += [k for k in found if k not in kinds]
        return kinds
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return list(kind)
    values = schema.get("enum", [schema["const"]] if "const" in schema else [])
    return list(dict.fromkeys(_value_type(v) for v in values))


def _value_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"
