"""Arguments: a mistake answered in one line naming the field and what to send; a single value taken where a list
is expected; and advertised schemas in the subset of JSON Schema every major host accepts (Gemini's function
declarations are the narrowest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qlik_tasks_mcp.tools.served import shipped_catalogue
from tests.conftest import Harness, data, error_text

pytestmark = pytest.mark.anyio

BOILERPLATE = ("validation error", "errors.pydantic.dev", "https://", "[type=", "input_value", "Arguments")


def one_clear_line(text: str) -> bool:
    return "\n" not in text and not any(b in text for b in BOILERPLATE)


@pytest.mark.parametrize(
    ("tool", "args", "says"),
    [
        ("list_reload_tasks", {"limit": 101}, "list_reload_tasks: limit: send at most 100"),
        ("list_reload_tasks", {"limit": "ten"}, "list_reload_tasks: limit: send an integer"),
        ("get_reload_task", {}, "get_reload_task: task_id: required"),
        ("get_reload_task", {"task_id": "x" * 129}, "get_reload_task: task_id: send at most 128 characters"),
        ("find_users", {"text": "a", "status": ["gone"]}, "find_users: status[0]: send one of 'active'"),
        (
            "set_tasks_enabled",
            {"enabled": False, "filter": {"kinds": ["reload"], "timezone": "UTC"}},
            "set_tasks_enabled: filter.timezone: unknown field",
        ),
        ("list_reload_tasks", {"limt": 5}, "list_reload_tasks has no argument limt; it takes: app_id, cursor, limit"),
    ],
)
async def test_a_wrong_argument_is_answered_in_one_line_naming_the_field(
    harness: Harness, tool: str, args: dict[str, Any], says: str
) -> None:
    sent = len(harness.recorder.exchanges)
    async with harness.client() as client:
        result = await client.call_tool(tool, args)
    text = error_text(result)
    assert text.startswith(says) and one_clear_line(text), text
    assert len(harness.recorder.exchanges) == sent  # refused before anything reached the tenant


async def test_a_call_without_arguments_is_told_what_is_required(harness: Harness) -> None:
    async with harness.client() as client:
        result = await client.call_tool("get_reload_task")
    assert error_text(result) == "get_reload_task: task_id: required"


async def test_a_single_value_is_taken_where_a_list_is_expected(harness: Harness) -> None:
    task = next(iter(harness.sandbox.tables["reload_tasks"].values()))
    async with harness.client() as client:
        listed = data(await client.call_tool("list_reloads", {"status": ["SUCCEEDED"], "limit": 5}))
        single = data(await client.call_tool("list_reloads", {"status": "SUCCEEDED", "limit": 5}))
        # Inside an input object too: a filter's kinds, and a list of task references given as one.
        by_filter = {"enabled": False, "filter": {"kinds": "reload", "app_id": task["appId"]}}
        one_kind = data(await client.call_tool("set_tasks_enabled", by_filter))
        one_ref = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "tasks": {"kind": "reload", "id": task["id"]}}
            )
        )
    assert single == listed and listed["reloads"]
    assert one_kind["status"] == "confirmation_required" and task["id"] in " ".join(one_kind["changes"])
    assert one_ref["status"] == "confirmation_required" and task["id"] in " ".join(one_ref["changes"])


# What a Gemini function declaration's `parameters` (an OpenAPI 3.0 schema subset) knows; anything else is refused
# with "Unknown name", and an enum must be a string enum that says `type: string`.
GEMINI_KEYS = frozenset(
    {
        *("type", "format", "title", "description", "nullable", "enum", "default", "example"),
        *("properties", "required", "propertyOrdering", "minProperties", "maxProperties"),
        *("items", "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "anyOf"),
    }
)
GEMINI_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})


def gemini_problems(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: not a schema"]
    problems = [f"{where}: {key}" for key in schema if key not in GEMINI_KEYS]
    kind = schema.get("type")
    if "anyOf" not in schema and kind not in GEMINI_TYPES:
        problems.append(f"{where}: type {kind!r}")
    if "enum" in schema and (kind != "string" or not all(isinstance(v, str) for v in schema["enum"])):
        problems.append(f"{where}: enum without type string")
    if schema.get("format") not in (None, "enum", "date-time"):
        problems.append(f"{where}: format {schema['format']}")
    if ("properties" in schema or "required" in schema) and kind != "object":
        problems.append(f"{where}: properties on a non-object")
    for name, sub in schema.get("properties", {}).items():
        problems += gemini_problems(sub, f"{where}.{name}")
    if "items" in schema:
        problems += gemini_problems(schema["items"], f"{where}[]")
    for n, arm in enumerate(schema.get("anyOf", [])):
        problems += gemini_problems(arm, f"{where}|{n}")
    return problems


def test_every_input_schema_is_one_gemini_function_declarations_accept() -> None:
    problems = [p for item in shipped_catalogue() for p in gemini_problems(item.tool.input_schema, item.tool.name)]
    assert not problems, json.dumps(problems, indent=1)


def test_the_gemini_check_refuses_what_gemini_refuses() -> None:
    """The check itself: the constructs that made Gemini reject 18 tools are caught."""
    untyped_enum = {"type": "object", "properties": {"sort": {"enum": ["a", "b"]}}}
    free_form = {"type": "object", "properties": {"v": {"type": "object", "additionalProperties": {"type": "string"}}}}
    assert gemini_problems(untyped_enum, "t") and gemini_problems(free_form, "t")
