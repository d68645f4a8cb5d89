"""Sandbox `/api/v1/reloads` and what the apps API keeps of reloads (script logs, metadata), per reloads.json and
apps.json.

A reload is stored with its creation time, length and outcome fixed up front; every read derives its status from
the sandbox clock (QUEUED, then RELOADING, then SUCCEEDED or FAILED), so reads never change state. A reload fails
when its app's current script has a defect (sandbox.app_scripts): its log runs the script statement by statement,
with the script's own line numbers, and ends on the error at the defect's line.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import app_scripts, contract
from qlik_tasks_mcp.sandbox.core import TENANT_ID, Sandbox, guarded, json_body, stamp
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit, self_link
from qlik_tasks_mcp.sandbox.reload_logs import error_message, log_lines, metadata

BASE = "/api/v1/reloads"
APPS = "/api/v1/apps"
SPEC = "reloads.json"
TABLE = "reloads"
CURSORS = Cursors(next="next", prev="prev")
ACTIVE = ("QUEUED", "RELOADING", "CANCELING")
SORTS = {"creationTime", "status", "startTime", "endTime"}
DEFAULT_RUN_SECONDS = 1.5
QUEUED_SHARE = 0.2  # of a run's length spent QUEUED
CANCELING_SECONDS = 0.3
SAVED = "App saved\nFinished successfully\n"
METADATA_KEPT = 10  # Qlik keeps the metadata of an app's last 10 reloads
# The sandbox's own error codes: reloads.json confirms RELOADS-003 (forbidden) only.
CODES = {400: "RELOADS-001", 401: "RELOADS-002", 403: "RELOADS-003", 404: "RELOADS-004", 409: "RELOADS-009"}
CODES |= {429: "RELOADS-012"}
# Who starts seeded reloads, in turn: (type, resourceType).
STARTERS = [
    ("chronos", "reload-tasks"),
    ("choreographer", "tasks"),
    ("hub", None),
    ("external", "api"),
    ("automations", "automate"),
]


@dataclass
class ReloadTables:
    """This family's state. `defects`: app id -> what breaks its current script; `run_seconds`: a reload's length."""

    reloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_app: dict[str, list[str]] = field(default_factory=dict)
    defects: dict[str, str] = field(default_factory=dict)
    run_seconds: float = DEFAULT_RUN_SECONDS
    history_start: datetime | None = None


def tables(sandbox: Sandbox) -> ReloadTables:
    found = sandbox.tables.get(TABLE)
    if not isinstance(found, ReloadTables):
        found = sandbox.tables[TABLE] = ReloadTables()
    return found


def err(status: int, detail: str, title: str | None = None) -> Response:
    title = title or contract.TITLES.get(status, "Error")
    error = {"code": CODES.get(status, f"RELOADS-{status}"), "title": title, "detail": detail}
    return JSONResponse({"errors": [error]}, status_code=status)


# Status from the clock ---------------------------------------------------------------------------------


def started_at(reload: dict[str, Any]) -> datetime:
    return reload["_created"] + timedelta(seconds=reload["_seconds"] * QUEUED_SHARE)


def finished_at(reload: dict[str, Any]) -> datetime:
    """When it ended or will end, cancelling included."""
    canceled = reload.get("_canceled")
    if canceled is not None:
        return canceled if canceled <= started_at(reload) else canceled + timedelta(seconds=CANCELING_SECONDS)
    return reload["_created"] + timedelta(seconds=reload["_seconds"])


def status_at(reload: dict[str, Any], now: datetime) -> str:
    canceled = reload.get("_canceled")
    if now >= finished_at(reload):
        return "CANCELED" if canceled is not None else reload["_outcome"]
    if canceled is not None and now >= canceled:
        return "CANCELING"
    return "QUEUED" if now < started_at(reload) else "RELOADING"


def summary_log(reload: dict[str, Any], status: str) -> str:
    """The short `log` of a Reload (the script log proper is in the apps API)."""
    head = f"ReloadID: {reload['id']}\nStarted loading\n"
    if status in ACTIVE:
        return head
    if status == "SUCCEEDED":
        return f"{head}(A detailed script progress log can be downloaded when the reload is finished)\n{SAVED}"
    if status == "CANCELED":
        return head + "Reload was canceled\n"
    return head + f"The following error occurred:\n{reload['_error']}\nExecution Failed\n"


def public(request: Request, reload: dict[str, Any], now: datetime, *, with_log: bool) -> dict[str, Any]:
    out = {k: v for k, v in reload.items() if not k.startswith("_")}
    status = status_at(reload, now)
    out["status"] = status
    out["creationTime"] = stamp(reload["_created"])
    if status != "QUEUED" and not (status == "CANCELED" and finished_at(reload) <= started_at(reload)):
        out["startTime"] = stamp(started_at(reload))
    if status not in ACTIVE:
        out["endTime"] = stamp(finished_at(reload))
    if status == "SUCCEEDED":
        out["engineTime"] = stamp(finished_at(reload) - timedelta(milliseconds=120))
    if status == "FAILED":
        out["errorCode"] = "EngineScriptError"  # the sandbox's own; Qlik's codes for script errors are not published
        out["errorMessage"] = reload["_error"]
    if with_log:
        out["log"] = summary_log(reload, status)
    out["links"] = self_link(request, f"{BASE}/{reload['id']}")
    return out


# Starting reloads --------------------------------------------------------------------------------------


def reload_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def start_reload(
    sandbox: Sandbox,
    app_id: str,
    *,
    type: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
    outcome: str | None = None,
    at: datetime | None = None,
    partial: bool = False,
    weight: int = 1,
    user_id: str | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Store a reload of `app_id` created `at` (default now). `outcome` SUCCEEDED or FAILED; default: FAILED when
    the app's current script is broken. A forced failure of a working app fails on a missing file."""
    st = tables(sandbox)
    defect = st.defects.get(app_id)
    if outcome == "SUCCEEDED":
        defect = None
    elif outcome == "FAILED" and defect is None:
        defect = "file"
    new_id = reload_id(sandbox.rng)
    reload: dict[str, Any] = {
        "id": new_id,
        "appId": app_id,
        "tenantId": TENANT_ID,
        "userId": user_id or sandbox.caller_id,
        "type": type,
        "partial": partial,
        "weight": weight,
        "_created": at or sandbox.clock.now(),
        "_seconds": st.run_seconds if seconds is None else seconds,
        "_outcome": "FAILED" if defect else "SUCCEEDED",
        "_defect": defect,
        "_error": error_message(app_scripts.broken_script(sandbox, app_id, defect), defect) if defect else "",
        "_canceled": None,
    }
    if resource_type:
        reload["resourceType"] = resource_type
    if resource_id:
        reload["resourceId"] = resource_id
    st.reloads[new_id] = reload
    st.by_app.setdefault(app_id, []).append(new_id)
    return reload


