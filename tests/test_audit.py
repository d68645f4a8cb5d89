"""The audit log through real MCP sessions: every outcome of a writing tool leaves exactly one line, the unexpected
failures and the abandoned calls too, and no argument or tenant text can split a line (issue 15)."""

from __future__ import annotations

import errno
import io
import json
import logging
from typing import Any

import anyio
import pytest
from mcp.types import ElicitResult

from qlik_tasks_mcp.client.reload_tasks import ReloadTasksApi
from tests.conftest import Harness, data, error_text
from tests.test_faults import fast_retries
from tests.tool_samples import sample_args

pytestmark = pytest.mark.anyio
SEPARATORS = "\u2028x\u2029y\u0085z\n\r"


def enabled_reload_task(h: Harness) -> str:
    return next(t["id"] for t in h.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")


def one_ascii_line_per_call(h: Harness, calls: int) -> list[dict[str, Any]]:
    raw = h.audit.getvalue()
    assert raw.isascii(), "an audit line holds a non-ASCII character"
    assert raw.count("\n") == calls and len(raw.splitlines()) == calls, raw
    return h.audit_lines()


async def test_an_unexpected_exception_in_a_writing_tool_leaves_a_failed_line(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: ReloadTasksApi, body: dict[str, Any]) -> Any:
        raise RuntimeError("backend bug: \u2028 not a ClientError")

    monkeypatch.setattr(ReloadTasksApi, "create", broken)
    args = await sample_args(harness, "create_reload_task")
    async with harness.client() as client:
        result = await client.call_tool("create_reload_task", args)
    assert result.is_error
    (line,) = one_ascii_line_per_call(harness, 1)
    assert line["tool"] == "create_reload_task" and line["outcome"] == "failed"
    assert line["detail"].startswith("RuntimeError: backend bug") and line["args"]["app_id"] == args["app_id"]


async def test_an_abandoned_writing_call_leaves_a_cancelled_line(harness: Harness) -> None:
    faults = harness.sandbox.faults
    faults.slow, faults.slow_seconds, faults.match_method = 1, 5.0, "POST"
    args = await sample_args(harness, "create_reload_task")
    async with harness.client() as client:
        with anyio.move_on_after(0.5) as waiting:
            await client.call_tool("create_reload_task", args)
        assert waiting.cancelled_caught
        # The client's notifications/cancelled reaches the server's handler; give it a moment to unwind.
        for _ in range(100):
            if harness.audit.getvalue():
                break
            await anyio.sleep(0.05)
    (line,) = one_ascii_line_per_call(harness, 1)
    assert line["tool"] == "create_reload_task" and line["outcome"] == "cancelled"


async def test_every_outcome_leaves_one_ascii_line_even_with_line_separators_in_arguments(harness: Harness) -> None:
    fast_retries(harness)
    task_id = enabled_reload_task(harness)
    create = await sample_args(harness, "create_reload_task")
    faults = harness.sandbox.faults
    harness.elicit_answers.append(ElicitResult(action="decline"))
    async with harness.client() as client:
        done = data(await client.call_tool("create_reload_task", create))
        preview = data(await client.call_tool("delete_reload_task", {"task_id": task_id}))
        forged = await client.call_tool("delete_reload_task", {"task_id": task_id, "confirm_token": "v1.1.x.forged"})
        faults.status_503, faults.match_method = 5, "POST"
        failed_send = await client.call_tool("create_reload_task", create)
        faults.status_503 = 0
        hostile = await client.call_tool("delete_reload_task", {"task_id": f"id{SEPARATORS}"})
    async with harness.client(elicitation=True) as asking:
        declined = data(await asking.call_tool("delete_reload_task", {"task_id": task_id}))
    assert done["task"]["id"] and preview["status"] == "confirmation_required" and declined["status"] == "cancelled"
    assert "confirm_token" in error_text(forged) and "HTTP 503" in error_text(failed_send) and hostile.is_error
    lines = one_ascii_line_per_call(harness, 6)
    outcomes = [(line["tool"], line["outcome"]) for line in lines]
    assert outcomes[:4] == [
        ("create_reload_task", "done"),
        ("delete_reload_task", "confirmation_required"),
        ("delete_reload_task", "refused"),
        ("create_reload_task", "error"),
    ]
    assert outcomes[5] == ("delete_reload_task", "cancelled")
    # The hostile id is kept whole in its line, escaped, whatever its outcome.
    assert lines[4]["args"]["task_id"] == f"id{SEPARATORS}" and lines[4]["outcome"] in ("error", "refused")
    # A confirm token is never written, only that one was given: the audit says what was asked, not the key to act.
    assert lines[2]["args"]["confirm_token"] == "<given>" and "forged" not in harness.audit.getvalue()
    assert preview["confirm_token"] not in json.dumps(lines)


class FullDisk(io.StringIO):
    """An audit file on a disk that filled up after the start."""

    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_an_audit_write_that_fails_after_the_action_never_turns_it_into_an_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.backend.audit.redirect(FullDisk())
    args = await sample_args(harness, "create_reload_task")
    before = set(harness.sandbox.tables["reload_tasks"])
    with caplog.at_level(logging.WARNING, logger="qlik_tasks_mcp.audit"):
        async with harness.client() as client:
            result = await client.call_tool("create_reload_task", args)
    assert not result.is_error, error_text(result)
    created = data(result)["task"]["id"]
    assert set(harness.sandbox.tables["reload_tasks"]) - before == {created}
    # The line is not lost: the warning carries it, on stderr.
    (warning,) = [r for r in caplog.records if r.name == "qlik_tasks_mcp.audit"]
    assert warning.levelno == logging.WARNING and "No space left on device" in warning.getMessage()
    line = json.loads(warning.getMessage().split(": ", 1)[1])
    assert line["tool"] == "create_reload_task" and line["outcome"] == "done"
