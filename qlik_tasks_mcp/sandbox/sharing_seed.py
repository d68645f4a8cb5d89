"""Seeded sharing tasks: every type, a few days of executions, and the troubled cases an admin meets.

Tests find the cases by content, not by id: a task whose recipients hold `nobody@bounce.invalid` (it fails
delivery to that address), tasks with `taskErrors` whose last runs failed (one for a single recipient, one for
every recipient: `statusCode` FAILED), `enabledByUser` false, `enabledBySystem` false, and one task in
`statusCode` DELETING. What a task shows of its deliveries (failedExecutionsCount, recipient errors, FAILED) is
worked out from its executions when it is read (sharing_tasks.show_deliveries), never stored here.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from qlik_tasks_mcp.sandbox.core import TENANT_ID, App, Sandbox
from qlik_tasks_mcp.sandbox.schedule import zone_of
from qlik_tasks_mcp.sandbox.sharing_fields import persisted_recipients
from qlik_tasks_mcp.sandbox.sharing_tasks import BASE, stamp, start_execution, tables

COUNT = 30
BAD_ADDRESS = "nobody@bounce.invalid"
# The type of task i is KINDS[i % 5]: sheet reports are the common case, as on real tenants.
KINDS = ["sheet-sharing", "chart-sharing", "sheet-sharing", "chart-monitoring", "template-sharing"]
NAMES = {
    "sheet-sharing": ["{app} pack", "{app} review", "{app} snapshot"],
    "chart-sharing": ["{app}: top-line chart", "{app}: trend for the board", "{app}: regional split"],
    "chart-monitoring": ["Watch {app} KPI", "{app} threshold monitor", "{app} anomaly watch"],
    "template-sharing": ["{app} board report", "{app} regional report", "{app} monthly report"],
}
SCHEDULES = [
    ("Europe/Zurich", "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;BYHOUR=7;BYMINUTE=0;BYSECOND=0"),
    ("America/New_York", "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=30;BYSECOND=0"),
    ("UTC", "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1;BYHOUR=5;BYMINUTE=0;BYSECOND=0"),
    ("Asia/Singapore", "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,WE,FR;BYHOUR=8;BYMINUTE=0;BYSECOND=0"),
]
GROUPS = ["Sales managers", "Finance leads", "Regional directors"]
OUTSIDE = ["cfo@partner-example.com", "board@holding-example.com", "auditor@audit-example.com"]
# index -> what is wrong with the seeded task: its task error, its executions' error code, and whether its last
# runs failed for every recipient (else only for its first)
FAILED = {
    5: ("PARTIAL_SENT", "REPORT-GENERATION-FAILED", False),
    19: ("EMAIL_DELIVERY_FAILURE", "REPORT-SEND-FAILED", True),
}
DISABLED_BY_USER = {3, 14}
DISABLED_BY_SYSTEM = 21
DELETING = 10
WITH_BAD_ADDRESS = 1
# A task of an app deleted long ago: no other family's task names it, and the tenant no longer lists it.
OF_A_LONG_GONE_APP = 27


def template(sandbox: Sandbox, kind: str, app_id: str, name: str, index: int) -> dict[str, Any]:
    alias = sandbox.hex_id(16)
    if kind == "sheet-sharing":
        sheets = [{"appId": app_id, "sheetId": sandbox.hex_id(), "sheetName": f"Sheet {n + 1}"} for n in range(2)]
        fmt = "pptx" if index % 4 == 2 else "pdf"
        return {"type": "multi-sheet", "subType": fmt, "fileName": name, "fileAlias": alias, "multiSheetData": sheets}
    if kind == "template-sharing":
        return {
            "type": "pixel-perfect",
            "subType": "pdf",
            "fileName": name,
            "fileAlias": alias,
            "templateId": sandbox.uuid(),
        }
    chart = {
        "appId": app_id,
        "sheetId": sandbox.hex_id(),
        "objectId": sandbox.hex_id(8),
        "widthPx": 1200,
        "heightPx": 800,
    }
    return {"type": "chart", "subType": "image", "fileName": name, "fileAlias": alias, "chartData": chart}


def seed(sandbox: Sandbox) -> None:
    st = tables(sandbox)
    st.groups = {sandbox.hex_id(): name for name in GROUPS}
    users, apps, groups = list(sandbox.users.values()), list(sandbox.apps.values()), list(st.groups)
    now = sandbox.clock.now()
    for index in range(COUNT):
        kind, app, owner = KINDS[index % len(KINDS)], apps[index % len(apps)], users[index % len(users)]
        if index == OF_A_LONG_GONE_APP:
            app = App(id=sandbox.hex_id(), name="Retired Forecast", space_id=app.space_id, owner_id=owner.id)
        # One name per app and round over the apps: two tasks of an app never share a name.
        name = NAMES[kind][index // len(apps) % 3].format(app=app.name)
        emails = OUTSIDE[: index % 3] + ([BAD_ADDRESS] if index == WITH_BAD_ADDRESS else [])
        recipients = persisted_recipients(
            {
                "userIds": sorted({owner.id, users[(index + 1) % len(users)].id}),
                "groupIds": groups[index % 2 : index % 2 + index % 3 // 2],
                "emailAddresses": emails,
            }
        )
        zone, rule = SCHEDULES[index % len(SCHEDULES)]
        monitoring = kind == "chart-monitoring"
        created = now - timedelta(days=40 + index)
        task_id = sandbox.hex_id()
        task: dict[str, Any] = {
            "id": task_id,
            "name": name,
            "type": kind,
            "tags": ["finance"] if index % 3 == 0 else [],
            "appId": app.id,
            "appName": app.name,
            "spaceId": app.space_id,
            "owner": owner.id,
            "ownerName": owner.name,
            "createdBy": owner.id,
            "updatedBy": owner.id,
            "tenant": TENANT_ID,
            "dateCreated": stamp(created),
            "lastUpdated": stamp(created + timedelta(days=3)),
            "description": f"{name}, sent to the {app.name} audience" if index % 2 else "",
            "state": {},
            "enabled": True,
            "enabledByUser": True,
            "enabledBySystem": True,
            "statusCode": "VALID",
            "templates": [template(sandbox, kind, app.id, name, index)],
            "recipients": recipients,
            "trigger": {"recurrence": [] if monitoring else [rule], "executeOnAppReload": monitoring},
            "scheduleOptions": {}
            if monitoring
            else {
                "timezone": zone,
                "recurrence": [rule],
                "startDateTime": created.astimezone(zone_of(zone)).strftime("%Y-%m-%dT%H:%M:%S"),
                "endDateTime": "",
            },
            "transportChannels": ["email"],
            "emailContent": {"subject": name, "body": f"Attached: {name}."},
            "retentionPolicy": {"historySize": 10 if monitoring else 5, "overrideInterval": "FREQ=DAILY;INTERVAL=1"},
            # What a real tenant returns beside the useful fields; the tools must leave these out.
            "encryptedState": {
                "value": base64.b64encode(sandbox.hex_id(32).encode()).decode(),
                "cipher": "AES-256-GCM",
            },
            "byokMigrationId": "",
            "thumbnail": f"{BASE}/{task_id}/thumbnail",
            "insightID": sandbox.hex_id(),
        }
        problem = FAILED.get(index)
        if problem:
            task["taskErrors"] = [{"value": problem[0], "timestamp": stamp(now - timedelta(days=1))}]
        if index in DISABLED_BY_USER:
            task |= {"enabled": False, "enabledByUser": False}
        if index == DISABLED_BY_SYSTEM:
            task |= {"enabled": False, "enabledBySystem": False, "statusCode": "MAX_FAILURES_REACHED"}
            task["taskErrors"] = [{"value": "OWNER_ACCESS", "timestamp": stamp(now - timedelta(days=2))}]
        if index == DELETING:
            task["statusCode"] = "DELETING"
        st.tasks[task_id] = task
        # A few days of history: one run a day, one execution per recipient; a troubled task's last runs failed.
        for day in range(1 + index % 4, 0, -1):
            error = None
            if problem and day <= 1 + index % 3:
                error = {
                    "code": problem[1],
                    "title": "Report delivery failed",
                    "detail": f"{name}: the report was not sent" if problem[2] else f"{name}: 1 of the reports failed",
                }
            at = (now - timedelta(days=day)).replace(hour=6, minute=index % 60, second=0, microsecond=0)
            every = bool(problem and problem[2])
            start_execution(sandbox, task, at=at, seconds=20 + index, error=error, every_delivery=every)
