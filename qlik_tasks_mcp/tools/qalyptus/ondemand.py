"""Qalyptus on-demand reports: generate a report in an output format with selections or a bookmark, follow the
request (the one run follower), its status and download reference, the recent requests, and deleting one.

The download is what "Download report" answers: the file's URI in Qalyptus's storage, handed to the user as it
came. This server never follows it (the API key must not go to another origin), so a link is given, not a file.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient, ReportDoc, RequestDoc
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.follow import FAILED_TAIL, Followed, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.logs import LogSink
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Limit
from qlik_tasks_mcp.tools.qalyptus.models import (
    Offset,
    OrgName,
    QalyptusOrgs,
    Status,
    Window,
    classify,
    messages_of,
    text_of,
    window,
)

RequestId = Annotated[str, Field(min_length=1, max_length=128, description="On-demand request id.")]
# FieldSelectionDto's fields are not listed in the reference: {fieldName, values} is inferred.
SELECTION_FIELD, SELECTION_VALUES = "fieldName", "values"
Selections = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=200)], list[Annotated[str, Field(max_length=500)]]] | None,
    Field(max_length=20, description='Field -> values, e.g. {"Region": ["Nordics"]}.'),
]


class Request(Status):
    report_id: str | None = None
    report: str | None = None
    format: str | None = None

    @classmethod
    def of_request(cls, doc: RequestDoc) -> "Request":
        return cls(
            **Status.of(doc).model_dump(exclude={"task_id", "task_name"}),
            report_id=text_of(doc.report_id),
            report=text_of(doc.report_name),
            format=text_of(doc.output_format),
        )


class Download(Compact):
    url: str | None = Field(default=None, description="Open it to get the file; never fetched by this server.")
    file: str | None = Field(default=None, description="Qalyptus's reference to the file when it gave no link.")


class RequestResult(Compact):
    organization: str
    request: Request | None = None
    download: Download | None = None
    messages: str | None = Field(default=None, description="The request's message, fenced once as tenant text.")
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout", "unknown_status"] | None = None
    log_tail: str | None = None
    note: str | None = None


class RequestPage(Window):
    organization: str
    requests: list[Request]
    messages: str | None = Field(default=None, description="The requests' messages, fenced once as tenant text.")


def download_of(data: Any) -> Download | None:
    """What "Download report" answered: a URI (as text, or in an object), or another reference to the file."""
    if isinstance(data, dict):
        data = next((data[k] for k in ("uri", "url", "downloadUrl", "link", "fileName", "name") if data.get(k)), data)
    if data in (None, "", {}):
        return None
    if isinstance(data, str) and data.strip().lower().startswith("https://") and "\n" not in data.strip():
        return Download(url=data.strip())
    return Download(file=text_of(data, 500))


async def download(api: QalyptusClient, request: RequestDoc) -> tuple[Download | None, str | None]:
    """The file of a request that produced one; else a note saying why there is none."""
    if classify(request.status) not in ("success", "warning"):
        return None, None
    try:
        return download_of(await api.download(request.id or "")), None
    except ApiError as exc:
        return None, f"The download link could not be read: {exc}"


async def find_report(api: QalyptusClient, report: str) -> ReportDoc:
    """A report by id or exact name (any case)."""
    reports = await api.reports()
    key = report.strip().lower()
    hit = [r for r in reports if r.id.lower() == key] or [r for r in reports if r.name.strip().lower() == key]
    if len(hit) > 1:
        ids = ", ".join(r.id for r in hit[:5])
        raise InvalidInput(f"several reports are named {quoted(report, 80)}: give one id of {ids}")
    if not hit:
        raise InvalidInput(f"no report {quoted(report, 80)} in this organization; list_qalyptus_reports lists them")
    return hit[0]


def format_of(report: ReportDoc, wanted: str) -> str:
    formats = {f.upper(): f for f in report.output_formats}
    if formats and wanted.strip().upper() not in formats:
        raise InvalidInput(f"report {quoted(report.name, 80)} is generated as {', '.join(formats.values())}")
    return formats.get(wanted.strip().upper(), wanted.strip().upper())


@dataclass
class Started:
    """The request a generate made, once Qalyptus answered; the follower reads it by id."""

    api: QalyptusClient
    id: str | None = None

    async def latest(self) -> RequestDoc | None:
        return await self.api.request(self.id) if self.id else None


def _request_id(answer: Any) -> str | None:
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    if isinstance(answer, dict):
        found = answer.get("id") or answer.get("requestID") or answer.get("requestId")
        return str(found) if found else None
    return None


@dataclass
class RequestTail:
    api: QalyptusClient
    returned: str | None = None

    async def __call__(self, run: RequestDoc) -> str | None:
        if classify(run.status) not in ("failure", "warning") or not run.id:
            return None
        sink = LogSink(lines=FAILED_TAIL, grep=None, offset=None)
        await self.api.stream_log(run.id, sink, request=True)
        cut = sink.result(run.id, "", "Qalyptus log")
        self.returned = cut.returned
        return cut.log


def _say(run: RequestDoc | None) -> str:
    return f"status {run.status}" if run is not None else "waiting for the request to appear"


async def _outcome(api: QalyptusClient, result: RequestResult, followed: Followed[RequestDoc], wait: bool) -> None:
    run = followed.run
    result.request = Request.of_request(run) if run is not None else None
    result.messages = messages_of([result.request]) if result.request else None
    result.log_tail = followed.log_tail
    notes = [followed.note]
    if wait and followed.waited_seconds is not None:
        result.waited_seconds = followed.waited_seconds
        if not followed.finished:
            result.wait_ended = "timeout"
        elif run is not None and classify(run.status) == "unknown":
            result.wait_ended = "unknown_status"
            notes.append(f"Qalyptus reports status {run.status!r}, unknown here: follow it with get_qalyptus_request.")
        else:
            result.wait_ended = "finished"
    if run is not None and followed.finished:
        result.download, why = await download(api, run)
        notes.append(why)
        if followed.log_tail is not None:
            notes.append("get_qalyptus_task_log with request_id reads the whole log.")
    result.note = " ".join(n for n in notes if n) or None


@write("Generate Qalyptus report")
async def generate_qalyptus_report(
    orgs: QalyptusOrgs,
    ctx: Context,
    report: Annotated[str, Field(min_length=1, max_length=200, description="Report id or name.")],
    output_format: Annotated[str, Field(min_length=1, max_length=20, description="e.g. PDF.")],
    selections: Selections = None,
    bookmark_id: Annotated[str | None, Field(max_length=128)] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="Qlik app; default: the report's.")] = None,
    wait: bool = True,
    timeout_seconds: WaitSeconds = 120,
    organization: OrgName = None,
) -> RequestResult:
    """Generate a Qalyptus report now (on demand), with selections or a bookmark; returns its download link."""
    api = orgs.get(organization)
    found = await find_report(api, report)
    fmt = format_of(found, output_format)
    body = {
        "selections": [{SELECTION_FIELD: f, SELECTION_VALUES: v} for f, v in (selections or {}).items()] or None,
        "appId": app_id,
        "bookmarkId": bookmark_id,
    }
    started = Started(api)
    tail = RequestTail(api)

    async def start() -> None:
        started.id = _request_id(await api.generate(found.id, fmt, body))

    watch = RunWatch[RequestDoc](
        latest=started.latest, run_id=lambda r: r.id or "", ended=lambda r: classify(r.status) != "active", say=_say
    )
    watch.tail_if_failed = tail
    followed = await follow(
        watch, ctx=ctx, start=start, wait=wait, timeout_seconds=timeout_seconds, check_with="get_qalyptus_request"
    )
    result = RequestResult(organization=api.name)
    if started.id is None:
        result.note = "Qalyptus accepted the request without naming it; list_qalyptus_requests shows it."
        return result
    await _outcome(api, result, followed, wait)
    return result


@read("Get Qalyptus request")
async def get_qalyptus_request(
    orgs: QalyptusOrgs, request_id: RequestId, organization: OrgName = None
) -> RequestResult:
    """An on-demand Qalyptus request: status, times, message, and its download link once done."""
    api = orgs.get(organization)
    found = await api.request(request_id)
    if found is None:
        return RequestResult(organization=api.name, note="Qalyptus returned no request for this id.")
    shown = Request.of_request(found)
    result = RequestResult(organization=api.name, request=shown, messages=messages_of([shown]))
    result.download, result.note = await download(api, found)
    return result


@read("List Qalyptus requests")
async def list_qalyptus_requests(
    orgs: QalyptusOrgs,
    report: Annotated[str | None, Field(max_length=200, description="Report id or part of its name.")] = None,
    status: Annotated[str | None, Field(max_length=40, description="Any case, e.g. Failed.")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
    organization: OrgName = None,
) -> RequestPage:
    """Recent on-demand report requests, newest first: report, format, status, times."""
    api = orgs.get(organization)
    rows = await api.requests()
    if report:
        key = report.strip().lower()
        rows = [r for r in rows if (r.report_id or "").lower() == key or key in (r.report_name or "").lower()]
    if status:
        rows = [r for r in rows if r.status.lower() == status.strip().lower()]
    rows.sort(key=lambda r: r.sort_time, reverse=True)
    chosen, info = window(rows, limit, offset, "requests", ("report", "by"))
    shown = [Request.of_request(r) for r in chosen]
    return RequestPage(organization=api.name, requests=shown, messages=messages_of(shown), **info)


async def plan_delete_request(orgs: QalyptusOrgs, request_id: str, organization: str | None) -> Plan:
    api = orgs.get(organization)
    found = await api.request(request_id)
    if found is None:
        raise InvalidInput(f"Qalyptus returned no request {request_id}")
    report = quoted(found.report_name or found.report_id or "?", 80)
    notes = ["This cannot be undone; generate_qalyptus_report makes a new one."]
    if classify(found.status) == "active":
        notes.insert(0, "It is queued or running: Qalyptus stops it first.")
    return Plan(
        action=f"Delete on-demand request {request_id} ({report} as {found.output_format or '?'}) in {api.name}",
        changes=["the request, its log and its report file are deleted from storage"],
        state={"request": found.id},
        notes=notes,
    )


@destructive("Delete Qalyptus request", plan=plan_delete_request, idempotent=True)
async def delete_qalyptus_request(
    orgs: QalyptusOrgs, plan: Plan, request_id: RequestId, organization: OrgName = None
) -> RequestResult:
    """Delete an on-demand request with its log and file (stops it first)."""
    api = orgs.get(organization)
    await api.delete_request(request_id)
    return RequestResult(organization=api.name, note=f"Request {request_id} deleted.")
