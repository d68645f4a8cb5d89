"""Sandbox app load scripts: versions per app (`/api/v1/apps/{appId}/scripts`) and `POST /api/v1/apps/validatescript`.

Scripts are derived from the app and its defect, never stored: reading one changes no state. A failing app's
current version carries one defect (a field its QVD lacks, a file that is not there, a missing `;`); the version
before it is the last one that worked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import contract
from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import Sandbox, guarded, json_body, stamp
from qlik_tasks_mcp.sandbox.qlik_script import check

APPS = "/api/v1/apps"
SPEC = "apps.json"
err = ErrorShape("APPS")
DEFECTS = ("field", "file", "syntax")

TEMPLATE = """///$tab Main
SET ThousandSep=',';
SET DecimalSep='.';
SET MoneyFormat='$#,##0.00;-$#,##0.00';
SET TimeFormat='hh:mm:ss';
SET DateFormat='YYYY-MM-DD';
SET TimestampFormat='YYYY-MM-DD hh:mm:ss[.fff]';
SET FirstWeekDay=0;
SET CollationLocale='en-US';
LET vReloadStart = Now();
///$tab Customers
// Customer master data, refreshed nightly by the {slug} extract.
Customers:
LOAD
    CustomerID,
    CustomerName,
    Region,
    Segment
FROM [lib://DataFiles/{slug}/customers.qvd]
(qvd);
///$tab Orders
Orders:
LOAD
    OrderID,
    CustomerID,
    OrderDate,
    Currency,
    Amount
FROM [lib://DataFiles/{slug}/orders.qvd]
(qvd)
WHERE OrderDate >= '2025-01-01';

LEFT JOIN (Orders)
LOAD
    Currency,
    Rate
FROM [lib://DataFiles/{slug}/fx_rates.csv]
(txt, utf8, embedded labels, delimiter is ',');

STORE Orders INTO [lib://DataFiles/{slug}/orders_enriched.qvd] (qvd);
///$tab Calendar
MinMax:
LOAD
    Min(OrderDate) AS MinDate,
    Max(OrderDate) AS MaxDate
RESIDENT Orders;

LET vMinDate = Num(Peek('MinDate', 0, 'MinMax'));
LET vMaxDate = Num(Peek('MaxDate', 0, 'MinMax'));
DROP TABLE MinMax;

Calendar:
LOAD
    Date($(vMinDate) + IterNo() - 1) AS OrderDate,
    Year($(vMinDate) + IterNo() - 1) AS Year,
    Month($(vMinDate) + IterNo() - 1) AS Month
AUTOGENERATE 1
WHILE $(vMinDate) + IterNo() - 1 <= $(vMaxDate);

IF NoOfRows('Orders') = 0 THEN
    TRACE No orders loaded;
END IF
"""

# Each defect: what the current version changes, and the message it gets.
BREAKS = {
    "field": ("    CustomerID,\n    CustomerName,", "    CustomerKey,\n    CustomerName,", "Rename the customer key"),
    "file": ("{slug}/fx_rates.csv]", "{slug}/fx_rates_2026.csv]", "Read the 2026 exchange rates"),
    "syntax": ("delimiter is ',');\n\nSTORE", "delimiter is ',')\n\nSTORE", "Store the enriched orders"),
}


@dataclass(frozen=True)
class Version:
    script_id: str
    script: str
    message: str
    modified: datetime
    modifier_id: str


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "app"


def working_script(sandbox: Sandbox, app_id: str) -> str:
    app = sandbox.apps[app_id]
    return TEMPLATE.replace("{slug}", slug(app.name))


def broken_script(sandbox: Sandbox, app_id: str, defect: str) -> str:
    before, after, _ = BREAKS[defect]
    name = slug(sandbox.apps[app_id].name)
    return working_script(sandbox, app_id).replace(before.replace("{slug}", name), after.replace("{slug}", name), 1)


def defect_line(script: str, defect: str) -> int:
    """The script line (1-based, whole script) a reload of a broken script fails on."""
    marker = {"field": "CustomerKey", "file": "fx_rates_2026", "syntax": "STORE Orders"}[defect]
    return next(n for n, line in enumerate(script.splitlines(), start=1) if marker in line)


def versions(sandbox: Sandbox, app_id: str, defect: str | None, since: datetime) -> list[Version]:
    """Newest first. `since`: when the app's history starts; a broken version comes two days before now."""
    owner = sandbox.apps[app_id].owner_id
    key = app_id.replace("-", "")
    first = Version(f"{key[:16]}01", working_script(sandbox, app_id), "Initial load script", since, owner)
    if defect is None:
        return [first]
    _, _, message = BREAKS[defect]
    changed = sandbox.clock.now() - timedelta(days=2, hours=1)
    return [Version(f"{key[:16]}02", broken_script(sandbox, app_id, defect), message, changed, owner), first]


def _meta(version: Version) -> dict[str, object]:
    return {
        "scriptId": version.script_id,
        "size": len(version.script.encode()),
        "modifierId": version.modifier_id,
        "modifiedTime": stamp(version.modified),
        "versionMessage": version.message,
    }


# The app's versions newest first, or None for an unknown app.
VersionsOf = Callable[[str], list[Version] | None]


def routes(sandbox: Sandbox, find: VersionsOf) -> list[Route]:

    async def list_versions(request: Request) -> Response:
        found = find(request.path_params["appId"])
        if found is None:
            return err(404, "app not found")
        return JSONResponse({"scripts": [_meta(v) for v in found], "links": {}, "privileges": ["read", "update"]})

    async def one_version(request: Request) -> Response:
        found = find(request.path_params["appId"])
        if found is None:
            return err(404, "app not found")
        wanted = request.path_params["id"]
        version = found[0] if wanted == "current" else next((v for v in found if v.script_id == wanted), None)
        if version is None:
            return err(404, "script version not found")
        return JSONResponse({"script": version.script, "versionMessage": version.message})

    async def validate(request: Request) -> Response:
        body = await json_body(request)
        return JSONResponse(check(body.get("script") or ""))

    checked = contract.checker(SPEC, "Script")
    return [
        Route(APPS + "/validatescript", guarded(sandbox, "2", err, validate, body=checked), methods=["POST"]),
        Route(APPS + "/{appId}/scripts", guarded(sandbox, "1", err, list_versions), methods=["GET"]),
        Route(APPS + "/{appId}/scripts/{id}", guarded(sandbox, "1", err, one_version), methods=["GET"]),
    ]
