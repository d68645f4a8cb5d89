"""The ops answers that join runs across time, and the one-yes bulk changes, through an MCP client on the sandbox
with two weeks of history (sandbox/history.py): its cases are found by what they are, never by position."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from qlik_tasks_mcp.client.qalyptus_orgs import QalyptusOrg
from qlik_tasks_mcp.sandbox import history, qalyptus
from qlik_tasks_mcp.sandbox import reload_tasks as sandbox_reload_tasks
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.server import app as server_app
from qlik_tasks_mcp.tools.ops import missed as missed_module
from qlik_tasks_mcp.tools.ops import reload_window, stats
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio


SANDBOX_ORGS = server_app.sandbox_organizations()


def both_organizations() -> list[QalyptusOrg]:
    """The sandbox's two Qalyptus organizations (a sandbox server serves the first only), each with its key."""
    return [*SANDBOX_ORGS, QalyptusOrg("sandbox-eu", qalyptus.EU_URL, SecretStr(qalyptus.EU_KEY))]


@pytest.fixture
async def two_orgs(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    """The sandbox with two weeks of history, served with both Qalyptus organizations."""
    monkeypatch.setattr(server_app, "sandbox_organizations", both_organizations)
    h = make_harness(sandbox_options={"history": True})
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


async def test_reload_stats_name_the_seeded_slowdowns_first(seeded: Harness) -> None:
    slowed = history.cases(seeded.sandbox).slowed_apps
    assert len(slowed) == 2
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    rows = report["rows"]
    assert [r["app_id"] for r in rows[:2]] == slowed
    first, second = rows[0], rows[1]
    assert 2.5 < first["slowdown"] < 3.5 and 1.6 < second["slowdown"] < 2.4
    assert all(r.get("slowdown", 0) < 1.5 for r in rows[2:])
    assert first["runs"] >= 6 and first["before_runs"] >= 6 and first["p90_s"] >= first["median_s"]
    # The slowest statements of the newest reload, Qlik keeping its metadata: one fence for the result.
    assert first["statements_of"] and report["statements"].count("BEGIN UNTRUSTED") == 1
    assert not report.get("stopped_early")


async def test_reload_stats_by_task_and_for_named_apps(seeded: Harness) -> None:
    slowed = history.cases(seeded.sandbox).slowed_apps
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {"app_ids": slowed[::-1], "by": "task"}))
    assert {r["app_id"] for r in report["rows"]} == set(slowed)
    assert report["rows"][0]["app_id"] == slowed[0] and report["rows"][0]["task"].startswith("task ")


async def test_reload_stats_say_what_the_budget_left_unread(seeded: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # One page of ten reloads: the earlier week is left unread, and the result says so.
    monkeypatch.setattr(stats, "STATS_REQUESTS", 1)
    monkeypatch.setattr(reload_window, "PAGE", 10)
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    assert report["stopped_early"] and report["not_read"] and "Stopped early" in report["note"]


async def test_missed_runs_find_each_seeded_case_with_its_reason(seeded: Harness) -> None:
    cases = history.cases(seeded.sandbox)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {}))
    rows = {(r["what"], r["kind"], r["task_id"]): r for r in report["rows"]}
    reasons = {
        None: lambda r: "reason" not in r,
        "quota": lambda r: "EXCEEDED_LIMIT" in r["reason"],
        "owner disabled": lambda r: r["reason"].startswith("owner disabled"),
        "disabled": lambda r: r["reason"].startswith("disabled"),
        "app has tasks": lambda r: r["reason"].startswith("app has tasks"),
        "inactive": lambda r: r["reason"] == "inactive",
    }
    # A disabled task's miss is a case only when it was due in the cases' hours: not required here.
    assert {None, "quota", "owner disabled", "app has tasks"} <= set(cases.missed.values())
    for (kind, task_id), reason in cases.missed.items():
        row = rows[("missed", kind, task_id)]
        assert reasons[reason](row), (reason, row)
    for kind, task_id in cases.late:
        assert rows[("late", kind, task_id)]["late_min"] >= 40
    for kind, task_id in cases.twice:
        assert rows[("twice", kind, task_id)]["count"] == 1
    # No false miss: a task that ran at each of its times is in no row; a miss the history did not seed is one the
    # tenant explains (a disabled task, or a reload task of an app with tasks, due just outside the cases' hours).
    assert cases.ran
    assert not [key for key in rows if key[1:] in cases.ran]
    others = [r for key, r in rows.items() if key[0] == "missed" and key[1:] not in cases.missed]
    assert all(r["reason"].startswith(("disabled", "app has tasks")) for r in others), others
    assert report["checked"]["runs due"] > len(rows)


