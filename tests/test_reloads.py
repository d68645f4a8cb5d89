"""The reloads toolset through an MCP client against the sandbox: start and follow, logs, scripts, cancel, listings."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from qlik_tasks_mcp.sandbox import app_scripts
from qlik_tasks_mcp.sandbox.reloads import ReloadTables, status_at, tables
from tests.conftest import Harness, data, error_text, make_harness
from tests.fake_clock import follow_on_sandbox_time

pytestmark = pytest.mark.anyio
# A numbered script log line: `<time> <script line> <text>`.
NUMBERED = re.compile(r"\d{8}T[\d.]+\+0000 (\d{4}) ")


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = make_harness()
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)


def store(h: Harness) -> ReloadTables:
    return tables(h.sandbox)


def app_with(h: Harness, defect: str | None) -> str:
    return next(a for a in h.sandbox.apps if store(h).defects.get(a) == defect)


def sent(h: Harness, method: str, suffix: str) -> int:
    return sum(1 for x in h.recorder.exchanges if x.method == method and x.path.endswith(suffix))


def fences(result: dict[str, Any]) -> int:
    return json.dumps(result).count("BEGIN UNTRUSTED")


async def test_reload_app_waits_with_progress_until_it_succeeds(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    follow_on_sandbox_time(h.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    app_id = app_with(h, None)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with h.client() as client:
        args = {"app_id": app_id, "wait": True, "timeout_seconds": 30, "variables": {"vRegion": "EMEA"}}
        result = data(await client.call_tool("reload_app", args, progress_callback=on_progress))
    assert result["started"] is True and result["wait_ended"] == "finished"
    reload = result["reload"]
    assert reload["status"] == "SUCCEEDED" and reload["app_id"] == app_id and reload["started_by"] == "the API"
    assert reload["seconds"] > 0 and "log_tail" not in result
    assert len(seen) >= 3 and all(later[0] > earlier[0] for earlier, later in pairwise(seen))
    assert all(total == 30 for _, total, _ in seen)
    assert any("RELOADING" in (m or "") for _, _, m in seen) and "SUCCEEDED" in (seen[-1][2] or "")
    posted = [x for x in h.recorder.exchanges if x.method == "POST" and x.path == "/api/v1/reloads"]
    assert len(posted) == 1 and posted[0].request_body["variables"] == {"vRegion": "EMEA"}


async def test_a_failed_reload_returns_its_error_lines_then_tail_grep_and_the_script_line(h: Harness) -> None:
    app_id = app_with(h, "field")
    async with h.client() as client:
        result = data(await client.call_tool("reload_app", {"app_id": app_id, "wait": True, "timeout_seconds": 30}))
        reload = result["reload"]
        assert reload["status"] == "FAILED" and reload["error_code"] == "EngineScriptError"
        tail = result["log_tail"]
        assert "Field 'CustomerKey' not found" in tail and tail.rstrip().endswith("END UNTRUSTED reload log ========")
        assert "Execution Failed" in tail and fences(result) == 1

        args = {"reload_id": reload["id"], "lines": 4}
        log = data(await client.call_tool("get_reload_log", args))
        total = log["total_lines"]
        assert log["returned"].startswith(f"lines {total - 3}-{total} of {total}") and log["app_id"] == app_id
        assert "Execution finished." in log["log"]

        found = data(await client.call_tool("get_reload_log", args | {"grep": r"not found|\d{4} +CustomerKey"}))
        assert found["matches"] == 2 and "Field 'CustomerKey' not found" in found["log"]
        numbers = [int(m) for m in NUMBERED.findall(found["log"])]
        assert len(numbers) == 1  # the script line the log printed, numbered as in the script

        script = data(await client.call_tool("get_app_script", {"app_id": app_id, "line": numbers[0], "context": 2}))
    assert script["returned"] == f"lines {numbers[0] - 2}-{numbers[0] + 2} of {script['total_lines']}"
    assert f"{numbers[0]}:     CustomerKey," in script["script"] and fences(script) == 1


async def test_a_syntax_error_is_found_by_check_app_script_and_the_fix_passes(h: Harness) -> None:
    app_id = app_with(h, "syntax")
    failed = next(r for r in store(h).reloads.values() if r["appId"] == app_id and r["_outcome"] == "FAILED")
    current = app_scripts.broken_script(h.sandbox, app_id, "syntax")
    fixed = current.replace("delimiter is ',')\n", "delimiter is ',');\n")
    async with h.client() as client:
        detail = data(await client.call_tool("get_reload", {"reload_id": failed["id"]}))
        assert "Unexpected token: 'STORE'" in detail["text"] and fences(detail) == 1
        log = data(await client.call_tool("get_reload_log", {"reload_id": failed["id"], "grep": ">>>>>>STORE<<<<<<"}))
        assert log["matches"] == 1
        store_line = data(
            await client.call_tool("get_reload_log", {"reload_id": failed["id"], "grep": " STORE Orders"})
        )
        line = int(NUMBERED.findall(store_line["log"])[0])
        around = data(await client.call_tool("get_app_script", {"app_id": app_id, "line": line, "context": 2}))
        assert f"{line - 2}: (txt, utf8, embedded labels, delimiter is ',')\n" in around["script"]
        assert f"\n{line}: STORE Orders INTO" in around["script"]

        broken = data(await client.call_tool("check_app_script", {"script": current}))
        assert broken["valid"] is False and len(broken["errors"]) == 1
        error = broken["errors"][0]
        assert error["line"] == line and error["text"].startswith("STORE Orders") and error["tab"] == 2
        assert error["message"] == "Unexpected token: 'STORE'"
        ok = data(await client.call_tool("check_app_script", {"script": fixed}))
        assert ok == {"valid": True, "errors": []}
        unterminated = data(await client.call_tool("check_app_script", {"script": "LET v = 'open;\nLAOD x;"}))
        assert [e["message"] for e in unterminated["errors"]] == ["Unterminated string: missing closing '"]
    assert sent(h, "POST", "/validatescript") == 3 and sent(h, "POST", "/scripts") == 0


async def test_cancel_reload_is_gated_and_refused_once_ended(h: Harness) -> None:
    store(h).run_seconds = 600
    app_id = app_with(h, None)
    async with h.client() as client:
        started = data(await client.call_tool("reload_app", {"app_id": app_id}))
        reload_id = started["reload"]["id"]
        before = h.sandbox.digest()
        preview = data(await client.call_tool("cancel_reload", {"reload_id": reload_id}))
        assert preview["status"] == "confirmation_required" and "CANCELED" in preview["changes"][0]
        assert h.sandbox.digest() == before and sent(h, "POST", "/actions/cancel") == 0
        args = {"reload_id": reload_id, "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("cancel_reload", args))
        assert done["status"] == "done" and done["result"]["status"] in ("canceled", "canceling")
        now = h.sandbox.clock.now() + timedelta(seconds=1)
        assert status_at(store(h).reloads[reload_id], now) == "CANCELED"
        h.sandbox.clock.advance(timedelta(seconds=1))
        again = await client.call_tool("cancel_reload", {"reload_id": reload_id})
        assert "already ended (CANCELED)" in error_text(again)
        ended = next(r["id"] for r in store(h).reloads.values() if r["_outcome"] == "SUCCEEDED")
        assert "nothing to cancel" in error_text(await client.call_tool("cancel_reload", {"reload_id": ended}))
    assert sent(h, "POST", "/actions/cancel") == 1


async def test_a_reload_already_queued_is_shown_not_retried(h: Harness) -> None:
    store(h).run_seconds = 600
    app_id = app_with(h, None)
    async with h.client() as client:
        first = data(await client.call_tool("reload_app", {"app_id": app_id}))
        second = data(await client.call_tool("reload_app", {"app_id": app_id, "wait": True}))
    assert second["started"] is False and "already queued" in second["note"] and "not a rate limit" in second["note"]
    assert second["reload"]["id"] == first["reload"]["id"] and second["reload"]["status"] in ("QUEUED", "RELOADING")
    posts = [x.status for x in h.recorder.exchanges if x.method == "POST" and x.path == "/api/v1/reloads"]
    assert posts == [201, 429]
    assert h.backend.qlik.throttled == 0  # the 429 paced nothing


async def test_list_reloads_by_status_window_tenant_wide_and_per_app(h: Harness) -> None:
    failing = app_with(h, "file")
    now = h.sandbox.clock.now()
    seeded_failed = [r for r in store(h).reloads.values() if r["_outcome"] == "FAILED"]
    async with h.client() as client:
        tenant = data(await client.call_tool("list_reloads", {"status": ["FAILED"], "limit": 100}))
        rows = tenant["reloads"]
        assert len(rows) == len(seeded_failed) and {r["status"] for r in rows} == {"FAILED"}
        assert len({r["app_id"] for r in rows}) == 3 and fences(tenant) == 1
        assert all(r["id"] in tenant["errors"] for r in rows)
        stamps = [r["created_at"] for r in rows]
        assert stamps == sorted(stamps, reverse=True)

        day = data(await client.call_tool("list_reloads", {"hours": 24, "limit": 100}))
        since = now - timedelta(hours=24)
        in_day = [r for r in store(h).reloads.values() if r["_created"] >= since]
        assert len(day["reloads"]) == len(in_day) > 0
        assert all(datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) >= since for r in day["reloads"])

        one_app = data(await client.call_tool("list_reloads", {"app_id": failing, "status": ["FAILED", "SUCCEEDED"]}))
        assert {r["app_id"] for r in one_app["reloads"]} == {failing}
        assert {r["status"] for r in one_app["reloads"]} == {"FAILED", "SUCCEEDED"}
        by_task = data(await client.call_tool("list_reloads", {"type": ["chronos"], "limit": 100}))
        assert by_task["reloads"] and all(r["started_by"].startswith("a reload task (") for r in by_task["reloads"])

        page = data(await client.call_tool("list_reloads", {"app_id": failing, "limit": 2}))
        more = data(await client.call_tool("list_reloads", {"cursor": page["next_cursor"]}))
        assert len(page["reloads"]) == 2 and not {r["id"] for r in page["reloads"]} & {r["id"] for r in more["reloads"]}

        h.sandbox.caller().admin = False
        refused = error_text(await client.call_tool("list_reloads", {}))
        assert "HTTP 403" in refused and "give app_id" in refused
        # The reloads listed to a key are those it has access to: none of an app outside its spaces.
        assert not data(await client.call_tool("list_reloads", {"app_id": failing}))["reloads"]
        h.sandbox.member_spaces = {h.sandbox.apps[failing].space_id}
        assert data(await client.call_tool("list_reloads", {"app_id": failing}))["reloads"]
    filters = [x.query for x in h.recorder.exchanges if x.path == "/api/v1/reloads" and "filter" in x.query]
    assert any("status+eq+%22FAILED%22+or+status+eq+%22SUCCEEDED%22" in q for q in filters)
    assert datetime.now(UTC) - now < timedelta(minutes=5)


async def test_get_reload_shows_metadata_for_the_last_ten_only(h: Harness) -> None:
    app_id = app_with(h, None)
    ours = sorted((r for r in store(h).reloads.values() if r["appId"] == app_id), key=lambda r: r["_created"])
    async with h.client() as client:
        newest = data(await client.call_tool("get_reload", {"reload_id": ours[-1]["id"]}))
        assert newest["status"] == "SUCCEEDED" and newest["metadata"]["success"] is True
        slowest = newest["metadata"]["slowest"]
        assert slowest and [s["n"] for s in slowest] == list(range(1, len(slowest) + 1))
        assert "statement 1: " in newest["text"] and fences(newest) == 1
        for _ in range(10):  # ten more reloads push the oldest seeded ones out of the metadata Qlik keeps
            store(h).run_seconds = 0.01
            data(await client.call_tool("reload_app", {"app_id": app_id, "wait": True, "timeout_seconds": 10}))
        old = data(await client.call_tool("get_reload", {"reload_id": ours[-1]["id"]}))
    assert "metadata" not in old and "last 10 reloads" in old["note"]
