"""The gate's token, text and approval-store rules on their own (tool-level behaviour: through MCP sessions)."""

from __future__ import annotations

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ElicitResult

from qlik_tasks_mcp.tools.approval import Approvals, Preview
from qlik_tasks_mcp.tools.fence import escaped
from qlik_tasks_mcp.tools.gate import SIDE_LIMIT, Gate, field_diff
from tests.conftest import data, make_harness

pytestmark = pytest.mark.anyio


async def test_token_is_single_use_on_one_replica() -> None:
    gate = Gate(b"k" * 32)
    token, _ = gate.mint("t", {"a": 1}, {"state": 1})
    await gate.verify("t", {"a": 1}, {"state": 1}, token)
    with pytest.raises(ToolError, match="already used"):
        await gate.verify("t", {"a": 1}, {"state": 1}, token)


async def test_token_needs_the_same_secret_or_the_previous_one_during_a_rotation() -> None:
    token, _ = Gate(b"k" * 32).mint("t", {"a": 1}, None)
    with pytest.raises(ToolError, match="does not match"):
        await Gate(b"x" * 32).verify("t", {"a": 1}, None, token)
    await Gate(b"x" * 32, previous=b"k" * 32).verify("t", {"a": 1}, None, token)
    # A rotated-out secret no longer mints: new tokens are signed with the current one only.
    fresh, _ = Gate(b"x" * 32, previous=b"k" * 32).mint("t", {"a": 1}, None)
    with pytest.raises(ToolError, match="does not match"):
        await Gate(b"k" * 32).verify("t", {"a": 1}, None, fresh)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Gate(b"short")


async def test_token_expiry_takes_ascii_digits_only() -> None:
    gate = Gate(b"k" * 32)
    token, expires = gate.mint("t", {}, None)
    arabic = "".join(chr(0x0660 + int(d)) for d in str(expires))
    with pytest.raises(ToolError, match="malformed"):
        await gate.verify("t", {}, None, token.replace(str(expires), arabic))


def test_escaped_keeps_text_on_one_line_with_breaks_controls_and_bidi() -> None:
    text = "a\nb\r\tc\u2028d\u2029e\u202ef\u200bg\x00h\x85i"
    assert escaped(text) == "a\\nb\\r\\tc\\u2028d\\u2029e\\u202ef\\u200bg\\u0000h\\u0085i"
    assert escaped("Zürich 東京 -> ok") == "Zürich 東京 -> ok"


def test_field_diff_shows_the_change_of_a_long_value_and_says_the_cut() -> None:
    before = {"workflow": {"a": "x" * 9000, "target": "app-1"}, "same": 1}
    after = {"workflow": {"a": "x" * 9000, "target": "app-2"}, "same": 1, "added": [1]}
    diff = field_diff(before, after, ["workflow", "same", "added", "missing", "workflow.target"])
    assert [c.field for c in diff] == ["workflow", "added", "workflow.target"]
    workflow = diff[0]
    assert workflow.before is not None and workflow.after is not None
    assert '"target":"app-1"' in workflow.before and '"target":"app-2"' in workflow.after
    assert workflow.before.startswith("[cut: ") and len(workflow.before) < SIDE_LIMIT + 80
    assert diff[1].before is None and diff[1].after == "[1]"
    assert (diff[2].before, diff[2].after) == ('"app-1"', '"app-2"')


async def test_approval_is_decided_once_and_expires() -> None:
    now = [1000.0]
    approvals = Approvals(60, clock=lambda: now[0])
    preview = Preview(tool="t", arguments="{}", action="a", changes=[], diff=[("f", "1", "2")], notes=[])
    entry = await approvals.request("binding", preview)
    assert await approvals.request("binding", preview) == entry  # one open page per call and state
    assert (await approvals.page(entry.id)) == entry
    assert await approvals.decide(entry.id, "wrong", approve=True) == "forbidden"
    assert await approvals.decide(entry.id, entry.csrf, approve=True) == "approved"
    assert await approvals.decide(entry.id, entry.csrf, approve=False) == "gone"
    assert await approvals.page(entry.id) is None
    settled = await approvals.settle("binding")
    assert settled is not None and settled.decision == "approved"
    assert await approvals.settle("binding") is None  # acts once
    late = await approvals.request("binding", preview)
    now[0] += 61
    assert await approvals.page(late.id) is None
    assert await approvals.decide(late.id, late.csrf, approve=True) == "gone"
    assert await approvals.settle("binding") is None


@pytest.mark.anyio
@pytest.mark.parametrize("answer", ["yes", "true", 1, "on"])
async def test_an_elicited_yes_must_be_a_real_boolean_true(answer: object) -> None:
    h = make_harness(toolsets="tasks")
    try:
        task_id = next(iter(h.sandbox.tables["tasks"].tasks))
        h.elicit_answers.append(ElicitResult(action="accept", content={"confirm": answer}))  # type: ignore[dict-item]
        async with h.client(elicitation=True) as client:
            refused = await client.call_tool("delete_task", {"task_id": task_id})
        assert refused.is_error
        assert task_id in h.sandbox.tables["tasks"].tasks
        h.elicit_answers.append(ElicitResult(action="accept", content={"confirm": True}))
        async with h.client(elicitation=True) as client:
            done = data(await client.call_tool("delete_task", {"task_id": task_id}))
        assert done["status"] == "done" and task_id not in h.sandbox.tables["tasks"].tasks
    finally:
        await h.backend.aclose()
