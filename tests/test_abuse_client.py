"""A hostile tenant against the client, through real MCP sessions: echoed keys, redirects, dropped deletes,
day-long Retry-After, huge pages, and audit lines that a tenant or an argument cannot split (issue 15)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.qalyptus_seed import EU_KEY
from tests.conftest import Harness, data, error_text
from tests.fake_clock import fake_clock
from tests.test_faults import catalogue, fast_retries
from tests.tool_samples import sample_args

pytestmark = pytest.mark.anyio
TENANT_HOST = SANDBOX_URL.split("//")[1]
KEYS = (SANDBOX_API_KEY, EU_KEY)


def key_fragments(text: str, size: int = 12) -> list[str]:
    """Every run of `size` characters of a key that the text still holds (shorter runs are words: "qalyptus")."""
    return [key[i : i + size] for key in KEYS for i in range(len(key) - size + 1) if key[i : i + size] in text]


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def enabled_reload_task(h: Harness) -> str:
    return next(t["id"] for t in h.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")


async def confirmed_delete(h: Harness, task_id: str) -> Any:
    """delete_reload_task with its yes: the preview's token, then the call that acts."""
    async with h.client() as client:
        preview = data(await client.call_tool("delete_reload_task", {"task_id": task_id}))
        return await client.call_tool(
            "delete_reload_task", {"task_id": task_id, "confirm_token": preview["confirm_token"]}
        )


async def test_a_tenant_echoing_the_key_everywhere_never_gets_it_into_any_tool_output(harness: Harness) -> None:
    fast_retries(harness)
    harness.sandbox.faults.hostile("echo_key")
    outputs: list[str] = []
    async with harness.client() as client:
        for tool in await catalogue(harness):
            result = await client.call_tool(tool.name, await sample_args(harness, tool.name))
            outputs.append(json.dumps(result.model_dump(mode="json")))
    blob = "".join(outputs) + harness.audit.getvalue()
    # The tenant did echo: its error code arrives, with the key masked.
    assert "AUTH-***" in blob
    assert key_fragments(blob) == []


async def test_a_get_redirected_on_the_tenant_is_followed(harness: Harness) -> None:
    faults = harness.sandbox.faults
    faults.redirect, faults.redirect_status, faults.match_method = 1, 301, "GET"
    task_id = enabled_reload_task(harness)
    async with harness.client() as client:
        got = data(await client.call_tool("get_reload_task", {"task_id": task_id}))
    assert task_id in json.dumps(got)
    # The task read twice (the redirect, then its target); get_reload_task also reads the app's tasks.
    reload_reads = [a for a in faults.arrived if a[1].startswith("/api/v1/reload-tasks")]
    assert reload_reads == [("GET", f"/api/v1/reload-tasks/{task_id}")] * 2


async def test_a_get_redirected_to_another_host_is_a_clear_error(harness: Harness) -> None:
    faults = harness.sandbox.faults
    faults.redirect, faults.redirect_location = 1, "https://collector.example.net/api/v1/reload-tasks"
    async with harness.client() as client:
        result = await client.call_tool("list_reload_tasks", {"limit": 2})
    assert "redirected to https://collector.example.net" in error_text(result)
    assert "not the configured tenant" in error_text(result)
    assert {x.host for x in harness.recorder.exchanges} == {TENANT_HOST}


async def test_a_delete_answered_with_a_redirect_is_not_reported_done(harness: Harness) -> None:
    faults = harness.sandbox.faults
    task_id = enabled_reload_task(harness)
    faults.redirect, faults.match_method = 1, "DELETE"
    result = await confirmed_delete(harness, task_id)
    text = error_text(result)
    assert "HTTP 302" in text and "not done or not confirmed" in text and "check the item's state" in text
    assert task_id in harness.sandbox.tables["reload_tasks"]
    assert [m for m, _ in faults.arrived].count("DELETE") == 1
    assert harness.audit_lines()[-1]["outcome"] == "error"


async def test_a_delete_that_acted_before_its_connection_dropped_says_probably_deleted(harness: Harness) -> None:
    fast_retries(harness)
    faults = harness.sandbox.faults
    task_id = enabled_reload_task(harness)
    faults.drop_after_action, faults.match_method = 1, "DELETE"
    text = error_text(await confirmed_delete(harness, task_id))
    assert "probably deleted" in text and f"GET /api/v1/reload-tasks/{task_id}" in text
    assert task_id not in harness.sandbox.tables["reload_tasks"]


async def test_a_day_long_retry_after_fails_fast_and_pauses_no_later_call(harness: Harness) -> None:
    clock = fake_clock(harness.backend.qlik)
    faults = harness.sandbox.faults
    faults.status_429, faults.retry_after = 1, 86400
    async with harness.client() as client:
        first = await client.call_tool("list_reload_tasks", {"limit": 2})
        sent = len(faults.arrived)
        later = await client.call_tool("get_reload_task", {"task_id": enabled_reload_task(harness)})
    assert "asked to wait 86400 s, read as at most 300 s" in error_text(first)
    assert "retry after 30 s (at 20" in error_text(first)
    # The tier's later call is not sent and does not sleep for a day: it says when the next trial goes.
    assert "Rate limited" in error_text(later) and re.search(r"Retry after (30|29) s", error_text(later))
    assert len(faults.arrived) == sent
    assert harness.backend.qlik.limiter.waited_seconds == 0 and not any(clock.slept), clock.slept


async def test_a_503_storm_asking_for_a_day_ends_at_once(harness: Harness) -> None:
    clock = fake_clock(harness.backend.qlik)
    faults = harness.sandbox.faults
    faults.status_503, faults.retry_after_503 = 50, 86400
    async with harness.client() as client:
        result = await client.call_tool("list_reload_tasks", {"limit": 2})
    assert "HTTP 503" in error_text(result) and "wait 86400 s; retry after 20" in error_text(result)
    assert len(faults.arrived) == 1 and not any(clock.slept), clock.slept


async def test_a_page_far_past_its_limit_is_cut_to_the_limit(harness: Harness) -> None:
    faults = harness.sandbox.faults
    faults.huge_page, faults.huge_page_rows = 1, 3000
    async with harness.client() as client:
        page = data(await client.call_tool("list_reload_tasks", {"limit": 5}))
    assert len(page["tasks"]) == 5
    assert "Cut: the tenant sent 3000 rows for a page of 5" in page["note"]


async def test_a_hundred_thousand_row_page_is_refused_by_its_size(harness: Harness) -> None:
    harness.sandbox.faults.huge_page = 1
    async with harness.client() as client:
        result = await client.call_tool("list_reload_tasks", {"limit": 5})
    assert "larger than this server reads (8 MiB)" in error_text(result)


async def test_an_argument_with_line_separators_stays_on_one_ascii_audit_line(harness: Harness) -> None:
    hostile = "a\u2028b\u2029c\nd\re\u0085f"
    async with harness.client() as client:
        result = await client.call_tool("delete_reload_task", {"task_id": hostile})
    assert result.is_error
    raw = harness.audit.getvalue()
    assert raw.isascii() and raw.count("\n") == 1 and len(raw.splitlines()) == 1
    (line,) = harness.audit_lines()
    assert line["args"]["task_id"] == hostile and line["tool"] == "delete_reload_task"