def failure_message(sandbox: Sandbox, app_id: str, defect: str) -> str:
    """The error a reload of `app_id` fails on when its script has `defect`."""
    return error_message(app_scripts.broken_script(sandbox, app_id, defect), defect)


def forget(sandbox: Sandbox, reload_id: str) -> None:
    """Drop a reload that will not happen (a chained task run forgotten before it started)."""
    st = tables(sandbox)
    reload = st.reloads.pop(reload_id, None)
    if reload is not None:
        st.by_app[reload["appId"]].remove(reload_id)


def _reload_task_of(sandbox: Sandbox) -> dict[str, str]:
    """app id -> one of its reload tasks, read from the reload-tasks family's table (seeded before this one)."""
    found: dict[str, str] = {}
    for task in (sandbox.tables.get("reload_tasks") or {}).values():
        found.setdefault(task["appId"], task["id"])
    return found


def _task_of(sandbox: Sandbox) -> dict[str, str]:
    """app id -> one of its tasks (the tasks family's table, seeded before this one)."""
    found: dict[str, str] = {}
    table = sandbox.tables.get("tasks")
    for task in getattr(table, "tasks", {}).values():
        found.setdefault(task["resourceId"], task["id"])
    return found


def seed(sandbox: Sandbox, *, per_app: int = 6, days: float = 3.0) -> None:
    """`per_app` reloads over the last `days` for every app. One app in 4 (one in 50 on a tenant of more than 50
    apps) has a broken current script, in turn a missing field, a missing file and a syntax error; its reloads
    since the broken version was saved failed."""
    st = tables(sandbox)
    now = sandbox.clock.now()
    st.history_start = now - timedelta(days=days + 30)
    every = 4 if len(sandbox.apps) <= 50 else 50
    tasks_of = _reload_task_of(sandbox)
    workflow_tasks_of = _task_of(sandbox)
    rng = random.Random(sandbox.seed * 7919)
    for index, app in enumerate(sandbox.apps.values()):
        if index % every == 1:
            st.defects[app.id] = app_scripts.DEFECTS[(index // every) % len(app_scripts.DEFECTS)]
        broken_since = now - timedelta(days=2, hours=1)
        for k in range(per_app):
            at = now - timedelta(days=days) + timedelta(days=days) * (k + rng.random() * 0.5) / per_app
            kind, resource = STARTERS[(index + k) % len(STARTERS)]
            # A reload names the task or reload task that started it: one of the app's, never an id of nothing.
            source = {"reload-tasks": tasks_of, "tasks": workflow_tasks_of}.get(resource or "", {}).get(app.id)
            start_reload(
                sandbox,
                app.id,
                type=kind,
                resource_type=resource if resource not in ("reload-tasks", "tasks") or source else None,
                resource_id=source or (f"{rng.getrandbits(96):024x}" if resource == "automate" else None),
                outcome=None if app.id in st.defects and at >= broken_since else "SUCCEEDED",
                at=at,
                partial=k % 5 == 4,
                user_id=app.owner_id,
                seconds=rng.uniform(20, 400),
            )


def script_versions(sandbox: Sandbox, app_id: str) -> list[app_scripts.Version] | None:
    if app_id not in sandbox.apps:
        return None
    st = tables(sandbox)
    return app_scripts.versions(sandbox, app_id, st.defects.get(app_id), st.history_start or sandbox.clock.now())


# Listing -----------------------------------------------------------------------------------------------

_FILTER_TOKEN = re.compile(r'\s*(\(|\)|"[^"]*"|[A-Za-z_][\w.-]*)')
FILTER_FIELDS = {"status", "partial", "type"}


def parse_filter(text: str) -> Any:
    """A SCIM filter on status, partial and type with `eq`, `and`, `or` and parentheses, as a predicate on
    (status, reload); a str says what is wrong."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _FILTER_TOKEN.match(text, pos)
        if match is None:
            return f"filter: cannot read {text[pos : pos + 20]!r}"
        tokens.append(match.group(1))
        pos = match.end()
    reader = _FilterReader(tokens)
    try:
        predicate = reader.any_of()
    except ValueError as exc:
        return f"filter: {exc}"
    return predicate if reader.done() else f"filter: unexpected {reader.peek()!r}"


class _FilterReader:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def take(self) -> str:
        token = self.peek()
        if not token:
            raise ValueError("ends too early")
        self.pos += 1
        return token

    def done(self) -> bool:
        return self.pos == len(self.tokens)

    def any_of(self) -> Any:
        parts = [self.all_of()]
        while self.peek().lower() == "or":
            self.take()
            parts.append(self.all_of())
        return lambda s, r: any(p(s, r) for p in parts)

    def all_of(self) -> Any:
        parts = [self.one()]
        while self.peek().lower() == "and":
            self.take()
            parts.append(self.one())
        return lambda s, r: all(p(s, r) for p in parts)

    def one(self) -> Any:
        if self.peek() == "(":
            self.take()
            inner = self.any_of()
            if self.take() != ")":
                raise ValueError("missing )")
            return inner
        name, op, value = self.take(), self.take(), self.take().strip('"')
        if name not in FILTER_FIELDS:
            raise ValueError(f"attribute {name!r} is not supported; use status, partial or type")
        if op.lower() != "eq":
            raise ValueError(f"operator {op!r} is not supported; use eq")
        if name == "status":
            return lambda s, r: s == value
        if name == "partial":
            return lambda s, r: str(r["partial"]).lower() == value.lower()
        return lambda s, r: r["type"] == value


def _sort_key(sort: str, now: datetime) -> Any:
    name = sort.lstrip("+-")

    def key(row: tuple[str, dict[str, Any]]) -> Any:
        status, reload = row
        if name == "status":
            return status
        if name == "startTime":
            return started_at(reload) if status != "QUEUED" else reload["_created"]
        if name == "endTime":
            return finished_at(reload) if status not in ACTIVE else now + timedelta(days=1)
        return reload["_created"]

    return key


def _listing_problem(sandbox: Sandbox, request: Request) -> tuple[int, str] | None:
    q = request.query_params
    if not q.get("appId") and not sandbox.caller().admin:
        return 403, "appId is required: only a TenantAdmin may list the reloads of the whole tenant"
    if q.get("sort") and q["sort"].lstrip("+-") not in SORTS:
        return 400, f"sort must be one of {', '.join(sorted(SORTS))}, with an optional + or -"
    if q.get("partial") not in (None, "true", "false"):
        return 400, "partial must be true or false"
    return None


def _selected(sandbox: Sandbox, request: Request, now: datetime) -> list[dict[str, Any]] | str:
    q = request.query_params
    st = tables(sandbox)
    ids = st.by_app.get(q["appId"], []) if q.get("appId") else list(st.reloads)
    app = sandbox.apps.get(q.get("appId") or "")
    if app is not None and not sandbox.sees_app(app):
        ids = []  # reloads.json: the list holds the reloads the user has access to
    # A chained task run's reload is stored ahead, like the run: it shows once it is created.
    rows = [(status_at(st.reloads[i], now), st.reloads[i]) for i in ids if st.reloads[i]["_created"] <= now]
    if q.get("filter"):
        predicate = parse_filter(q["filter"])
        if isinstance(predicate, str):
            return predicate
        rows = [row for row in rows if predicate(*row)]
    if q.get("partial"):
        rows = [row for row in rows if str(row[1]["partial"]).lower() == q["partial"]]
    sort = q.get("sort") or "-creationTime"
    rows.sort(key=_sort_key(sort, now), reverse=sort.startswith("-"))
    return [reload for _, reload in rows]


def routes(sandbox: Sandbox) -> list[Route]:
    st = tables(sandbox)

    async def list_reloads(request: Request) -> Response:
        limit = parse_limit(request.query_params.get("limit"), 10, 100)
        problem = _listing_problem(sandbox, request) or (None if limit else (400, "limit must be 1-100"))
        if problem:
            return err(*problem)
        now = sandbox.clock.now()
        selected = _selected(sandbox, request, now)
        if isinstance(selected, str):
            return err(400, selected)
        keep = {k: v for k, v in request.query_params.items() if k in ("appId", "filter", "partial", "sort", "log")}
        page = paginate(request, selected, limit or 10, CURSORS, keep)
        if isinstance(page, str):
            return err(400, page)
        with_log = request.query_params.get("log") == "true"
        return JSONResponse(
            {"data": [public(request, r, now, with_log=with_log) for r in page.items], "links": page.links}
        )

    async def create(request: Request) -> Response:
        body = await json_body(request)
        app_id = body["appId"]
        if app_id not in sandbox.apps:  # reloads.json gives this POST no 404
            return err(400, f"appId {app_id[:100]} does not name an app")
        now = sandbox.clock.now()
        pending = [i for i in st.by_app.get(app_id, []) if status_at(st.reloads[i], now) in ("QUEUED", "RELOADING")]
        if pending:
            return err(429, "a pending reload request already exists for this app", "Too Many Requests")
        reload = start_reload(
            sandbox,
            app_id,
            type="external",
            resource_type=body.get("resourceType") or "api",
            resource_id=body.get("resourceId"),
            partial=bool(body.get("partial")),
            weight=body.get("weight") or 1,
        )
        return JSONResponse(public(request, reload, now, with_log=True), status_code=201)

    async def get_one(request: Request) -> Response:
        reload = st.reloads.get(request.path_params["reloadId"])
        if reload is None:
            return err(404, "reload not found")
        return JSONResponse(public(request, reload, sandbox.clock.now(), with_log=True))

    async def cancel(request: Request) -> Response:
        reload = st.reloads.get(request.path_params["reloadId"])
        if reload is None:
            return err(404, "reload not found")
        now = sandbox.clock.now()
        status = status_at(reload, now)
        if status not in ("QUEUED", "RELOADING"):
            return err(409, f"the reload is {status} and cannot be canceled")
        reload["_canceled"] = now
        if status == "QUEUED":
            return Response(status_code=204)
        return JSONResponse({"status": "CANCELING"}, status_code=202)

    def g(tier: str, handler: Any, component: str | None = None) -> Any:
        return guarded(sandbox, tier, err, handler, body=contract.checker(SPEC, component) if component else None)

    return [
        Route(BASE, g("1", list_reloads), methods=["GET"]),
        Route(BASE, g("reloads", create, "ReloadRequest"), methods=["POST"]),
        Route(BASE + "/{reloadId}", g("1", get_one), methods=["GET"]),
        Route(BASE + "/{reloadId}/actions/cancel", g("reloads", cancel), methods=["POST"]),
        *app_routes(sandbox),
        *app_scripts.routes(sandbox, lambda app_id: script_versions(sandbox, app_id)),
    ]


def _ended(sandbox: Sandbox, app_id: str, now: datetime) -> list[dict[str, Any]]:
    """The app's ended reloads, newest first."""
    st = tables(sandbox)
    found = [st.reloads[i] for i in st.by_app.get(app_id, []) if status_at(st.reloads[i], now) not in ACTIVE]
    return sorted(found, key=finished_at, reverse=True)


def app_routes(sandbox: Sandbox) -> list[Route]:
    st = tables(sandbox)
    apps_err = app_scripts.err

    async def script_logs(request: Request) -> Response:
        app_id = request.path_params["appId"]
        if app_id not in sandbox.apps:
            return apps_err(404, "app not found")
        rows = [_log_meta(request, r) for r in _ended(sandbox, app_id, sandbox.clock.now())]
        return JSONResponse({"data": rows})

    async def script_log(request: Request) -> Response:
        reload = st.reloads.get(request.path_params["reloadId"])
        if reload is None or reload["appId"] != request.path_params["appId"]:
            return apps_err(404, "reload log not found")
        text = "\n".join(log_lines(sandbox, reload, status_at(reload, sandbox.clock.now()), sandbox.clock.now()))
        return Response(text + "\n", media_type="application/octet-stream")

    async def reload_metadata(request: Request) -> Response:
        app_id = request.path_params["appId"]
        if app_id not in sandbox.apps:
            return apps_err(404, "app not found")
        kept = _ended(sandbox, app_id, sandbox.clock.now())[:METADATA_KEPT]
        wanted = request.path_params["reloadId"]
        rows = [metadata(sandbox, r, finished_at(r)) for r in kept if r["id"] == wanted or not wanted]
        return JSONResponse({"data": rows})

    def g(handler: Any) -> Any:
        return guarded(sandbox, "1", apps_err, handler)

    return [
        Route(APPS + "/{appId}/reloads/logs", g(script_logs), methods=["GET"]),
        Route(APPS + "/{appId}/reloads/logs/{reloadId}", g(script_log), methods=["GET"]),
        Route(APPS + "/{appId}/reloads/metadata/{reloadId}", g(reload_metadata), methods=["GET"]),
    ]


def _log_meta(request: Request, reload: dict[str, Any]) -> dict[str, Any]:
    took = finished_at(reload) - started_at(reload)
    path = f"{APPS}/{reload['appId']}/reloads/logs/{reload['id']}"
    return {
        "reloadId": reload["id"],
        "endTime": stamp(finished_at(reload)),
        "success": reload["_outcome"] == "SUCCEEDED" and reload.get("_canceled") is None,
        "duration": int(took.total_seconds() * 1000),
        "links": {"log": f"{request.url.scheme}://{request.url.netloc}{path}"},
    }
