"""The gate's token rules on their own (the tool-level behaviour is covered through MCP sessions)."""

from __future__ import annotations

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from qlik_tasks_mcp.tools.gate import Gate


def test_token_is_single_use_on_one_replica() -> None:
    gate = Gate(b"k" * 32)
    token, _ = gate.mint("t", {"a": 1}, {"state": 1})
    gate.verify("t", {"a": 1}, {"state": 1}, token)
    with pytest.raises(ToolError, match="already used"):
        gate.verify("t", {"a": 1}, {"state": 1}, token)


def test_token_needs_the_same_secret() -> None:
    token, _ = Gate(b"k" * 32).mint("t", {"a": 1}, None)
    with pytest.raises(ToolError, match="does not match"):
        Gate(b"x" * 32).verify("t", {"a": 1}, None, token)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Gate(b"short")