async def test_missed_runs_never_conclude_from_reloads_left_unread(
    seeded: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(missed_module, "MISSED_REQUESTS", 0)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {}))
    assert report["rows"] == [] and report["stopped_early"] and report["not_checked"]


async def test_missed_runs_never_conclude_from_reloads_a_key_may_not_see() -> None:
    """A space member's key reads reloads app by app, and the reloads listed to a key are those it has access to:
    an app outside its spaces is not compared, even where the tenant lists its tasks (the key owns them)."""
    harness = make_harness(sandbox_profile="user", sandbox_options={"history": True})
    sandbox = harness.sandbox
    member = sandbox.member_spaces
    hidden = {a.id for a in sandbox.apps.values() if a.space_id not in member}
    # Tasks the key owns on apps outside its spaces (it left the space, say): listed to it, their apps' reloads not.
    owned = [t for t in sandbox_tasks.tables(sandbox).tasks.values() if t["resourceId"] in hidden][:2]
    for task in owned:
        task["metadata"]["ownerId"] = sandbox.caller_id
    reload_task = next(t for t in sandbox_reload_tasks.tasks(sandbox).values() if t["appId"] in hidden)
    reload_task["userId"] = sandbox.caller_id
    # The sandbox lists no reload of those apps to this key, as none it has access to: that is no miss.
    async with harness.client() as client:
        report = data(await client.call_tool("find_missed_runs", {}))
    await harness.backend.aclose()
    assert hidden and not [r for r in report["rows"] if r.get("app_id") in hidden and r["kind"] in ("reload", "task")]
    assert owned and "Not compared: the tasks of 2 apps this key cannot see" in report["note"]
    assert not {t["id"] for t in owned} & {r.get("task_id") for r in report["rows"]}
    assert any("its runs were not all read" in n for n in report["not_checked"])


async def test_missed_runs_read_sharing_deliveries(seeded: Harness) -> None:
    table = sandbox_sharing.tables(seeded.sandbox)
    task = next(
        t
        for t in table.tasks.values()
        if t["enabled"] and t.get("statusCode") != "DELETING" and (t.get("scheduleOptions") or {}).get("recurrence")
    )
    now = seeded.sandbox.clock.now()
    start = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    hourly = ["RRULE:FREQ=HOURLY;INTERVAL=1;BYMINUTE=0;BYSECOND=0"]
    task["scheduleOptions"] = {"timezone": "UTC", "recurrence": hourly, "startDateTime": start, "endDateTime": ""}
    table.executions.pop(task["id"], None)
    top = now.replace(minute=0, second=0, microsecond=0)
    for hours in (5, 4, 2, 1, 0):  # not 3 hours ago
        due = top - timedelta(hours=hours)
        if now - due > timedelta(minutes=1):
            sandbox_sharing.start_execution(seeded.sandbox, task, at=due + timedelta(seconds=10), seconds=5)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {"hours": 6, "app_id": task["appId"]}))
    mine = [r for r in report["rows"] if r["task_id"] == task["id"]]
    missed_at = (top - timedelta(hours=3)).strftime("%Y-%m-%d %H:%MZ")
    assert mine == [
        {"what": "missed", "kind": "sharing", "task_id": task["id"], "name": mine[0]["name"]}
        | {"app_id": task["appId"], "app": "Sales Dashboard", "due": [missed_at], "count": 1}
    ]


def test_join_tells_missed_late_twice_and_quota_apart() -> None:
    t0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
    day = timedelta(days=1)
    due = [t0, t0 + day, t0 + 2 * day, t0 + 3 * day, t0 + 4 * day]
    runs = [
        (t0 - timedelta(minutes=1), "SUCCEEDED"),  # a clock a minute ahead still ran it
        (t0 + day + timedelta(minutes=50), "SUCCEEDED"),
        (t0 + 2 * day + timedelta(seconds=5), "SUCCEEDED"),
        (t0 + 2 * day + timedelta(seconds=30), "FAILED"),
        (t0 + 4 * day + timedelta(seconds=5), "EXCEEDED_LIMIT"),
    ]
    joined = missed_module._join(due, runs, timedelta(minutes=15))
    assert joined.missed == [t0 + 3 * day] and joined.quota == [t0 + 4 * day]
    assert joined.late == [(t0 + day, 50)] and joined.twice == [t0 + 2 * day]
    # The next time, not judged yet (within the tolerance of now), ran on time: its run is not the last one's.
    following = t0 + 5 * day
    joined = missed_module._join(due, [*runs, (following + timedelta(seconds=3), "SUCCEEDED")], timedelta(minutes=15))
    assert joined.quota == [] and joined.late[-1] == (t0 + 4 * day, 1440)
    joined = missed_module._join(
        due, [*runs, (following + timedelta(seconds=3), "SUCCEEDED")], timedelta(minutes=15), following
    )
    assert joined.quota == [t0 + 4 * day] and joined.late == [(t0 + day, 50)]


