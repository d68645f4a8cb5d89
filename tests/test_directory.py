"""The directory toolset, names in previews, and find_orphans, through an MCP client against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from qlik_tasks_mcp.sandbox import items as sandbox_items
from qlik_tasks_mcp.sandbox import qalyptus as sandbox_qalyptus
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.sandbox.core import App, User
from tests.conftest import Harness, data, error_text

pytestmark = pytest.mark.anyio


def app_named(h: Harness, name: str) -> App:
    return next(a for a in h.sandbox.apps.values() if a.name == name)


def gone_users(h: Harness) -> dict[str, User]:
    return {u.id: u for u in h.sandbox.users.values() if u.status in ("disabled", "deleted")}


def requests_to(h: Harness, prefix: str, since: int = 0) -> list[Any]:
    return [x for x in h.recorder.exchanges[since:] if x.path.startswith(prefix)]


async def test_an_app_is_found_by_a_fragment_of_its_name(harness: Harness) -> None:
    sales = app_named(harness, "Sales Dashboard")
    owner = harness.sandbox.users[sales.owner_id]
    space = harness.sandbox.tables["spaces"][sales.space_id]["name"]
    async with harness.client() as client:
        found = data(await client.call_tool("find_apps", {"name": "sALes dash"}))
        in_space = data(await client.call_tool("find_apps", {"name": "a", "space": space.lower()[:4]}))
        nowhere = await client.call_tool("find_apps", {"name": "a", "space": "no such space"})
    assert [(a["id"], a["name"], a["space"], a["owner"]) for a in found["apps"]] == [
        (sales.id, "Sales Dashboard", space, owner.name)
    ]
    assert found["apps"][0]["last_reload"] and found["apps"][0]["owner_id"] == owner.id
    assert in_space["apps"] and all(a["space"] == space for a in in_space["apps"])
    assert "no space named like" in error_text(nowhere)


async def test_a_user_is_found_by_e_mail_with_their_status(harness: Harness) -> None:
    async with harness.client() as client:
        eve = data(await client.call_tool("find_users", {"text": "EVE.exited@"}))
        by_name = data(await client.call_tool("find_users", {"text": "frozen", "status": ["disabled"]}))
        active_only = data(await client.call_tool("find_users", {"text": "frozen", "status": ["active"]}))
        bad = await client.call_tool("find_users", {"text": 'x" or name co "'})
    assert [(u["name"], u["email"], u["status"]) for u in eve["users"]] == [
        ("Eve Exited", "eve.exited@example.com", "deleted")
    ]
    assert [u["status"] for u in by_name["users"]] == ["disabled"] and active_only["users"] == []
    assert "double quotes" in error_text(bad)


async def test_the_bulk_preview_names_apps_and_owners(harness: Harness) -> None:
    app = app_named(harness, "Finance P&L")
    owner = harness.sandbox.users[app.owner_id]
    assert owner.id != harness.sandbox.caller_id
    async with harness.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "app_id": app.id}))
        mine = next(
            t["appId"]
            for t in harness.sandbox.tables["reload_tasks"].values()
            if t["userId"] == harness.sandbox.caller_id and t["state"] == "Enabled"
        )
        own = data(
            await client.call_tool("set_tasks_enabled", {"enabled": False, "app_id": mine, "kinds_filter": ["reload"]})
        )
    assert preview["status"] == "confirmation_required"
    assert all("'Finance P&L'" in line for line in preview["changes"])
    assert any(f"owner '{owner.name}' (user {owner.id})" in line for line in preview["changes"])
    note = next(n for n in preview["notes"] if "owner" in n)
    assert f"now owned by '{owner.name}' (user {owner.id})" in note
    # The caller owns these already: a PUT changes no hands, so nothing is said about it.
    assert own["status"] == "confirmation_required"
    assert not any("owner" in n for n in own["notes"])


def expected_orphans(h: Harness) -> set[tuple[str, str]]:
    gone = gone_users(h)
    deleted_apps = {a.id for a in h.sandbox.apps.values() if a.deleted}
    found = {
        ("reload", t["id"])
        for t in h.sandbox.tables["reload_tasks"].values()
        if t["userId"] in gone or t["appId"] in deleted_apps
    }
    found |= {
        ("task", t["id"])
        for t in sandbox_tasks.tables(h.sandbox).tasks.values()
        if t["metadata"]["ownerId"] in gone or t["resourceId"] in deleted_apps
    }
    # Sharing tasks name their owner; an app no family but sharing names is gone all the same.
    gone_apps = deleted_apps | (sharing_apps(h) - set(h.sandbox.apps))
    found |= {
        ("sharing", i)
        for i, t in sandbox_sharing.tables(h.sandbox).tasks.items()
        if t["owner"] in gone or t["appId"] in gone_apps
    }
    # Qalyptus tasks whose owner is no longer a user of their organization.
    found |= {
        ("qalyptus", task_id)
        for org in sandbox_qalyptus.tables(h.sandbox).orgs.values()
        for task_id, t in org.tasks.items()
        if t["owner"] not in {u["id"] for u in org.users}
    }
    return found


def sharing_apps(h: Harness) -> set[str]:
    return {t["appId"] for t in sandbox_sharing.tables(h.sandbox).tasks.values()}


async def test_find_orphans_finds_the_seeded_orphans_with_their_fix(harness: Harness) -> None:
    gone = gone_users(harness)
    deleted = next(a for a in harness.sandbox.apps.values() if a.deleted)
    assert deleted.id not in {i["resourceId"] for i in sandbox_items.table(harness.sandbox).values()}
    async with harness.client() as client:
        report = data(await client.call_tool("find_orphans", {}))
    found = {(o["kind"], o["id"]): o for o in report["orphans"]}
    expected = expected_orphans(harness)
    assert {k for k, _ in expected} >= {"reload", "task", "sharing", "qalyptus"}
    assert set(found) == expected
    long_gone = sharing_apps(harness) - set(harness.sandbox.apps)
    for orphan in found.values():
        if "app no longer exists" in orphan["problem"]:
            assert orphan["fix"].startswith("delete it")
            assert any(a in orphan["app"] for a in {deleted.id} | long_gone)
        elif orphan["kind"] == "qalyptus":
            assert any(u.id in orphan["owner"] and u.name in orphan["owner"] for u in gone.values())
            assert "no longer a user of Qalyptus organization" in orphan["owner"] and "Qalyptus" in orphan["fix"]
        else:
            assert any(u.id in orphan["owner"] and u.status in orphan["owner"] for u in gone.values())
            assert "new owner" in orphan["fix"]
    assert report["checked"]["apps"] == len(set(harness.sandbox.apps) | sharing_apps(harness))


async def test_name_lookups_cost_one_request_per_page_and_kind(harness: Harness) -> None:
    async with harness.client() as client:
        start = len(harness.recorder.exchanges)
        page = data(await client.call_tool("find_apps", {"name": "e", "limit": 100}))
        assert len(page["apps"]) >= 8 and len({a["owner"] for a in page["apps"]}) >= 4
        assert len(requests_to(harness, "/api/v1/items", start)) == 1
        assert len(requests_to(harness, "/api/v1/users/actions/filter", start)) == 1
        assert len(requests_to(harness, "/api/v1/spaces", start)) == 1
        # Within the cache's time, the same names cost nothing more.
        again = len(harness.recorder.exchanges)
        await client.call_tool("find_apps", {"name": "e", "limit": 100})
        assert len(requests_to(harness, "/api/v1/users", again)) == 0
        assert len(requests_to(harness, "/api/v1/spaces", again)) == 0
        # A preview of many tasks: one users lookup and one apps lookup for all of them, and users/me once.
        refs = [{"kind": "reload", "id": t["id"]} for t in harness.sandbox.tables["reload_tasks"].values()]
        before = len(harness.recorder.exchanges)
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
    assert preview["status"] == "confirmation_required"
    assert len(requests_to(harness, "/api/v1/items", before)) <= 1
    assert len(requests_to(harness, "/api/v1/users/actions/filter", before)) <= 1
    me = requests_to(harness, "/api/v1/users/me", before)
    assert [x.status for x in me] == [301]
