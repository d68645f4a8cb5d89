"""Every tool a text names exists: descriptions, prompts, server instructions and results (test_profiles.py checks
every result under every profile with `unknown_tools`). A fix that recommends a tool the server does not have
sends an assistant in circles."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from qlik_tasks_mcp.server.app import INSTRUCTIONS
from qlik_tasks_mcp.tools.inventory import TOOLSETS
from qlik_tasks_mcp.tools.served import shipped_catalogue
from tests.conftest import Harness

pytestmark = pytest.mark.anyio

# What reads as a tool name: an action verb and an object, snake_case.
VERBS = "list|get|create|update|delete|find|set|start|cancel|execute|patch|reload|check|explain|migrate|run|stop"
MENTION = re.compile(rf"\b(?:{VERBS}|duplicate)_[a-z][a-z0-9_]*[a-z0-9]\b")


def _properties(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema (arguments and their fields)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema.get("properties", {}) or {})
        for value in schema.values():
            found |= _properties(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _properties(value)
    return found


@cache
def tool_names() -> frozenset[str]:
    """Every tool the inventory's toolsets declare."""
    return frozenset(op.name for toolset in TOOLSETS for op in toolset.operations())


@cache
def known_words() -> frozenset[str]:
    """Tool names, and the argument and result field names that share their form (`reload_id`, `run_id`)."""
    words: set[str] = set(tool_names())
    for item in shipped_catalogue():
        words |= _properties(item.tool.input_schema) | _properties(item.tool.output_schema)
    return frozenset(words)


def unknown_tools(text: str, also: frozenset[str] = frozenset()) -> set[str]:
    return {m for m in MENTION.findall(text) if m not in known_words() and m not in also}


def test_every_tool_a_description_or_the_instructions_name_exists() -> None:
    texts = [INSTRUCTIONS] + [json.dumps(item.entry()) for item in shipped_catalogue()]
    assert not unknown_tools("\n".join(texts))


def test_the_check_catches_a_tool_that_does_not_exist() -> None:
    assert unknown_tools("give it a new owner (update_sharing_task with owner)") == {"update_sharing_task"}
    assert not unknown_tools("delete it (delete_sharing_task); read run_id")


async def test_every_tool_a_prompt_names_exists(harness: Harness) -> None:
    async with harness.client() as client:
        prompts = (await client.list_prompts()).prompts
        names = frozenset(p.name for p in prompts)
        texts = []
        for prompt in prompts:
            args = {a.name: "x" for a in prompt.arguments or []}
            result = await client.get_prompt(prompt.name, args)
            texts += [getattr(m.content, "text", "") for m in result.messages]
            texts.append(prompt.description or "")
    assert len(texts) > len(prompts)
    assert not unknown_tools("\n".join(texts), also=names), "prompts name tools that do not exist"


def test_every_fix_find_orphans_gives_names_tools_that_exist() -> None:
    from qlik_tasks_mcp.tools.ops import orphans

    assert not unknown_tools(" ".join(orphans.NEW_OWNER.values()))
    assert set(orphans.DELETE_TOOL.values()) <= tool_names()
