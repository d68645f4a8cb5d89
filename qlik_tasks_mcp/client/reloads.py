"""App reloads (`/api/v1/reloads`) and what the apps API keeps of them: script logs, reload metadata, load
scripts and their versions, and script validation (`/api/v1/apps/...`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.lines import LineSink
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing

BASE = "/api/v1/reloads"
APPS = "/api/v1/apps"
ACTIVE = ("QUEUED", "RELOADING", "CANCELING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "EXCEEDED_LIMIT")
S = TypeVar("S", bound=LineSink)


class ReloadDoc(Doc):
    id: str
    app_id: str = ""
    user_id: str = ""
    type: str = ""
    status: str = ""
    creation_time: str = ""
    start_time: str = ""
    end_time: str = ""
    engine_time: str = ""
    partial: bool = False
    weight: int | None = None
    error_code: str = ""
    error_message: str = ""
    log: str = ""
    resource_id: str = ""
    resource_type: str = ""

    @property
    def ended(self) -> bool:
        return self.status.upper() in TERMINAL


class ScriptLogDoc(Doc):
    reload_id: str = ""
    end_time: str = ""
    success: bool | None = None
    duration: int | None = None


class ReloadMetaDoc(Doc):
    reload_id: str = ""
    end_time: str = ""
    success: bool | None = None
    duration: int | None = None
    is_partial_reload: bool | None = None
    skip_store: bool | None = None
    row_limit: int | None = None
    statements: list[dict[str, Any]] = []


class ScriptVersionDoc(Doc):
    script_id: str = ""
    size: int | None = None
    modifier_id: str = ""
    modified_time: str = ""
    version_message: str = ""


class ScriptIssue(Doc):
    # The apps API capitalises the keys of a validation answer; Tab is the tab's index, Line the line in that tab.
    tab: int | None = None
    line: int | None = None
    column: int | None = None
    msg: str = ""
    info: str = ""

    model_config = Doc.model_config | {"alias_generator": lambda name: name.capitalize()}


class PendingReload(ApiError):
    """POST /api/v1/reloads answered 429: a reload of that app is already queued (not a rate limit)."""


def scim_filter(**values: list[str] | None) -> str | None:
    """The SCIM filter the reloads API takes: `eq` only; values of one attribute OR-combined, attributes ANDed
    (the form of reloads.json's own example)."""
    groups = [
        "(" + " or ".join(f'{name} eq "{value}"' for value in chosen) + ")" for name, chosen in values.items() if chosen
    ]
    return " and ".join(groups) or None


class ReloadsApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, reload_id: str) -> str:
        return f"{BASE}/{path_segment(reload_id, 'reload_id')}"

    def _app(self, app_id: str) -> str:
        return f"{APPS}/{path_segment(app_id, 'app_id')}"

    async def list(
        self,
        *,
        app_id: str | None,
        statuses: list[str] | None = None,
        types: list[str] | None = None,
        partial: bool | None = None,
        limit: int = 20,
        cursor: str | None = None,
        sort: str = "-creationTime",
    ) -> Listing[ReloadDoc]:
        params: dict[str, Any] = {"limit": limit, "sort": sort}
        if app_id:
            params["appId"] = app_id
        found = scim_filter(status=statuses, type=types)
        if found:
            params["filter"] = found
        if partial is not None:
            params["partial"] = "true" if partial else "false"
        try:
            page = await self.qlik.page(BASE, tier=Tier.T1, params=params, cursor=cursor)
        except ApiError as exc:
            if exc.status == 403 and not app_id:
                exc.hint = "Only a tenant admin may list every app's reloads: give app_id"
            raise
        return listing(page, ReloadDoc)

    async def all(self, *, app_id: str | None, statuses: list[str] | None = None) -> AsyncIterator[ReloadDoc]:
        """Newest first, every page; the caller stops reading when it has what it needs."""
        cursor: str | None = None
        while True:
            page = await self.list(app_id=app_id, statuses=statuses, limit=100, cursor=cursor)
            for doc in page.items:
                yield doc
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get(self, reload_id: str) -> ReloadDoc:
        return ReloadDoc.model_validate(await self.qlik.json("GET", self._one(reload_id), tier=Tier.T1))

    async def start(
        self, app_id: str, *, partial: bool, variables: dict[str, str] | None, weight: int | None
    ) -> ReloadDoc:
        body: dict[str, Any] = {"appId": app_id, "partial": partial}
        if variables:
            body["variables"] = variables
        if weight is not None:
            body["weight"] = weight
        try:
            sent = self.qlik.decode(await self.qlik.send("POST", BASE, tier=Tier.RELOADS, json=body, final_429=True))
        except ApiError as exc:
            if exc.status != 429:
                raise
            raise PendingReload(
                429,
                "a reload of this app is already queued",
                code=exc.code,
                method="POST",
                path=BASE,
                hint="Qlik keeps one pending reload per app; follow the queued one instead of starting another",
            ) from None
        return ReloadDoc.model_validate(sent)

    async def cancel(self, reload_id: str) -> Literal["canceled", "canceling"]:
        """'canceled' (204) or 'canceling' (202)."""
        response = await self.qlik.send("POST", f"{self._one(reload_id)}/actions/cancel", tier=Tier.RELOADS)
        self.qlik.decode(response)
        return "canceled" if response.status_code == 204 else "canceling"

    async def script_logs(self, app_id: str) -> list[ScriptLogDoc]:
        body = await self.qlik.json("GET", f"{self._app(app_id)}/reloads/logs", tier=Tier.T1)
        rows = body.get("data") if isinstance(body, dict) else None
        return [ScriptLogDoc.model_validate(r) for r in rows or [] if isinstance(r, dict)]

    async def read_log(self, app_id: str, reload_id: str, sink: S) -> S:
        """The reload's script log, streamed into `sink`: only what the sink keeps stays in memory."""
        path = f"{self._app(app_id)}/reloads/logs/{path_segment(reload_id, 'reload_id')}"
        headers = {"Accept": "text/plain, application/octet-stream"}
        return await self.qlik.read_lines(path, sink, tier=Tier.T1, headers=headers)

    async def metadata(self, app_id: str, reload_id: str) -> ReloadMetaDoc | None:
        """The reload's metadata; None once it is older than the app's last 10 reloads (Qlik keeps no more)."""
        path = f"{self._app(app_id)}/reloads/metadata/{path_segment(reload_id, 'reload_id')}"
        body = await self.qlik.json("GET", path, tier=Tier.T1)
        rows = body.get("data") if isinstance(body, dict) else None
        for row in rows or []:
            if isinstance(row, dict) and row.get("reloadId") == reload_id:
                return ReloadMetaDoc.model_validate(row)
        return None

    async def script_versions(self, app_id: str) -> list[ScriptVersionDoc]:
        body = await self.qlik.json("GET", f"{self._app(app_id)}/scripts", tier=Tier.T1)
        rows = body.get("scripts") if isinstance(body, dict) else None
        return [ScriptVersionDoc.model_validate(r) for r in rows or [] if isinstance(r, dict)]

    async def script(self, app_id: str, version: str = "current") -> str:
        path = f"{self._app(app_id)}/scripts/{path_segment(version, 'version')}"
        body = await self.qlik.json("GET", path, tier=Tier.T1)
        text = body.get("script") if isinstance(body, dict) else None
        return text if isinstance(text, str) else ""

    async def validate(self, script: str) -> tuple[list[ScriptIssue], list[ScriptIssue]]:
        """Errors and warnings of a proposed script; POST /api/v1/apps/validatescript changes nothing."""
        body = await self.qlik.json("POST", f"{APPS}/validatescript", tier=Tier.T2, body={"script": script})
        body = body if isinstance(body, dict) else {}

        def issues(key: str) -> list[ScriptIssue]:
            return [ScriptIssue.model_validate(i) for i in body.get(key) or [] if isinstance(i, dict)]

        return issues("Errors"), issues("Warnings")
