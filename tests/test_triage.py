"""Failure triage at scale (issue 17): find_failures on a 2,000-app tenant finds every seeded failure within its
budget, counts every failed run, and pacing never stalls a later call beyond its own bound."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qlik_tasks_mcp.client.http import RetryPolicy
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.sandbox import large
from qlik_tasks_mcp.sandbox import reloads as sandbox_reloads
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.tools.ops import tools as ops_module
from tests.conftest import Harness, data, error_text, fenced_once, first_error, make_harness
from tests.fake_clock import fake_clock

pytestmark = pytest.mark.anyio
APPS = 2000


@pytest.fixture
async def tenant() -> AsyncIterator[Harness]:
    # Work, not wall-clock time: this thread's CPU time, which a busy machine does not stretch.
    began = time.thread_time()
    h = make_harness(sandbox_options={"app_count": APPS})
    assert time.thread_time() - began < 3, "the size switch must seed fast"
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


def by_kind(report: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {g["task_id"]: g for g in report["groups"] if g["kind"] == kind}


async def test_find_failures_finds_every_seeded_failure_within_its_budget(tenant: Harness) -> None:
    seeded = large.seeded(tenant.sandbox)
    assert len(seeded.task_runs) == APPS // 50 and len(seeded.sharing) >= 10
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with tenant.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24}, progress_callback=on_progress))
    tasks, sharing = by_kind(report, "task"), by_kind(report, "sharing")
    # Every failed run counts: each seeded task failed on each of its runs of the day.
    assert {t: g["failures"] for t, g in tasks.items() if t in seeded.task_runs} == seeded.task_runs
    assert set(seeded.sharing) <= set(sharing)
    for group in tasks.values():
        assert group["app_id"] and group["ref"] and fenced_once(report, group)
        assert "Reload error: " in first_error(report, group)
    # Tenant-wide queries, not a scan app by app: a few pages of failed reloads and failing tasks.
    exchanges = tenant.recorder.exchanges
    assert len(exchanges) <= ops_module.SCAN_REQUESTS
    per_path = Counter(x.path for x in exchanges)
    assert per_path["/api/v1/reloads"] <= 2 and per_path["/api/scheduling/tasks"] <= 3
    assert not [x for x in exchanges if "/resources/" in x.path], "no per-app run listing"
    # Each kind within its own share, and the result says what each spent.
    for kind, spent in report["requests"].items():
        used, given = map(int, spent.split("/"))
        assert used <= given, kind
    assert report["checked"]["failed reloads"] >= sum(seeded.task_runs.values())
    assert any(m.startswith("reading task failures") for m in messages)


async def test_a_failed_task_run_is_a_failed_reload_naming_its_task(tenant: Harness) -> None:
    seeded = large.seeded(tenant.sandbox)
    task_id = next(iter(seeded.task_runs))
    async with tenant.client() as client:
        runs = data(await client.call_tool("list_task_runs", {"task_id": task_id, "limit": 5}))["runs"]
        app_id = tenant.sandbox.tables["tasks"].tasks[task_id]["resourceId"]
        reloads = data(await client.call_tool("list_reloads", {"app_id": app_id, "status": ["FAILED"]}))["reloads"]
    assert runs and all(r["status"] == "FAILED" for r in runs)
    stored = sandbox_reloads.tables(tenant.sandbox).reloads
    workers = {tenant.sandbox.tables["tasks"].runs[r["id"]]["workerId"] for r in runs}
    assert workers <= {r["id"] for r in reloads}
    for worker in workers:
        assert stored[worker]["type"] == "choreographer" and stored[worker]["resourceType"] == "tasks"
        assert stored[worker]["resourceId"] == task_id


async def test_a_non_admin_falls_back_to_reloads_app_by_app(tenant: Harness) -> None:
    seeded = large.seeded(tenant.sandbox)
    failing_task = next(iter(seeded.task_runs))
    app_id = tenant.sandbox.tables["tasks"].tasks[failing_task]["resourceId"]
    not_admin = next(u for u in tenant.sandbox.users.values() if not u.admin and u.status == "active")
    tenant.sandbox.caller_id = not_admin.id
    async with tenant.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24, "app_ids": [app_id]}))
    assert report["checked"]["reload apps"] == 1
    assert by_kind(report, "task")[failing_task]["failures"] == seeded.task_runs[failing_task]
    assert "app by app" in report["note"]


async def test_no_later_call_is_stalled_by_pacing_beyond_its_bound(tenant: Harness) -> None:
    """A scan that spends tier 1 returns what it has and says when to retry; the next call of the tier fails
    fast saying when to retry, rather than waiting for the window in the pacer."""
    qlik = tenant.backend.qlik
    clock = fake_clock(qlik, {tier: 5 if tier is Tier.T1 else tier.per_minute for tier in Tier})
    qlik.retry = RetryPolicy(max_wait=2, call_budget=10)
    async with tenant.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24}))
        assert report["stopped_early"] is True
        assert any("Retry after" in what for what in report["not_checked"]), report["not_checked"]
        waited = len(clock.slept)
        result = await client.call_tool("list_reloads", {"limit": 5})
    assert not any(clock.slept[waited:]), clock.slept[waited:]
    text = error_text(result)
    assert "Retry after" in text and "rate tier 1" in text


async def test_sharing_executions_are_read_only_for_tasks_whose_listing_shows_a_failure(tenant: Harness) -> None:
    seeded = large.seeded(tenant.sandbox)
    listed = len(sandbox_sharing.tables(tenant.sandbox).tasks)
    async with tenant.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24, "kinds": ["sharing"]}))
        shown = [data(await client.call_tool("get_sharing_task", {"task_id": t}))["task"] for t in seeded.sharing]
    # Half the seeded failures reached no recipient (a failed run), half failed for one recipient only.
    assert {bool(t.get("failed_executions_in_a_row")) for t in shown} == {True, False}
    assert all(any(r.get("errors") for r in t["recipients"]) for t in shown)
    assert set(seeded.sharing) <= set(by_kind(report, "sharing")) and report["stopped_early"] is False
    sharing_get = [x for x in tenant.recorder.exchanges if x.path.startswith("/api/v1/sharing-tasks")]
    pages = -(-listed // 100)
    executions = [x for x in sharing_get if x.path.endswith("/executions")]
    # The seeded failures and the usual seed's few troubled tasks, not every task that ran in the window.
    assert len(executions) == report["checked"]["sharing tasks read"] <= len(seeded.sharing) + 5
    assert len(sharing_get) - len(shown) == pages + len(executions)
    assert report["checked"]["sharing"] == listed
