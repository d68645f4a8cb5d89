"""The sandbox's profiles at the HTTP level: the same tenant answering a TenantAdmin's key, a space member's key
(users filter 403, items, spaces and task lists of the key's spaces, personal items and own tasks, no tenant-wide
reloads) and a key on a
tenant that retired /api/v1/reload-tasks; items read `name` as a whole name and `query` as a fragment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from qlik_tasks_mcp.sandbox import build_sandbox
from qlik_tasks_mcp.sandbox import reload_tasks as sandbox_reload_tasks
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL, Sandbox
from qlik_tasks_mcp.sandbox.transport import SandboxTransport

pytestmark = pytest.mark.anyio


async def tenant(profile: str) -> AsyncIterator[tuple[Sandbox, httpx.AsyncClient]]:
    sandbox, app = build_sandbox(rate_limits=False, profile=profile)
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    async with httpx.AsyncClient(transport=SandboxTransport(app), base_url=SANDBOX_URL, headers=headers) as http:
        yield sandbox, http


@pytest.fixture
async def admin() -> AsyncIterator[tuple[Sandbox, httpx.AsyncClient]]:
    async for pair in tenant("admin"):
        yield pair


@pytest.fixture
async def user() -> AsyncIterator[tuple[Sandbox, httpx.AsyncClient]]:
    async for pair in tenant("user"):
        yield pair


def names(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [i["name"] for i in answer.json()["data"]]


Tenant = tuple[Sandbox, httpx.AsyncClient]


async def test_items_read_name_as_a_whole_name_and_query_as_a_fragment(admin: Tenant) -> None:
    _, http = admin
    base = {"resourceType": "app", "limit": 100}
    assert names(await http.get("/api/v1/items", params=base | {"name": "sales"})) == []
    assert names(await http.get("/api/v1/items", params=base | {"name": "SALES dashboard"})) == ["Sales Dashboard"]
    assert names(await http.get("/api/v1/items", params=base | {"query": "sales"})) == ["Sales Dashboard"]


async def test_the_user_profile_is_a_space_members_key(user: Tenant) -> None:
    sandbox, http = user
    caller = sandbox.caller()
    assert not caller.admin and sandbox.profile == "user" and sandbox.member_spaces
    refused = await http.post("/api/v1/users/actions/filter", json={"filter": f'id eq "{caller.id}"'})
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "USERS-403"
    items = (await http.get("/api/v1/items", params={"resourceType": "app", "limit": 100})).json()["data"]
    assert items and {i["spaceId"] for i in items} <= sandbox.member_spaces
    spaces = (await http.get("/api/v1/spaces")).json()["data"]
    assert {s["id"] for s in spaces} == sandbox.member_spaces
    hidden = next(a for a in sandbox.apps.values() if a.space_id not in sandbox.member_spaces and not a.deleted)
    shown = next(a for a in sandbox.apps.values() if a.space_id in sandbox.member_spaces and not a.deleted)
    gone = next(a for a in sandbox.apps.values() if a.deleted)
    assert (await http.get(f"/api/v1/apps/{hidden.id}")).status_code == 403
    assert (await http.get(f"/api/v1/apps/{gone.id}")).status_code == 404
    assert (await http.get(f"/api/v1/apps/{shown.id}")).json()["attributes"]["name"] == shown.name
    assert (await http.get(f"/api/v1/spaces/{hidden.space_id}")).status_code == 404
    assert (await http.get("/api/v1/reloads")).status_code == 403
    assert (await http.get("/api/v1/reloads", params={"appId": shown.id})).status_code == 200


async def test_the_retired_profile_has_no_reload_tasks() -> None:
    async for sandbox, http in tenant("retired"):
        assert (await http.get("/api/v1/reload-tasks")).status_code == 404
        assert sandbox.caller().admin and (await http.get("/api/v1/items", params={"limit": 1})).status_code == 200


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox profile"):
        build_sandbox(profile="root")


def test_the_profile_is_a_setting_and_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from qlik_tasks_mcp.server.app import build_server
    from qlik_tasks_mcp.server.cli import checked_settings, parse_args

    assert checked_settings(parse_args(["--sandbox", "--sandbox-profile", "user"])).sandbox_profile == "user"
    monkeypatch.setenv("QLIK_MCP_SANDBOX_PROFILE", "retired")
    settings = checked_settings(parse_args(["--sandbox"]))
    _, backend = build_server(settings)
    assert backend.sandbox is not None and backend.sandbox.profile == "retired"
    monkeypatch.setenv("QLIK_MCP_SANDBOX_PROFILE", "root")
    with pytest.raises(Exception, match="QLIK_MCP_SANDBOX_PROFILE"):
        checked_settings(parse_args(["--sandbox"]))


def test_two_weeks_of_history_is_a_flag_of_the_sandbox_only() -> None:
    from qlik_tasks_mcp.sandbox import reloads as sandbox_reloads
    from qlik_tasks_mcp.server.app import build_server
    from qlik_tasks_mcp.server.cli import checked_settings, parse_args
    from qlik_tasks_mcp.server.settings import ConfigError

    def reloads(args: list[str]) -> int:
        _, backend = build_server(checked_settings(parse_args(args)))
        assert backend.sandbox is not None
        return len(sandbox_reloads.tables(backend.sandbox).reloads)

    # Runs true to every schedule for two weeks: far more reloads than the default seed's few days.
    assert reloads(["--sandbox", "--sandbox-history"]) > 2 * reloads(["--sandbox"])
    with pytest.raises(ConfigError, match="add --sandbox"):
        checked_settings(parse_args(["--sandbox-history"]))


async def pages(http: httpx.AsyncClient, path: str, limit: int) -> list[dict[str, Any]]:
    """Every row of a task list, a page at a time: reload tasks by their next link, tasks by the next token."""
    rows: list[dict[str, Any]] = []
    answer = await http.get(path, params={"limit": limit})
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["data"]
        nxt = body["links"].get("next")
        if nxt is None:
            return rows
        token = nxt.get("token")
        answer = await (http.get(path, params={"limit": limit, "page": token}) if token else http.get(nxt["href"]))


async def test_a_members_key_lists_only_the_tasks_it_has_access_to(user: Tenant) -> None:
    """reload-tasks.json, tasks.json, scheduling-tasks.json: the lists hold the tasks the caller has access to (those
    of apps in its spaces, and its own), chosen before paging; one such task read directly is 403."""
    sandbox, http = user
    me, member = sandbox.caller_id, sandbox.member_spaces
    hidden = [a for a in sandbox.apps.values() if a.space_id not in member]
    # A task the key owns on an app outside its spaces is its own: listed, and read.
    mine = next(t for t in sandbox_tasks.tables(sandbox).tasks.values() if t["resourceId"] == hidden[0].id)
    mine["metadata"]["ownerId"] = me
    my_reload_task = next(t for t in sandbox_reload_tasks.tasks(sandbox).values() if t["appId"] == hidden[0].id)
    my_reload_task["userId"] = me

    def expected(rows: list[tuple[str, str, str]]) -> set[str]:
        return {i for i, app, owner in rows if owner == me or sandbox.apps[app].space_id in member}

    task_rows = [
        (t["id"], t["resourceId"], t["metadata"]["ownerId"]) for t in sandbox_tasks.tables(sandbox).tasks.values()
    ]
    reload_rows = [(t["id"], t["appId"], t["userId"]) for t in sandbox_reload_tasks.tasks(sandbox).values()]
    listed_tasks = await pages(http, "/api/scheduling/tasks", 2)
    listed_reload_tasks = await pages(http, "/api/v1/reload-tasks", 2)
    assert len(listed_tasks) == len({t["id"] for t in listed_tasks}) == len(expected(task_rows))
    assert {t["id"] for t in listed_tasks} == expected(task_rows) and mine["id"] in expected(task_rows)
    assert len(listed_reload_tasks) == len({t["id"] for t in listed_reload_tasks})
    assert {t["id"] for t in listed_reload_tasks} == expected(reload_rows) < {i for i, _, _ in reload_rows}
    assert my_reload_task["id"] in expected(reload_rows)
    # The v1 list is by app: an app outside the key's spaces lists none of the tasks it does not own.
    other = next(a for a in hidden[1:] if any(app == a.id for _, app, _ in task_rows))
    for app in (other, hidden[0]):
        answer = await http.get("/api/v1/tasks", params={"resourceId": app.id})
        assert {t["id"] for t in answer.json()["data"]} == expected([r for r in task_rows if r[1] == app.id])
    assert not expected([r for r in task_rows if r[1] == other.id])
    # One read directly: 403 in the family's error shape; the key's own task reads as before.
    task = next(i for i, app, _ in task_rows if app == other.id)
    reload_task = next(i for i, app, _ in reload_rows if app == other.id)
    for path in (f"/api/v1/tasks/{task}", f"/api/scheduling/tasks/{task}"):
        refused = await http.get(path)
        assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == 403
    refused = await http.get(f"/api/v1/reload-tasks/{reload_task}")
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "RELOAD-TASKS-403"
    assert (await http.get(f"/api/scheduling/tasks/{mine['id']}")).status_code == 200
    assert (await http.get(f"/api/v1/reload-tasks/{my_reload_task['id']}")).status_code == 200


async def test_an_app_whose_item_is_gone_keeps_its_tasks_by_its_space_as_stored(admin: Tenant, user: Tenant) -> None:
    (everything, all_http), (sandbox, http) = admin, user
    gone = next(a for a in sandbox.apps.values() if a.deleted)
    of_gone = {t["id"] for t in sandbox_tasks.tables(sandbox).tasks.values() if t["resourceId"] == gone.id}
    assert of_gone and of_gone <= {t["id"] for t in await pages(all_http, "/api/scheduling/tasks", 100)}
    assert everything.caller().admin and gone.space_id not in sandbox.member_spaces
    assert not of_gone & {t["id"] for t in await pages(http, "/api/scheduling/tasks", 100)}
    gone.space_id = next(iter(sandbox.member_spaces))
    assert of_gone <= {t["id"] for t in await pages(http, "/api/scheduling/tasks", 100)}