async def test_a_leavers_sharing_and_qalyptus_tasks_move_to_another_owner_with_one_yes(two_orgs: Harness) -> None:
    seeded = two_orgs
    users = {u.name: u for u in seeded.sandbox.users.values()}
    leaver, heir = users["Eve Exited"], users["Ben Builder"]
    sharing = sandbox_sharing.tables(seeded.sandbox).tasks
    theirs = sorted(i for i, t in sharing.items() if t["owner"] == leaver.id and t.get("statusCode") != "DELETING")
    going = [i for i, t in sharing.items() if t["owner"] == leaver.id and t.get("statusCode") == "DELETING"]
    assert len(theirs) >= 3 and going
    # The leaver owns a report task in each organization (the seed gives them one of the first): Qalyptus keeps a
    # gone user's tasks under their id, though they are no longer one of its users.
    orgs = list(qalyptus.tables(seeded.sandbox).orgs.values())
    next(iter(orgs[1].tasks.values()))["owner"] = leaver.id
    reports = {i: org for org in orgs for i, t in org.tasks.items() if t["owner"] == leaver.id}
    assert {org.name for org in reports.values()} == {"sandbox", "sandbox-eu"}
    assert all(leaver.id not in {u["id"] for u in org.users} for org in orgs)
    args = {"new_owner": heir.email, "filter": {"owner_id": leaver.id}}
    before = copy.deepcopy(seeded.sandbox.tables)
    async with seeded.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", args))
        assert preview["status"] == "confirmation_required"
        assert preview["action"].startswith(f"Give {len(theirs) + 2} tasks (2 qalyptus, {len(theirs)} sharing)")
        assert all(i in " ".join(preview["changes"]) for i in [*theirs, *reports])
        # Each organization names the Qalyptus user the tasks go to.
        for org in ("sandbox", "sandbox-eu"):
            assert (
                f"In Qalyptus organization {org} the new owner is 'Ben Builder' (Qalyptus user {heir.id})."
                in (preview["notes"])
            )
        # Their reload tasks and tasks cannot be given: the preview says who can take them over.
        put_note = next(n for n in preview["notes"] if "reload tasks/tasks" in n)
        assert heir.id in put_note and "signed in as themselves" in put_note
        # One is being deleted: named, not changed.
        assert any(n.startswith("1 being deleted") and going[0] in n for n in preview["notes"])
        assert seeded.sandbox.tables == before
        done = data(await client.call_tool("change_tasks_owner", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done" and done["result"] == {"changed": len(theirs) + 2, "already": 0}
    assert all(sharing[i]["owner"] == heir.id for i in theirs)
    assert [i for i, t in sharing.items() if t["owner"] == leaver.id] == going
    assert all(
        org.tasks[i]["owner"] == heir.id and org.tasks[i]["ownerName"] == heir.name for i, org in reports.items()
    )


async def test_a_qalyptus_organization_without_the_new_owner_keeps_its_tasks(two_orgs: Harness) -> None:
    harness = two_orgs
    users = {u.name: u for u in harness.sandbox.users.values()}
    leaver, heir = users["Ben Builder"], users["Cleo Controller"]
    main, eu = qalyptus.tables(harness.sandbox).org(), qalyptus.tables(harness.sandbox).org(qalyptus.EU_HOST)
    eu.users = [u for u in eu.users if u["id"] != heir.id]
    kept = sorted(i for i, t in eu.tasks.items() if t["owner"] == leaver.id)
    moved = sorted(i for i, t in main.tasks.items() if t["owner"] == leaver.id)
    assert kept and moved
    args = {"new_owner": heir.id, "filter": {"owner_id": leaver.id, "kinds": ["qalyptus"]}}
    async with harness.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", args))
        note = next(n for n in preview["notes"] if "left as they are" in n)
        assert note == (
            f"{len(kept)} Qalyptus tasks left as they are: 'Cleo Controller' (user {heir.id}) is not a user of "
            f"Qalyptus organization sandbox-eu (none has their id or e-mail): {', '.join(kept)}"
        )
        assert preview["action"].startswith(
            f"Give {len(moved)} task{'s' if len(moved) != 1 else ''} ({len(moved)} qalyptus)"
        )
        done = data(await client.call_tool("change_tasks_owner", args | {"confirm_token": preview["confirm_token"]}))
    assert done["result"] == {"changed": len(moved), "already": 0}
    assert all(main.tasks[i]["owner"] == heir.id for i in moved)
    assert all(eu.tasks[i]["owner"] == leaver.id for i in kept)


def _own_qalyptus_ids(org: qalyptus.Org) -> dict[str, str]:
    """The organization's users get ids of their own (Qlik's id -> Qalyptus's), as a real organization may have."""
    new_ids = {u["id"]: f"q-{n:04d}" for n, u in enumerate(org.users)}
    for user in org.users:
        user["id"] = new_ids[user["id"]]
    for task in org.tasks.values():
        task["owner"] = new_ids.get(task["owner"], task["owner"])
    return new_ids


async def test_qalyptus_owners_are_matched_by_e_mail_when_their_ids_differ(harness: Harness) -> None:
    users = {u.name: u for u in harness.sandbox.users.values()}
    leaver, heir = users["Dan Data"], users["Cleo Controller"]
    main = qalyptus.tables(harness.sandbox).org()
    new_ids = _own_qalyptus_ids(main)
    theirs = sorted(i for i, t in main.tasks.items() if t["owner"] == new_ids[leaver.id])
    assert theirs
    args = {"new_owner": heir.name, "filter": {"owner_id": leaver.id, "kinds": ["qalyptus"]}}
    async with harness.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", args))
        assert all(i in " ".join(preview["changes"]) for i in theirs)
        assert (
            f"In Qalyptus organization sandbox the new owner is 'Cleo Controller' (Qalyptus user {new_ids[heir.id]})."
            in preview["notes"]
        )
        done = data(await client.call_tool("change_tasks_owner", args | {"confirm_token": preview["confirm_token"]}))
    assert done["result"] == {"changed": len(theirs), "already": 0}
    assert all(main.tasks[i]["owner"] == new_ids[heir.id] for i in theirs)


async def test_qalyptus_users_that_cannot_be_read_keep_their_tasks_and_the_sharing_tasks_still_move(
    harness: Harness,
) -> None:
    users = {u.name: u for u in harness.sandbox.users.values()}
    leaver, heir = users["Eve Exited"], users["Ben Builder"]
    qalyptus.tables(harness.sandbox).unserved.add("/users")
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    theirs = [i for i, t in sharing.items() if t["owner"] == leaver.id and t.get("statusCode") != "DELETING"]
    report = next(i for i, t in qalyptus.tables(harness.sandbox).org().tasks.items() if t["owner"] == leaver.id)
    args = {"new_owner": heir.id, "filter": {"owner_id": leaver.id}}
    async with harness.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", args))
        assert preview["action"].startswith(f"Give {len(theirs)} tasks ({len(theirs)} sharing)")
        # What another key's listing leaves out is not said to be absent.
        assert any(n.startswith("Sharing tasks are those this key can access") for n in preview["notes"])
        assert (
            "Qalyptus organization sandbox's users could not be read (HTTP 404): only its tasks owned by id "
            f"{leaver.id} are theirs." in preview["notes"]
        )
        note = next(n for n in preview["notes"] if n.startswith("1 Qalyptus tasks left as they are"))
        assert "Qalyptus organization sandbox's users could not be read (HTTP 404), so which" in note and report in note
        done = data(await client.call_tool("change_tasks_owner", args | {"confirm_token": preview["confirm_token"]}))
    assert done["result"]["changed"] == len(theirs)
    assert qalyptus.tables(harness.sandbox).org().tasks[report]["owner"] == leaver.id


async def test_qalyptus_tasks_that_cannot_be_listed_are_left_and_named(harness: Harness) -> None:
    heir = next(u for u in harness.sandbox.users.values() if u.name == "Cleo Controller")
    shared = next(i for i, t in sandbox_sharing.tables(harness.sandbox).tasks.items() if t["owner"] != heir.id)
    report = next(i for i, t in qalyptus.tables(harness.sandbox).org().tasks.items() if t["owner"] != heir.id)
    qalyptus.tables(harness.sandbox).unserved.add("/tasks")
    refs = [{"kind": "sharing", "id": shared}, {"kind": "qalyptus", "id": report}]
    async with harness.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", {"new_owner": heir.id, "tasks": refs}))
    assert preview["action"].startswith("Give 1 task (1 sharing)")
    assert (
        "1 Qalyptus tasks left as they are: Qalyptus organization sandbox's tasks could not be read (HTTP 404): "
        f"{report}" in preview["notes"]
    )


async def test_the_sandbox_change_owner_route_answers_as_qalyptus_does(harness: Harness) -> None:
    """What a bulk owner change meets: an unknown task is a 404, an owner who is no user of the organization a
    refusal in the envelope, both leaving the task as it is."""
    org = qalyptus.tables(harness.sandbox).org()
    task_id, task = next(iter(org.tasks.items()))
    heir = next(u for u in org.users if u["id"] != task["owner"])
    owner = task["owner"]
    headers = {"Authorization": f"Bearer {qalyptus.QALYPTUS_SANDBOX_KEY}"}
    inner = harness.transport.inner
    async with httpx.AsyncClient(transport=inner, base_url=qalyptus.QALYPTUS_SANDBOX_URL, headers=headers) as http:
        gone = await http.put(f"/tasks/00000000-0000-4000-a000-000000000000/owner/{heir['id']}")
        stranger = await http.put(f"/tasks/{task_id}/owner/{'f' * 32}")
        assert task["owner"] == owner
        given = await http.put(f"/tasks/{task_id}/owner/{heir['id']}")
    assert gone.status_code == 404 and gone.json()["isSuccess"] is False
    assert stranger.json()["isSuccess"] is False and stranger.json()["error"] == "User not found"
    assert given.json()["isSuccess"] is True and given.json()["data"]["owner"] == heir["id"] == task["owner"]


async def test_tasks_are_never_given_to_a_gone_user(harness: Harness) -> None:
    users = {u.name: u for u in harness.sandbox.users.values()}
    args = {"new_owner": users["Finn Frozen"].id, "filter": {"owner_id": users["Eve Exited"].id}}
    async with harness.client() as client:
        refused = await client.call_tool("change_tasks_owner", args)
    assert "disabled and cannot own tasks" in error_text(refused)


async def test_deleting_four_tasks_of_four_kinds_takes_one_yes(harness: Harness) -> None:
    reload_id = next(iter(harness.sandbox.tables["reload_tasks"]))
    task = next(iter(sandbox_tasks.tables(harness.sandbox).tasks))
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    shared = next(i for i, t in sharing.items() if t.get("statusCode") != "DELETING")
    report_tasks = qalyptus.tables(harness.sandbox).org().tasks
    report = next(iter(report_tasks))
    refs = [{"kind": "reload", "id": reload_id}, {"kind": "task", "id": task}]
    refs += [{"kind": "sharing", "id": shared}, {"kind": "qalyptus", "id": report}]
    async with harness.client() as client:
        preview = data(await client.call_tool("delete_tasks", {"tasks": refs}))
        assert preview["action"].startswith("Delete 4 tasks (1 qalyptus, 1 reload, 1 sharing, 1 task)")
        assert len(preview["changes"]) == 4 and reload_id in harness.sandbox.tables["reload_tasks"]
        done = data(await client.call_tool("delete_tasks", {"tasks": refs, "confirm_token": preview["confirm_token"]}))
    assert done["result"] == {"changed": 4, "already": 0}
    assert reload_id not in harness.sandbox.tables["reload_tasks"]
    assert task not in sandbox_tasks.tables(harness.sandbox).tasks
    assert shared not in sharing or sharing[shared].get("statusCode") == "DELETING"
    assert report not in report_tasks


async def test_a_bulk_delete_says_what_failed(harness: Harness) -> None:
    targets = [t["id"] for t in harness.sandbox.tables["reload_tasks"].values()][:3]
    refs = [{"kind": "reload", "id": i} for i in targets]
    harness.backend.qlik.retry.base_delay = 0.001
    async with harness.client() as client:
        preview = data(await client.call_tool("delete_tasks", {"tasks": refs}))
        faults = harness.sandbox.faults
        faults.match_path, faults.match_method, faults.status_503 = targets[1], "DELETE", 10
        done = data(await client.call_tool("delete_tasks", {"tasks": refs, "confirm_token": preview["confirm_token"]}))
    result = done["result"]
    assert result["changed"] == 2 and [f["id"] for f in result["failed"]] == [targets[1]]
    assert [i in harness.sandbox.tables["reload_tasks"] for i in targets] == [False, True, False]


async def test_reload_stats_read_app_by_app_for_a_caller_who_is_not_an_admin(seeded: Harness) -> None:
    seeded.sandbox.caller_id = next(u.id for u in seeded.sandbox.users.values() if not u.admin)
    slowed = history.cases(seeded.sandbox).slowed_apps
    # A member of the slowed apps' spaces: the reloads listed to a key are those it has access to.
    seeded.sandbox.member_spaces = {seeded.sandbox.apps[a].space_id for a in slowed}
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    assert "app by app" in report["note"]
    assert [r["app_id"] for r in report["rows"][:2]] == slowed
