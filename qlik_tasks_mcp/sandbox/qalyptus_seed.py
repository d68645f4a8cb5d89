"""The sandbox's Qalyptus organizations, seeded: reports, tasks (one failing, one warning, one in test mode,
one inactive), schedules of every frequency, a Qlik event trigger, and two days of run history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from qlik_tasks_mcp.sandbox import qalyptus_contract as contract
from qlik_tasks_mcp.sandbox.core import Sandbox
from qlik_tasks_mcp.sandbox.qalyptus import (
    EU_HOST,
    EU_KEY,
    QALYPTUS_HOST,
    QALYPTUS_SANDBOX_KEY,
    Org,
    default_email,
    schedule_trigger,
    start_run,
    tables,
)


def schedule(sandbox: Sandbox, now: datetime, name: str, zone: str, **timing: Any) -> dict[str, Any]:
    """A schedule trigger as Qalyptus stores one, started 90 days ago (the history seed adds some too)."""
    start = (now - timedelta(days=90)).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    body: dict[str, Any] = {"name": name, "timeZone": zone, "startDate": contract.api_date(start, zone)}
    active = timing.pop("isActive", True)
    body |= timing
    assert not contract.problems("schedule", body) and not contract.schedule_problem(body), body
    trigger = schedule_trigger(sandbox, body, None)
    trigger["isActive"] = active
    return trigger


def _seed_org(sandbox: Sandbox, org: Org, now: datetime, specs: list[dict[str, Any]], reports: list[tuple]) -> None:
    people = list(sandbox.users.values())
    # People who left the tenant are no longer Qalyptus users either, though tasks still name them as owners.
    org.users = [{"id": p.id, "name": p.name, "email": p.email} for p in people if p.status == "active"]
    projects = {p: {"id": sandbox.uuid(), "name": p} for p in sorted({r[4] for r in reports})}
    org.projects = {p["id"]: p for p in projects.values()}
    org.groups = [
        {"id": sandbox.uuid(), "name": f"{p} managers", "members": [u["id"] for u in org.users[:2]]} for p in projects
    ]
    group_of = {g["name"]: g for g in org.groups}
    by_name: dict[str, dict[str, Any]] = {}
    for name, kind, formats, iteration, project, *outcome in reports:
        report = {
            "id": sandbox.uuid(),
            "name": name,
            "type": kind,
            "outputFormats": formats,
            "isIteration": iteration,
            "templateFile": name.lower().replace(" ", "_") + {"Word": ".docx", "Excel": ".xlsx"}.get(kind, ".html"),
            "project": projects[project],
        }
        org.reports[report["id"]] = by_name[name] = report
        if outcome:
            org.report_outcomes[report["id"]] = outcome[0]
    for index, spec in enumerate(specs):
        owner = people[index % len(people)] if people else None
        report = by_name[spec["report"]]
        task = {
            "id": sandbox.uuid(),
            "name": spec["name"],
            "description": spec.get("description", f"Distributes {spec['report']}"),
            "owner": owner.id if owner else "",
            "ownerName": owner.name if owner else "",
            "project": report["project"],
            "isActive": spec.get("active", True),
            "testMode": bool(spec.get("test")),
            "testModeRecipients": spec.get("test"),
            "sendNotifications": True,
            "notifyIfSuccess": False,
            "notifyIfWarning": True,
            "notifyIfError": True,
            "notificationRecipients": people[0].email if people else "ops@example.com",
            "notificationCc": None,
            "notificationBcc": None,
        }
        org.tasks[task["id"]] = task
        org.outcomes[task["id"]] = spec.get("outcome", "Completed")
        org.task_reports[task["id"]] = [
            {
                "id": sandbox.uuid(),
                "reportID": report["id"],
                "reportName": report["name"],
                "format": report["outputFormats"][0],
                "emailAttachment": True,
                "emailEmbedment": report["type"] == "HTML",
            }
        ]
        org.recipients[task["id"]] = [
            {"id": p.id, "type": "User", "name": p.name, "email": p.email} for p in people[: 2 + index % 3]
        ] + [{"id": group_of[f"{report['project']['name']} managers"]["id"], "type": "Group", "email": None}]
        org.emails[task["id"]] = default_email(task) | {"subject": f"{spec['report']}: your copy"}
        triggers = [schedule(sandbox, now, **s) for s in spec.get("schedules", [])]
        for event in spec.get("events", []):
            apps = list(sandbox.apps.values())
            triggers.append(
                {
                    "id": sandbox.uuid(),
                    "name": event,
                    "type": "QlikEvent",
                    "eventType": "ReloadSucceeded",
                    "qlikEvent": "app.reload.succeeded",
                    "appId": apps[index % len(apps)].id if apps else None,
                    "execution": "Queue",
                    "priority": 0,
                    "isActive": True,
                    "timeZone": "UTC",
                }
            )
        org.triggers[task["id"]] = triggers
        if task["isActive"]:
            for day in (2, 1):
                at = now - timedelta(days=day, hours=sandbox.rng.randint(0, 5))
                start_run(sandbox, org, task, at=at, by="Schedule", seconds=sandbox.rng.randint(20, 400))


MAIN_REPORTS = [
    ("Sales by Region", "Word", ["PDF", "DOCX"], True, "Sales"),
    ("Monthly P&L", "Excel", ["XLSX", "PDF"], False, "Finance"),
    ("Ops Scorecard", "Word", ["PDF"], False, "Operations", "Failed"),
    ("Executive KPIs", "HTML", ["HTML"], False, "Executive"),
    ("Inventory Aging List", "Excel", ["XLSX", "CSV"], False, "Operations"),
    ("HR Headcount Summary", "Word", ["PDF"], False, "HR"),
]
MAIN_TASKS: list[dict[str, Any]] = [
    {
        "name": "Monthly Sales Distribution",
        "report": "Sales by Region",
        "schedules": [{"name": "First of the month", "zone": "Europe/Zurich", "frequency": "Monthly", "day": 1}],
    },
    {
        "name": "Daily Finance Pack",
        "report": "Monthly P&L",
        "outcome": "Warning",
        "schedules": [{"name": "Every morning", "zone": "America/New_York", "frequency": "Daily"}],
        "events": ["After the finance reload"],
    },
    {
        "name": "Weekly Ops Scorecard",
        "report": "Ops Scorecard",
        "outcome": "Failed",
        "schedules": [
            {"name": "Mon and Thu", "zone": "Europe/London", "frequency": "Weekly", "weeklyDays": "Monday,Thursday"}
        ],
    },
    {
        "name": "Executive KPIs Hourly",
        "report": "Executive KPIs",
        "test": "ada.admin@example.com",
        "schedules": [
            {
                "name": "Office hours",
                "zone": "UTC",
                "frequency": "Hourly",
                "everyHours": 2,
                "fromHour": 8,
                "fromMinut": 0,
                "toHour": 18,
                "toMinut": 0,
            }
        ],
    },
    {
        "name": "Inventory Aging (paused)",
        "report": "Inventory Aging List",
        "active": False,
        "schedules": [{"name": "Nightly", "zone": "Europe/Zurich", "frequency": "Daily", "isActive": False}],
    },
    {
        "name": "HR Headcount Yearly",
        "report": "HR Headcount Summary",
        "schedules": [{"name": "Mid January", "zone": "Asia/Tokyo", "frequency": "Yearly", "day": 15, "month": 1}],
    },
]
EU_REPORTS = [
    ("EU Sales Digest", "Word", ["PDF"], False, "EU Sales"),
    ("EU Compliance Pack", "Excel", ["XLSX"], False, "EU Compliance"),
]
EU_TASKS: list[dict[str, Any]] = [
    {
        "name": "EU Sales Digest",
        "report": "EU Sales Digest",
        "schedules": [{"name": "Weekdays", "zone": "Europe/Paris", "frequency": "Daily"}],
    },
    {
        "name": "EU Compliance Pack",
        "report": "EU Compliance Pack",
        "outcome": "Failed",
        "schedules": [{"name": "Fridays", "zone": "Europe/Berlin", "frequency": "Weekly", "weeklyDays": "Friday"}],
    },
]


def _expand(spec: dict[str, Any]) -> dict[str, Any]:
    schedules = []
    for s in spec.get("schedules", []):
        timing = {k: v for k, v in s.items() if k not in ("name", "zone")}
        if timing["frequency"] in ("Daily", "Weekly", "Monthly", "Yearly"):
            timing |= {"atHour": 6, "atMinut": 30}
        schedules.append({"name": s["name"], "zone": s["zone"], **timing})
    return spec | {"schedules": schedules}


def seed(sandbox: Sandbox) -> None:
    qt = tables(sandbox)
    now = sandbox.clock.now()
    for name, host, key, specs, reports in (
        ("sandbox", QALYPTUS_HOST, QALYPTUS_SANDBOX_KEY, MAIN_TASKS, MAIN_REPORTS),
        ("sandbox-eu", EU_HOST, EU_KEY, EU_TASKS, EU_REPORTS),
    ):
        org = qt.orgs[host] = Org(name=name, host=host, api_key=key)
        _seed_org(sandbox, org, now, [_expand(s) for s in specs], reports)
