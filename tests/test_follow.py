"""The run follower (tools/follow.py) through start_task: what happens after the start succeeded.

Once a task has started, nothing may suggest starting it again, and ending the wait never ends the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from qlik_tasks_mcp.sandbox.tasks import TaskTables
from qlik_tasks_mcp.tools import follow
from tests.conftest import Harness, data, make_harness
from tests.fake_clock import follow_on_sandbox_time

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = make_harness(toolsets="tasks")
    tables(harness).run_seconds = 0.3
    yield harness
    await harness.backend.aclose()


def tables(h: Harness) -> TaskTables:
    return h.sandbox.tables["tasks"]


def task_of(h: Harness, app_name: str) -> str:
    app_id = next(a.id for a in h.sandbox.apps.values() if a.name == app_name)
    return next(t["id"] for t in tables(h).tasks.values() if t["resourceId"] == app_id)


def starts(h: Harness) -> int:
    return sum(1 for method, path in h.sandbox.faults.arrived if method == "POST" and path.endswith("/actions/start"))


async def test_a_read_error_after_the_start_is_a_note_never_a_reason_to_start_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = follow_on_sandbox_time(h.sandbox, monkeypatch)
    task_id = task_of(h, "Customer Churn")
    # The run ends FAILED; reading its log then breaks, after the task has started.
    h.sandbox.faults.match_path = "/log"
    h.sandbox.faults.hostile("malformed_json")
    async with h.client() as client:
        args = {"task_id": task_id, "wait": True, "timeout_seconds": 10}
        result = data(await client.call_tool("start_task", args))
    assert result["started"] is True and result["run"]["status"] == "FAILED"
    assert result["wait_ended"] == "finished" and "log_tail" not in result
    assert "Do not start it again" in result["note"] and "get_last_task_run" in result["note"]
    assert "not valid JSON" in result["note"]
    assert starts(h) == 1
    # Followed on the sandbox's time: one poll of 0.5 s saw the 0.3 s run end.
    assert clock.slept == [follow.POLL_FIRST] and result["waited_seconds"] == follow.POLL_FIRST


async def test_a_cancelled_wait_leaves_the_run_running(h: Harness) -> None:
    # Real time here: the client gives up after 0.5 s, at whatever point of the follow that falls (the run takes 30 s
    # of the sandbox's time, so it is running whenever that is).
    tables(h).run_seconds = 30
    task_id = task_of(h, "Finance P&L")
    async with h.client() as client:
        with anyio.move_on_after(0.5) as waiting:
            await client.call_tool("start_task", {"task_id": task_id, "wait": True, "timeout_seconds": 30})
        assert waiting.cancelled_caught
        last = data(await client.call_tool("get_last_task_run", {"task_id": task_id}))["run"]
    assert last["status"] == "RUNNING" and last["triggered_by"] == "manual"
    assert starts(h) == 1
