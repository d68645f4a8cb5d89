"""What a result costs per row, in the o200k tokens the catalogue's goal is stated in (issue 28): names said once
(a row carries its app and owner names; an id several rows share is said once per page), tenant text fenced once
per result, keyed by row position rather than by repeated ids."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from qlik_tasks_mcp.client.schedule import read_schedule
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.tools.ops.tools import FailureGroup, _errors_block
from tests.conftest import Harness, data, row_ids
from tests.test_tokens import tokens

pytestmark = pytest.mark.anyio
ROW_TOKENS_GOAL = 120
OTHER = {"first_error": "Other error"}


async def test_a_list_tasks_row_costs_at_most_120_tokens_and_says_each_id_once(harness: Harness) -> None:
    async with harness.client() as client:
        result = await client.call_tool("list_tasks", {"limit": 20})
    page, text = data(result), result.content[0].text  # type: ignore[union-attr]
    rows = page["tasks"]
    assert len(rows) >= 10
    per_row = tokens(text) / len(rows)
    assert per_row <= ROW_TOKENS_GOAL, f"{per_row:.1f} tokens a row ({len(rows)} rows)"
    # Every id is still there, once: in its row, or in the page's map beside the name its rows carry.
    stored = sandbox_tasks.tables(harness.sandbox).tasks
    for row in row_ids(page):
        task = stored[row["id"]]
        assert (row["owner_id"], row["app_id"]) == (task["metadata"]["ownerId"], task["resourceId"])
    for key in ("app_ids", "owner_ids"):
        for name, ident in page.get(key, {}).items():
            assert text.count(ident) == 1, (key, name)
    assert "names" not in page and "BEGIN UNTRUSTED" not in text
    assert json.loads(text) == page


def test_identical_first_errors_are_one_fenced_line_with_their_count() -> None:
    groups = [
        FailureGroup.model_validate(
            {
                "kind": "reload",
                "task_id": f"t{n}",
                "name": f"task {n}",
                "failures": 1,
                "first_error": "Reload error: gone",
            }
        )
        for n in range(100)
    ]
    groups.append(FailureGroup.model_validate({"kind": "task", "task_id": "x", "name": "x", "failures": 3} | OTHER))
    groups.append(FailureGroup.model_validate({"kind": "task", "task_id": "y", "name": "y", "failures": 1}))
    block = _errors_block(groups)
    assert block is not None and block.count("BEGIN UNTRUSTED") == 1
    lines = block.splitlines()[1:-1]
    assert lines == ["1 (100 failures): Reload error: gone", "2 (3 failures): Other error"]
    assert [g.error for g in groups] == [1] * 100 + [2, None]
    shown = json.dumps([g.model_dump() for g in groups])
    assert "Reload error" not in shown and "t99" in shown


def test_next_runs_worked_out_once_are_reused_only_until_the_first_of_them_passes() -> None:
    daily = read_schedule(recurrence="RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0", zone="UTC", start="2031-01-01T00:00:00")
    assert daily is not None
    at = datetime(2031, 3, 1, 7, tzinfo=UTC)
    assert daily.known_runs(at, 2) is None
    runs = daily.next_runs(at, 2)
    assert [r.day for r in runs] == [2, 3]
    assert daily.known_runs(at + timedelta(hours=22), 2) == runs  # 05:00 on the 2nd: the same two runs
    assert daily.known_runs(runs[0], 2) is None  # the first has passed: worked out again
    assert daily.known_runs(at - timedelta(minutes=1), 2) is None  # earlier than they were worked out for
    assert [r.day for r in daily.next_runs(runs[0], 2)] == [3, 4]


async def test_an_apps_overview_and_its_disable_previews_name_who_stops_getting_fresh_reports(
    harness: Harness,
) -> None:
    h = harness
    finance = next(a.id for a in h.sandbox.apps.values() if a.name == "Finance P&L")
    only = next(t for t in sandbox_tasks.tables(h.sandbox).tasks.values() if t["resourceId"] == finance)
    subscriptions = [
        s for s in sandbox_sharing.tables(h.sandbox).tasks.values() if s.get("appId") == finance and s["enabled"]
    ]
    owners = {h.sandbox.users[s["owner"]].name for s in subscriptions}
    assert subscriptions and owners
    before = copy.deepcopy(h.sandbox.tables)
    async with h.client() as client:
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": finance, "runs": 1}))
        one = data(await client.call_tool("update_task", {"task_id": only["id"], "enabled": False}))
        bulk = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "tasks": [{"kind": "task", "id": only["id"]}]}
            )
        )
        deleting = data(await client.call_tool("delete_tasks", {"tasks": [{"kind": "task", "id": only["id"]}]}))
    assert h.sandbox.tables == before  # previews change nothing
    # The overview: what reloads it and whether that runs, who sends its content, each item with its owner.
    assert f"its content sent by {len(subscriptions)} subscription(s)" in overview["note"]
    assert "Reloaded by " in overview["note"] and "1 of them running" in overview["note"]
    sent = {i["id"]: i for i in overview["items"] if i["kind"] == "sharing"}
    assert {s["id"] for s in subscriptions} <= set(sent)
    assert all(sent[s["id"]]["owner"] == h.sandbox.users[s["owner"]].name for s in subscriptions)
    # The Qalyptus tasks its reload starts send it too, with their Qalyptus owner.
    reports = [i for i in overview["items"] if i["kind"] == "qalyptus"]
    assert reports and all("Qalyptus user" in i["owner"] for i in reports)
    # Every disable or delete preview says the same: the subscriptions left without fresh data, and their owners.
    for preview in (one, bulk, deleting):
        warning = next(n for n in preview["notes"] if "nothing scheduled reloads app" in n)
        assert "Who stops getting fresh reports" in warning
        assert all(f"Qalyptus task {i['id']} " in warning for i in reports)
        for s in subscriptions:
            owner = h.sandbox.users[s["owner"]]
            assert f"subscription {s['id']} " in warning and f"(owner '{owner.name}' (user {owner.id}))" in warning
