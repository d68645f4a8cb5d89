"""Every schedule form Qlik allows, read one way (client/schedule.py): RRULE lines with or without the prefix,
multi-line recurrences with DTSTART/EXDATE/RDATE, ISO 8601 intervals with a local, `Z` or offset start and bare
durations, and cron; in words and with next runs, through the pure reader (at fixed times) and through an MCP client
against the sandbox, whose own reader (sandbox/schedule.py) must agree."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import ExpansionBudget, anchor_for, occurrences, read_schedule, utc_z
from qlik_tasks_mcp.client.schedule import _parse as parse_rule
from qlik_tasks_mcp.sandbox import schedule as sandbox_schedule
from qlik_tasks_mcp.sandbox.sharing_tasks import tables as sharing_tables
from qlik_tasks_mcp.sandbox.tasks import TaskTables
from tests.conftest import Harness, data, error_text, make_harness

AFTER = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
ZURICH = ZoneInfo("Europe/Zurich")

# Rule sets whose runs from a recent anchor must be those from the first start: every BY part, COUNT, UNTIL, the
# extra lines of a multi-line recurrence, DST zones, intervals and cron as the reader turns them into rules.
RULE_SETS: list[tuple[list[str], datetime | None]] = [
    (["RRULE:FREQ=HOURLY;BYMINUTE=5"], datetime(2026, 1, 1)),
    (["RRULE:FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,30"], datetime(2026, 1, 1, 3, 15)),
    (["FREQ=DAILY;BYHOUR=2;BYMINUTE=30"], datetime(2026, 3, 1)),
    (["RRULE:FREQ=DAILY;INTERVAL=3;BYHOUR=6,18;BYMINUTE=0;BYSETPOS=-1"], datetime(2025, 2, 28, 7)),
    (["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;BYHOUR=2;BYMINUTE=0"], datetime(2026, 3, 1)),
    (["RRULE:FREQ=WEEKLY;WKST=SU;INTERVAL=3;BYDAY=SU,SA"], datetime(2024, 6, 5, 9)),
    (["RRULE:FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31"], datetime(2020, 1, 31)),
    (["RRULE:FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=23;BYMINUTE=0"], datetime(2021, 4, 2)),
    (["RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"], datetime(2020, 2, 29)),
    (["RRULE:FREQ=YEARLY;INTERVAL=2;BYWEEKNO=10;BYDAY=MO"], datetime(2019, 1, 1)),
    (["RRULE:FREQ=DAILY;COUNT=400"], datetime(2026, 1, 1, 6)),
    (["RRULE:FREQ=HOURLY;COUNT=8000"], datetime(2026, 1, 1)),
    (["RRULE:FREQ=HOURLY;UNTIL=20261207T050000"], datetime(2026, 1, 1)),
    (["RRULE:FREQ=HOURLY;UNTIL=20260101T050000"], datetime(2025, 1, 1)),
    (["RRULE:FREQ=MINUTELY;INTERVAL=15"], datetime(2020, 1, 1, 0, 7)),
    # One run a week from a minutely rule: too sparse to count period by period, walked by dateutil instead.
    (["RRULE:FREQ=MINUTELY;BYDAY=SU;BYHOUR=3;BYMINUTE=0"], datetime(2026, 1, 1)),
    (["RRULE:FREQ=HOURLY;INTERVAL=2;BYHOUR=3"], datetime(2026, 1, 1, 1)),
    # Periods that run past the calendar's end before a weekday matches, or one run in centuries.
    (["RRULE:FREQ=DAILY;INTERVAL=714;BYDAY=TU;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], datetime(2026, 1, 5)),
    (["RRULE:FREQ=DAILY;INTERVAL=100000"], datetime(2026, 1, 5)),
    # A start near the calendar's end, and (with the anchor's after of 29 February 2060) no 29 February in 2100.
    (["RRULE:FREQ=DAILY;BYDAY=MO;BYHOUR=6"], datetime(9985, 1, 1)),
    (
        [
            "DTSTART;TZID=Europe/Zurich:20260301T020000",
            "RRULE:FREQ=WEEKLY;BYDAY=MO,TH",
            "EXDATE;TZID=Europe/Zurich:20261207T020000,20261210T020000",
        ],
        None,
    ),
    (["DTSTART:20260101T060000Z", "RRULE:FREQ=HOURLY;INTERVAL=7", "RDATE:20261206T190100Z"], None),
    (["RRULE:FREQ=HOURLY;BYMINUTE=0", "EXRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5;BYMINUTE=0"], datetime(2026, 1, 1)),
    (["RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "EXDATE;VALUE=DATE:20261207"], datetime(2026, 3, 1)),
    (["RRULE:FREQ=DAILY;BYHOUR=0,1,2,3;BYMINUTE=30"], datetime(2026, 1, 1)),  # spring-forward gap in March
]


@pytest.mark.parametrize(("lines", "start"), RULE_SETS)
@pytest.mark.parametrize(
    "after",
    [
        AFTER,
        datetime(2027, 3, 28, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2060, 2, 29, 12, tzinfo=UTC),
    ],
)
def test_runs_from_a_recent_anchor_are_the_runs_from_the_first_start(
    lines: list[str], start: datetime | None, after: datetime
) -> None:
    fast = occurrences(lines, ZURICH, start, after=after, count=12)
    # The reference walks every run since the first start: no time budget for it.
    slow = occurrences(
        lines, ZURICH, start, after=after, count=12, anchored=False, budget=ExpansionBudget(float("inf"))
    )
    assert fast == slow


def _random_rule(pick: random.Random) -> str:
    """A minutely, hourly, daily or weekly rule with random BY parts: the shapes counted period by period, and
    neighbours (a weekly rule every few weeks, a BYSETPOS) that are not."""
    freq = pick.choice(["MINUTELY", "HOURLY", "HOURLY", "DAILY", "DAILY", "WEEKLY"])
    parts = [f"FREQ={freq}"]
    top = {"MINUTELY": 90, "HOURLY": 30, "DAILY": 9, "WEEKLY": 3}[freq]
    if pick.random() < 0.6:
        parts.append(f"INTERVAL={pick.randint(1, top)}")

    def some(name: str, values: range, most: int) -> None:
        if pick.random() < 0.5:
            chosen = sorted(pick.sample(list(values), pick.randint(1, most)))
            parts.append(f"{name}={','.join(map(str, chosen))}")

    some("BYHOUR", range(24), 4)
    some("BYMINUTE", range(60), 3)
    some("BYSECOND", range(60), 2) if pick.random() < 0.3 else None
    if pick.random() < 0.4:
        parts.append("BYDAY=" + ",".join(pick.sample(["MO", "TU", "WE", "TH", "FR", "SA", "SU"], pick.randint(1, 3))))
    if pick.random() < 0.2:
        parts.append(f"UNTIL=2026{pick.randint(11, 12):02d}{pick.randint(1, 28):02d}T{pick.randint(0, 23):02d}0000")
    if pick.random() < 0.05:
        parts.append("BYSETPOS=1")
    return "RRULE:" + ";".join(parts)


@pytest.mark.parametrize("seed", range(6))
def test_rules_counted_period_by_period_have_dateutils_runs(seed: int) -> None:
    pick = random.Random(seed)
    zones = [ZURICH, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]
    for _ in range(150):
        line = _random_rule(pick)
        zone = pick.choice(zones)
        start = datetime(2025, 1, 1) + timedelta(seconds=pick.randint(0, 600 * 86400))
        # Around now, and at DST changes (Zurich: 29 March and 25 October 2026; New York: 8 March, 1 November).
        after = pick.choice(
            [AFTER, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 11, 1, 5, 10, tzinfo=UTC)]
        ) + timedelta(minutes=pick.randint(-600, 600))
        walked = partial(occurrences, [line], zone, start, after=after, count=5, anchored=False)
        try:
            counted = occurrences([line], zone, start, after=after, count=5)
        except InvalidInput:
            # Refused only where dateutil refuses too (e.g. an interval that never reaches its BYHOUR).
            with pytest.raises(InvalidInput):
                walked(budget=ExpansionBudget(float("inf")))
            continue
        assert counted == walked(budget=ExpansionBudget(float("inf"))), (line, zone, start, after)


def test_the_anchor_moves_forward_by_whole_periods_and_never_past_a_count() -> None:
    local = AFTER.astimezone(ZURICH).replace(tzinfo=None)
    hourly = parse_rule("RRULE:FREQ=HOURLY;INTERVAL=7;BYMINUTE=5", datetime(2026, 1, 1, 3, 0))
    moved = anchor_for(hourly, local)
    assert moved <= local < moved + timedelta(hours=7) and (moved - datetime(2026, 1, 1, 3)) % timedelta(hours=7) == (
        timedelta(0)
    )
    counted = parse_rule("RRULE:FREQ=HOURLY;COUNT=9000", datetime(2026, 1, 1))
    assert anchor_for(counted, local) == datetime(2026, 1, 1)
    later = parse_rule("RRULE:FREQ=DAILY", datetime(2027, 1, 1))
    assert anchor_for(later, local) == datetime(2027, 1, 1)


def runs(**schedule: Any) -> tuple[str, list[str], Any]:
    found = read_schedule(**schedule)
    assert found is not None
    return found.shown, [utc_z(r) for r in found.next_runs(AFTER, 3)], found


def test_rrule_lines_read_alike_with_and_without_their_prefix() -> None:
    with_prefix = runs(recurrence="RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0", zone="America/New_York")
    without = runs(recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", zone="America/New_York")
    assert with_prefix[:2] == without[:2]
    assert with_prefix[0] == "every day at 06:00 America/New_York"
    assert with_prefix[1] == ["2026-12-07T11:00:00Z", "2026-12-08T11:00:00Z", "2026-12-09T11:00:00Z"]


def test_a_multi_line_recurrence_is_read_in_its_dtstart_zone_with_its_exdates_and_rdates() -> None:
    text = (
        "DTSTART;TZID=Europe/Zurich:20260301T020000\nRRULE:FREQ=WEEKLY;BYDAY=MO,TH\n"
        "EXDATE;TZID=Europe/Zurich:20261207T020000"
    )
    words, next_runs, schedule = runs(recurrence=text, zone="UTC")
    assert schedule.zone == "Europe/Zurich" and schedule.form == "recurrence"
    assert words == "every week on Mon, Thu at 02:00, except 2026-12-07 02:00, from 2026-03-01 Europe/Zurich"
    # Monday 7 December is skipped: Thursday 10th, Monday 14th, Thursday 17th (02:00 CET = 01:00 UTC).
    assert next_runs == ["2026-12-10T01:00:00Z", "2026-12-14T01:00:00Z", "2026-12-17T01:00:00Z"]
    utc_start = "DTSTART:20260101T060000Z\nRRULE:FREQ=HOURLY;INTERVAL=7\nRDATE:20261206T190100Z"
    words, next_runs, _ = runs(recurrence=utc_start, zone="Europe/London")
    assert words.startswith("every 7 hours; also 2026-12-06 19:01") and next_runs[0] == "2026-12-06T19:01:00Z"


def test_intervals_with_an_offset_a_bare_duration_and_a_count() -> None:
    words, next_runs, _ = runs(interval="R/2026-11-01T06:00:00Z/PT4H", zone="Europe/Zurich")
    assert words == "every 4 hours from 2026-11-01 07:00 Europe/Zurich"
    assert next_runs == ["2026-12-06T22:00:00Z", "2026-12-07T02:00:00Z", "2026-12-07T06:00:00Z"]
    offset = runs(interval="R/2026-11-01T08:00:00+02:00/PT4H", zone="Europe/Zurich")
    assert offset[1] == next_runs
    words, next_runs, bare = runs(interval="PT15M", created="2026-10-01T10:03:11.000Z")
    assert next_runs == ["2026-12-06T18:03:11Z", "2026-12-06T18:18:11Z", "2026-12-06T18:33:11Z"]
    assert "counted from the task's creation" in bare.note
    _, _, unanchored = runs(interval="PT15M")
    assert not unanchored.readable and "no start" in unanchored.shown and unanchored.next_runs(AFTER, 3) == []
    words, next_runs, _ = runs(interval="R3/2026-12-05T06:30:00/P1D", zone="Asia/Tokyo")
    assert words == "every day at 06:30, 3 times from 2026-12-05 06:30 Asia/Tokyo"
    assert next_runs == ["2026-12-06T21:30:00Z"]


def test_an_interval_counted_back_from_its_end() -> None:
    words, next_runs, _ = runs(interval="R3/P1D/2026-12-10T06:00:00", zone="Europe/Zurich")
    # Three daily intervals ending at 10 December 06:00: runs start them on the 7th, 8th and 9th.
    assert words == "every day at 06:00, 3 times up to 2026-12-09 06:00 Europe/Zurich"
    assert next_runs == ["2026-12-07T05:00:00Z", "2026-12-08T05:00:00Z", "2026-12-09T05:00:00Z"]
    _, open_ended, _ = runs(interval="R/PT4H/2026-12-08T00:00:00Z", created="2026-12-01T01:00:00Z")
    assert open_ended == ["2026-12-06T20:00:00Z", "2026-12-07T00:00:00Z", "2026-12-07T04:00:00Z"]
    months = read_schedule(interval="R/P1M/2027-01-01T00:00:00")
    assert months is not None and not months.readable and "no fixed length" in months.shown


@pytest.mark.parametrize(
    ("expression", "zone", "words", "first"),
    [
        ("*/15 * * * *", "UTC", "every 15 minutes UTC (cron */15 * * * *)", "2026-12-06T18:15:00Z"),
        (
            "0 6 * * 1-5",
            "Europe/Zurich",
            "at 06:00 on weekdays Europe/Zurich (cron 0 6 * * 1-5)",
            "2026-12-07T05:00:00Z",
        ),
        ("30 2 1,15 * MON", "UTC", "at 02:30 on Mon or on day 1, 15 of the month UTC", "2026-12-07T02:30:00Z"),
        ("0 0/15 * * * ?", "UTC", "every 15 minutes UTC (cron 0 0/15 * * * ?)", "2026-12-06T18:15:00Z"),
        ("0 0 8 ? * 2", "UTC", "at 08:00 on Mon UTC", "2026-12-07T08:00:00Z"),  # Quartz: 2 is Monday
        ("@daily", "Asia/Tokyo", "every day at 00:00 Asia/Tokyo", "2026-12-07T15:00:00Z"),
    ],
)
def test_cron_in_words_with_its_next_run(expression: str, zone: str, words: str, first: str) -> None:
    shown, next_runs, schedule = runs(cron_expression=expression, zone=zone)
    assert shown.startswith(words) and next_runs[0] == first and schedule.form == "cron"


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron_expression": "0 6 L * *"},
        {"cron_expression": "every morning"},
        {"recurrence": "garbage"},
        {"recurrence": "RRULE:FREQ=SOMETIMES"},
        {"interval": "R/2026-02-30T06:00:00/P1D"},
        {"interval": "P1M2D", "start": "2026-01-01T00:00:00"},
        {"recurrence": "RRULE:FREQ=DAILY", "zone": "Mars/Olympus"},
    ],
)
def test_a_schedule_that_cannot_be_read_is_shown_raw_with_why(schedule: dict[str, Any]) -> None:
    found = read_schedule(**schedule)
    assert found is not None and not found.readable and found.next_runs(AFTER, 3) == []
    raw = next(v for k, v in schedule.items() if k != "zone" and k != "start")
    assert found.shown.startswith(raw) and "(not read: " in found.shown


# Through an MCP client, against the sandbox ---------------------------------------------------------------------


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = make_harness(toolsets="tasks,ops,reload")
    tables(harness).run_seconds = 0.3
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)


@pytest.fixture
async def v1() -> AsyncIterator[Harness]:
    harness = make_harness(toolsets="tasks,ops")
    tables(harness).scheduling_gone = True
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)


def tables(h: Harness) -> TaskTables:
    return h.sandbox.tables["tasks"]


def scheduled(h: Harness) -> list[dict[str, Any]]:
    return [t for t in tables(h).tasks.values() if (t.get("start") or {}).get("schedule")]


def form_of(task: dict[str, Any]) -> str:
    schedule = task["start"]["schedule"]
    if isinstance(schedule, str):
        return "bare string"
    if "recurrence" in schedule:
        text = schedule["recurrence"]
        return "multi-line" if "\n" in text else "rrule" if text.startswith("RRULE:") else "no prefix"
    if "cron" in schedule:
        return "cron object" if isinstance(schedule["cron"], dict) else "cron"
    return "interval Z" if "Z/" in schedule["interval"] else "interval"


def test_the_sandbox_seeds_every_form_with_uuid_ids() -> None:
    h = make_harness(toolsets="tasks")
    forms = {form_of(t) for t in scheduled(h)}
    assert forms >= {"bare string", "multi-line", "rrule", "no prefix", "cron", "cron object", "interval", "interval Z"}
    uuid = sandbox_schedule.re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert all(uuid.match(task_id) for task_id in tables(h).tasks)


def test_the_sandbox_reads_every_seeded_form_as_the_client_does() -> None:
    h = make_harness(toolsets="tasks")
    for task in scheduled(h):
        schedule = task["start"]["schedule"]
        created = datetime.fromisoformat(task["metadata"]["createdAt"].replace("Z", "+00:00"))
        theirs = sandbox_schedule.task_runs(schedule, created, after=AFTER, before=AFTER + timedelta(days=30), limit=3)
        body = {"interval": schedule} if isinstance(schedule, str) else schedule
        cron = body.get("cron")
        ours = read_schedule(
            recurrence=body.get("recurrence"),
            interval=body.get("interval"),
            cron_expression=cron.get("expression") if isinstance(cron, dict) else cron,
            zone=body.get("timezone"),
            start=body.get("startDateTime"),
            end=(cron.get("validUntil") if isinstance(cron, dict) else None) or body.get("endDateTime"),
            created=task["metadata"]["createdAt"],
        )
        assert ours is not None and ours.readable, (task["name"], ours)
        assert [utc_z(r) for r in ours.next_runs(AFTER, 3)] == [utc_z(r) for r in theirs], task["name"]


@pytest.mark.anyio
async def test_list_tasks_shows_every_form_in_words_with_a_next_run(h: Harness) -> None:
    async with h.client() as client:
        page = data(await client.call_tool("list_tasks", {"limit": 100}))
    rows = {row["id"]: row for row in page["tasks"]}
    for task in scheduled(h):
        row = rows[task["id"]]
        assert row["trigger"].startswith(("every ", "at "))
        assert "RRULE" not in row["trigger"] and "R/" not in row["trigger"] and "DTSTART" not in row["trigger"]
        # A run it will not make is no next run: the row says why instead ("enabled": false, or will_not_run).
        assert row.get("next_run") or row.get("will_not_run") or (not task["enabled"] and not row["enabled"]), row
        assert not (row.get("next_run") and row.get("will_not_run")), row


@pytest.mark.anyio
async def test_get_task_shows_words_and_next_runs_for_each_form(h: Harness) -> None:
    async with h.client() as client:
        for task in scheduled(h):
            if not task["enabled"]:
                continue
            got = data(await client.call_tool("get_task", {"task_id": task["id"]}))["task"]
            assert got["trigger"] and len(got["next_runs"]) == 3, (form_of(task), got)
            assert all(run.endswith("Z") and " = " in run for run in got["next_runs"])
            if form_of(task) == "bare string":
                assert "creation" in got["schedule_note"]


@pytest.mark.anyio
async def test_a_schedule_that_cannot_be_read_never_fails_a_list_or_the_overview(h: Harness) -> None:
    task = next(t for t in scheduled(h) if t["enabled"] and form_of(t) == "interval")
    task["start"]["schedule"] = {"cron": "0 6 L * *", "timezone": "UTC"}
    async with h.client() as client:
        page = data(await client.call_tool("list_tasks", {"limit": 100}))
        row = next(r for r in page["tasks"] if r["id"] == task["id"])
        assert row["trigger"].startswith("0 6 L * * (not read: cron day field")
        assert row["will_not_run"].startswith("its schedule could not be read")
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": task["resourceId"]}))
        item = next(i for i in overview["items"] if i["id"] == task["id"])
        assert "not read" in item["schedule"] and "could not be read" in item["will_not_run"]
        explained = data(await client.call_tool("explain_schedule", {"kind": "task", "task_id": task["id"]}))
        assert explained["next_runs"] == [] and "could not be read" in explained["note"]


@pytest.mark.anyio
async def test_the_overview_reads_multi_line_recurrences(h: Harness) -> None:
    multi_line = [t for t in scheduled(h) if form_of(t) == "multi-line"]
    for task in multi_line:  # owned, in the seed, by a deleted user: owned here by an active one
        task["metadata"]["ownerId"] = h.sandbox.caller_id
    app = multi_line[0]["resourceId"]
    async with h.client() as client:
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": app}))
    multi = [i for i in overview["items"] if i["schedule"] and "except" in i["schedule"]]
    assert multi and all(i["next_runs"] and "will_not_run" not in i for i in multi)


@pytest.mark.anyio
async def test_explain_schedule_takes_an_interval_with_z(h: Harness) -> None:
    args = {"interval": "R/2026-11-01T06:00:00Z/PT4H", "time_zone": "Europe/Zurich", "count": 3}
    async with h.client() as client:
        explained = data(await client.call_tool("explain_schedule", args))
        bare = await client.call_tool("explain_schedule", {"interval": "PT15M"})
    assert explained["description"] == "every 4 hours from 2026-11-01 07:00 Europe/Zurich"
    assert all(run["utc"][11:13] in ("02", "06", "10", "14", "18", "22") for run in explained["next_runs"])
    assert "has no start" in error_text(bare)


@pytest.mark.anyio
async def test_the_overview_says_reload_tasks_of_an_app_with_tasks_will_not_run(h: Harness) -> None:
    reload_tasks = h.sandbox.tables["reload_tasks"]
    with_tasks = {t["resourceId"] for t in tables(h).tasks.values()}
    doc = next(t for t in reload_tasks.values() if t["appId"] in with_tasks and t["state"] == "Enabled")
    async with h.client() as client:
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": doc["appId"]}))
    item = next(i for i in overview["items"] if i["id"] == doc["id"])
    assert item["enabled"] is False and "next_runs" not in item
    assert "changelog 135" in item["will_not_run"]


@pytest.mark.anyio
async def test_update_task_keeps_start_and_end_unless_given_on_the_scheduling_api(h: Harness) -> None:
    task = next(t for t in scheduled(h) if form_of(t) == "rrule")
    task["start"]["schedule"] |= {"startDateTime": "2027-03-01T06:00:00", "endDateTime": "2028-01-01T00:00:00"}
    new = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=7;BYMINUTE=0"]}
    async with h.client() as client:
        preview = data(await client.call_tool("update_task", {"task_id": task["id"], "schedule": new}))
        assert not [c for c in preview["changes"] if c.startswith(("schedule start", "schedule end"))]
        assert not any("RRULE" in c for c in preview["changes"])
        args = {"task_id": task["id"], "schedule": new, "confirm_token": preview["confirm_token"]}
        data(await client.call_tool("update_task", args))
        kept = tables(h).tasks[task["id"]]["start"]["schedule"]
        assert (kept["startDateTime"], kept["endDateTime"]) == ("2027-03-01T06:00:00", "2028-01-01T00:00:00")
        cleared = data(await client.call_tool("update_task", {"task_id": task["id"], "schedule": new | {"end": ""}}))
    assert "schedule end: 2028-01-01T00:00:00 -> (none)" in cleared["changes"]
    assert not any(c.startswith("schedule start") for c in cleared["changes"])


@pytest.mark.anyio
async def test_update_task_keeps_start_and_end_unless_given_on_v1(v1: Harness) -> None:
    task = next(t for t in scheduled(v1) if form_of(t) == "interval" and t["enabled"])
    task["start"]["schedule"] |= {"startDateTime": "2026-02-01T00:00:00", "endDateTime": "2028-01-01T00:00:00"}
    new = {"interval": "R/2026-02-01T05:00:00Z/PT12H"}
    async with v1.client() as client:
        preview = data(await client.call_tool("update_task", {"task_id": task["id"], "schedule": new}))
        assert any(c.startswith("schedule: ") and "every 12 hours" in c for c in preview["changes"])
        args = {"task_id": task["id"], "schedule": new, "confirm_token": preview["confirm_token"]}
        data(await client.call_tool("update_task", args))
        never = {"task_id": task["id"], "schedule": new | {"end": ""}}
        cleared = data(await client.call_tool("update_task", never))
        data(await client.call_tool("update_task", never | {"confirm_token": cleared["confirm_token"]}))
    puts = [x.request_body["start"]["schedule"] for x in v1.recorder.exchanges if x.method == "PUT"]
    assert puts[0]["interval"] == "R/2026-02-01T05:00:00Z/PT12H"
    assert (puts[0]["startDateTime"], puts[0]["endDateTime"]) == ("2026-02-01T00:00:00", "2028-01-01T00:00:00")
    assert "schedule end: 2028-01-01T00:00:00 -> (none)" in cleared["changes"]
    assert "endDateTime" not in puts[1] and puts[1]["startDateTime"] == "2026-02-01T00:00:00"


@pytest.mark.anyio
async def test_a_seeded_task_can_be_followed_and_its_dependencies_go_both_ways(h: Harness) -> None:
    upstream = next(t for t in scheduled(h) if t["enabled"])
    async with h.client() as client:
        made = data(
            await client.call_tool(
                "create_task",
                {
                    "name": "After the seeded one",
                    "app_id": upstream["resourceId"],
                    "after_task": {"task_id": upstream["id"]},
                },
            )
        )["task"]
        both = data(await client.call_tool("get_task_dependencies", {"task_id": made["id"]}))
    assert [(t["id"], t["side"]) for t in both["tasks"]] == [(upstream["id"], "upstream")]
    assert "lead to this one" in both["note"] and "Nothing runs after this task." in both["note"]


@pytest.mark.anyio
async def test_find_failures_never_presents_a_reload_as_a_task() -> None:
    h = make_harness(toolsets="tasks,ops,reloads")
    async with h.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 72}))
    await h.backend.aclose()
    assert any(g["kind"] == "task" and g.get("ref_kind") == "reload" for g in report["groups"])
    reloads = h.sandbox.tables["reloads"].reloads
    for group in report["groups"]:
        if group["kind"] == "task":
            assert group["task_id"] in tables(h).tasks and group["task_id"] not in reloads
        if group.get("ref"):
            assert group["ref_kind"] in ("reload", "run")
            assert (group["ref"] in reloads) is (group["ref_kind"] == "reload")


@pytest.mark.anyio
async def test_reload_task_rows_say_qlik_turned_them_off_when_their_app_has_tasks(h: Harness) -> None:
    with_tasks = {t["resourceId"] for t in tables(h).tasks.values()}
    doc = next(
        t for t in h.sandbox.tables["reload_tasks"].values() if t["appId"] in with_tasks and t["state"] == "Enabled"
    )
    async with h.client() as client:
        page = data(await client.call_tool("list_reload_tasks", {"app_id": doc["appId"]}))
    row = next(r for r in page["tasks"] if r["id"] == doc["id"])
    assert "changelog 135" in row["will_not_run"] and "RRULE" not in row["schedule"]


@pytest.mark.anyio
async def test_a_sharing_schedule_change_reads_in_words() -> None:
    harness = make_harness(toolsets="sharing")
    stored = sharing_tables(harness.sandbox).tasks
    task = next(t for t in stored.values() if t["type"] == "sheet-sharing" and t.get("statusCode") == "VALID")
    daily = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "Europe/Zurich"}
    async with harness.client() as client:
        moved = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "schedule": daily}))
    await harness.backend.aclose()
    change = next(c for c in moved["changes"] if c.startswith("schedule: "))
    assert "-> every day at 06:00 Europe/Zurich, from " in change and "RRULE" not in change


@pytest.mark.anyio
async def test_explain_and_get_say_a_reload_task_of_an_app_with_tasks_will_not_run(h: Harness) -> None:
    with_tasks = {t["resourceId"] for t in tables(h).tasks.values()}
    reload_tasks = h.sandbox.tables["reload_tasks"].values()
    doc = next(t for t in reload_tasks if t["appId"] in with_tasks and t["state"] == "Enabled")
    alone = next((t for t in reload_tasks if t["appId"] not in with_tasks and t["state"] == "Enabled"), None)
    async with h.client() as client:
        explained = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": doc["id"]}))
        got = data(await client.call_tool("get_reload_task", {"task_id": doc["id"]}))["task"]
        other = alone and data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": alone["id"]}))
    assert explained["next_runs"] and "changelog 135" in explained["note"]
    assert "changelog 135" in got["will_not_run"] and got["schedule"] and "RRULE" not in got["schedule"]
    assert other is None or "changelog 135" not in (other.get("note") or "")


@pytest.mark.anyio
async def test_find_failures_names_the_task_that_started_a_reload_and_says_when_there_is_none() -> None:
    from qlik_tasks_mcp.sandbox import reloads as sandbox_reloads

    h = make_harness(toolsets="tasks,ops,reloads")
    task = next(t for t in scheduled(h) if t["enabled"])
    at = h.sandbox.clock.now() - timedelta(hours=2)
    ghost = "00000000-0000-4000-8000-000000000000"
    for resource in (task["id"], ghost):
        sandbox_reloads.start_reload(
            h.sandbox,
            task["resourceId"],
            type="choreographer",
            resource_type="tasks",
            resource_id=resource,
            outcome="FAILED",
            at=at,
            seconds=5,
        )
    async with h.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24}))
    await h.backend.aclose()
    groups = {g["task_id"]: g for g in report["groups"] if g["kind"] == "task"}
    assert groups[task["id"]]["name"] == task["name"] and groups[task["id"]]["ref_kind"] == "reload"
    assert groups[ghost]["name"] == f"task {ghost} (no task of this id is visible to this key)"


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron": "0 9 * * SUN-TUE", "timezone": "Europe/Zurich"},
        {"cron": "0 9 * JAN-MAR,DEC MON"},
        {"cron": "15 */6 1-7 * *", "timezone": "America/New_York"},
        {"cron": "30 2 1,15 * 0"},
        {"interval": "R/2026-03-29T00:30:00/PT1H", "timezone": "Europe/Zurich"},
        {"interval": "R5/2026-12-06T08:00:00Z/P1D", "timezone": "Asia/Tokyo"},
        {"recurrence": "RRULE:FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=23;BYMINUTE=0", "timezone": "Europe/London"},
        {"interval": "R/PT4H/2026-12-08T00:00:00Z", "timezone": "Europe/Zurich"},
        {"interval": "R3/P1D/2026-12-10T06:00:00", "timezone": "Europe/Zurich"},
    ],
)
def test_the_sandbox_and_the_client_agree_on_next_runs(schedule: dict[str, Any]) -> None:
    created = AFTER - timedelta(days=30)
    theirs = sandbox_schedule.task_runs(schedule, created, after=AFTER, before=AFTER + timedelta(days=400), limit=4)
    cron = schedule.get("cron")
    ours = read_schedule(
        recurrence=schedule.get("recurrence"),
        interval=schedule.get("interval"),
        cron_expression=cron,
        zone=schedule.get("timezone"),
        created=utc_z(created),
    )
    assert ours is not None and [utc_z(r) for r in ours.next_runs(AFTER, 4)] == [utc_z(r) for r in theirs]


HOSTILE_SCHEDULES: list[dict[str, Any]] = [
    {"recurrence": "RRULE:"},
    {"recurrence": "RRULE:FREQ=DAILY;BYHOUR=99"},
    {"recurrence": "DTSTART;TZID=Nowhere/Land:20260101T000000\nRRULE:FREQ=DAILY"},
    {"recurrence": "DTSTART:2026\nRRULE:FREQ=DAILY"},
    {"recurrence": "EXDATE:notadate\nRRULE:FREQ=DAILY"},
    {"recurrence": "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"},
    {"recurrence": "RRULE:FREQ=DAILY", "timezone": "Bad/Zone"},
    {"recurrence": "RRULE:FREQ=DAILY", "startDateTime": "garbage", "endDateTime": "2026-13-01T00:00:00"},
    {"interval": "R/x/y"},
    {"interval": "P"},
    {"interval": "R/P1M/2027-01-01T00:00:00Z"},
    {"cron": "* * *"},
    {"cron": {"expression": "61 * * * *", "validUntil": "never"}},
]


@pytest.mark.anyio
@pytest.mark.parametrize("schedule", HOSTILE_SCHEDULES)
async def test_no_stored_schedule_fails_a_read_tool(h: Harness, schedule: dict[str, Any]) -> None:
    task = next(t for t in scheduled(h) if t["enabled"])
    task["start"]["schedule"] = schedule
    async with h.client() as client:
        page = data(await client.call_tool("list_tasks", {"limit": 100}))
        row = next(r for r in page["tasks"] if r["id"] == task["id"])
        got = data(await client.call_tool("get_task", {"task_id": task["id"]}))["task"]
        overview = await client.call_tool("get_app_schedule_overview", {"app_id": task["resourceId"]})
        explained = await client.call_tool("explain_schedule", {"kind": "task", "task_id": task["id"]})
    assert row["trigger"] and got["trigger"] == row["trigger"]
    assert row.get("next_run") or row.get("will_not_run"), row
    assert not overview.is_error, overview.content
    # explain_schedule may refuse a rule with no run in 40 years, in one line that says why.
    assert not explained.is_error or "no occurrence in the next 40 years" in error_text(explained)


@pytest.mark.anyio
async def test_a_task_whose_owner_the_tenant_says_is_deleted_will_not_run(h: Harness) -> None:
    task = next(t for t in scheduled(h) if form_of(t) == "multi-line")
    async with h.client() as client:
        page = data(await client.call_tool("list_tasks", {"limit": 100}))
        row = next(r for r in page["tasks"] if r["id"] == task["id"])
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": task["resourceId"]}))
    item = next(i for i in overview["items"] if i["id"] == task["id"])
    assert row["owner"].endswith("(deleted)")
    assert row["will_not_run"] == "owner deleted" and "next_run" not in row
    assert "Qlik runs a task as its owner" in page["note"]
    assert "(deleted) is gone" in item["will_not_run"]


STALE = "nothing scheduled reloads app"


def app_id_named(h: Harness, name: str) -> str:
    return next(a.id for a in h.sandbox.apps.values() if a.name == name)


@pytest.mark.anyio
async def test_previews_warn_when_an_app_would_be_left_unreloaded_while_its_subscriptions_send() -> None:
    h = make_harness()
    only = next(t for t in tables(h).tasks.values() if t["resourceId"] == app_id_named(h, "Finance P&L"))
    one_of_four = next(t for t in tables(h).tasks.values() if t["resourceId"] == app_id_named(h, "Web Analytics"))
    async with h.client() as client:
        disabling = data(await client.call_tool("update_task", {"task_id": only["id"], "enabled": False}))
        deleting = data(await client.call_tool("delete_task", {"task_id": only["id"]}))
        others_run = data(await client.call_tool("update_task", {"task_id": one_of_four["id"], "enabled": False}))
    await h.backend.aclose()
    warning = next(n for n in disabling["notes"] if STALE in n)
    assert "3 subscription(s)" in warning and "'Finance P&L snapshot (sheet-sharing)'" in warning
    assert any(STALE in n and "not documented" in n for n in deleting["notes"])
    assert not any(STALE in n for n in others_run["notes"])


@pytest.mark.anyio
async def test_a_reload_task_preview_warns_too_and_nothing_is_said_when_subscriptions_cannot_be_seen() -> None:
    h = make_harness()
    with_tasks = {t["resourceId"] for t in tables(h).tasks.values()}
    doc = next(t for t in h.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
    for task_id in [t["id"] for t in tables(h).tasks.values() if t["resourceId"] == doc["appId"]]:
        del tables(h).tasks[task_id]  # the app has no tasks: its reload task is what reloads it
    assert doc["appId"] in with_tasks
    sharing = sharing_tables(h.sandbox).tasks.values()
    assert any(s.get("appId") == doc["appId"] for s in sharing)
    blind = make_harness(toolsets="reload,tasks", share_with=h)
    async with h.client() as client, blind.client() as other:
        preview = data(await client.call_tool("update_reload_task", {"task_id": doc["id"], "enabled": False}))
        unseen = data(await other.call_tool("update_reload_task", {"task_id": doc["id"], "enabled": False}))
    await h.backend.aclose()
    await blind.backend.aclose()
    assert any(STALE in n for n in preview["notes"])
    assert not any(STALE in n for n in unseen["notes"])
