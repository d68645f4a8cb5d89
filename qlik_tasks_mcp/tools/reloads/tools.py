"""App reloads (`/api/v1/reloads`): list, read, start (and wait), cancel; their script logs; the load script
around a failing line, and a proposed script checked without changing anything."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.reloads import ACTIVE, PendingReload, ReloadDoc, ReloadMetaDoc, ReloadsApi, ScriptIssue
from qlik_tasks_mcp.tools.fence import tenant_text_note, untrusted, untrusted_fields
from qlik_tasks_mcp.tools.follow import FAILED_TAIL, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.logs import GREP_MAX, LogSink, LogSlice, RunLog, compile_grep
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Names, RowNames, row_names
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Cursor, Limit
from qlik_tasks_mcp.tools.reloads.models import started_by
from qlik_tasks_mcp.tools.reloads.source import AppReloadSource
from qlik_tasks_mcp.tools.sources import parse_time, short_time

ReloadId = Annotated[str, Field(min_length=1, max_length=128, description="Reload id.")]
AppId = Annotated[str, Field(min_length=1, max_length=128, description="App id.")]
Status = Literal["QUEUED", "RELOADING", "CANCELING", "SUCCEEDED", "FAILED", "CANCELED", "EXCEEDED_LIMIT"]
Type = Literal["hub", "external", "chronos", "automations", "data-refresh", "choreographer"]
SCRIPT_MAX = 500_000
SLOWEST = 5
TAB_MARK = "///$tab"


def _seconds(start: str, end: str) -> float | None:
    began, ended = parse_time(start), parse_time(end)
    return round((ended - began).total_seconds(), 1) if began and ended else None


NAMES_NOTE = tenant_text_note(["app", "user"])


class Reload(Compact):
    id: str
    app_id: str
    app: str | None = None
    status: str
    started_by: str
    user: str | None = Field(None, description="The user it ran as: who started it, or the owner of its task.")
    created_at: str | None = Field(None, description="UTC, to the minute.")
    ended_at: str | None = None
    seconds: float | None = None
    partial: bool | None = None
    error_code: str | None = None

    @classmethod
    def of(cls, doc: ReloadDoc, names: RowNames | None = None) -> "Reload":
        return cls(
            id=doc.id,
            app_id=doc.app_id,
            app=names.app(doc.app_id) if names else None,
            status=doc.status,
            started_by=started_by(doc),
            user=names.user(doc.user_id) if names else None,
            created_at=short_time(doc.creation_time),
            ended_at=short_time(doc.end_time),
            seconds=_seconds(doc.start_time or doc.creation_time, doc.end_time),
            # Only a partial reload is worth a field: full is what a reload is unless told.
            partial=True if doc.partial else None,
            error_code=doc.error_code or None,
        )


async def reload_names(names: Names, docs: list[ReloadDoc]) -> RowNames:
    """The apps and users of these reloads: at most one apps and one users request for the lot."""
    return await row_names(names, [d.app_id for d in docs], [d.user_id for d in docs])


class ReloadPage(Compact):
    reloads: list[Reload]
    errors: str | None = Field(None, description="Each failed reload's first error line, by reload id (tenant text).")
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str | None = None


class Statement(Compact):
    n: int = Field(description="Its label is line `statement n` in text.")
    type: str | None = None
    rows: int | None = None
    seconds: float | None = None


class ReloadMeta(Compact):
    success: bool | None = None
    seconds: float | None = None
    partial: bool | None = None
    slowest: list[Statement] = Field(default=[], description="Slowest load/store statements.")


class ReloadDetail(Reload):
    started_at: str | None = None
    weight: int | None = None
    metadata: ReloadMeta | None = None
    text: str | None = Field(None, description="The error message and statement labels (tenant text).")
    note: str | None = None


class ReloadStarted(Compact):
    started: bool
    reload: ReloadDetail | None = None
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout"] | None = None
    # A failed reload's last log lines, its error among them.
    log_tail: str | None = None
    note: str | None = None


class ReloadLog(LogSlice):
    reload_id: str
    app_id: str


class ScriptExcerpt(Compact):
    app_id: str
    version: str
    total_lines: int
    returned: str
    script: str


class Issue(Compact):
    line: int | None = Field(None, description="Line in the whole script.")
    tab: int | None = Field(None, description="Tab index, from 0.")
    line_in_tab: int | None = None
    column: int | None = None
    message: str
    info: str | None = None
    text: str | None = Field(None, description="The script line it points at.")


class ScriptCheck(Compact):
    valid: bool
    errors: list[Issue]
    warnings: list[Issue] = []


@dataclass(frozen=True)
class Reloads:
    """What the reloads tools work with: the reloads API and the one name lookup."""

    api: ReloadsApi
    names: Names


def service(clients: Deps) -> Reloads:
    return Reloads(ReloadsApi(clients.qlik), clients.names)


def _slowest(meta: ReloadMetaDoc) -> tuple[ReloadMeta, list[tuple[str, str]]]:
    ranked = sorted(meta.statements, key=lambda s: -(s.get("duration") or 0))[:SLOWEST]
    rows = [
        Statement(n=n, type=s.get("type"), rows=s.get("nbrOfRows"), seconds=(s.get("duration") or 0) / 1000)
        for n, s in enumerate(ranked, start=1)
    ]
    labels = [(f"statement {n}", str(s.get("label") or s.get("tableName") or "")) for n, s in enumerate(ranked, 1)]
    seconds = meta.duration / 1000 if meta.duration is not None else None
    return ReloadMeta(success=meta.success, seconds=seconds, partial=meta.is_partial_reload, slowest=rows), labels


def _detail(
    doc: ReloadDoc,
    meta: ReloadMetaDoc | None = None,
    *,
    message: bool = True,
    names: RowNames | None = None,
    note: str | None = None,
) -> ReloadDetail:
    """One reload; its tenant text (error message, statement labels) in one fence, its names said once."""
    pairs: list[tuple[str, str | None]] = [("error", doc.error_message.strip()[:2000] or None)] if message else []
    summary = None
    if meta is not None:
        summary, labels = _slowest(meta)
        pairs += labels
    shown = [(name, value) for name, value in pairs if value]
    return ReloadDetail(
        **Reload.of(doc, names).model_dump(),
        started_at=short_time(doc.start_time),
        weight=doc.weight,
        metadata=summary,
        text=untrusted_fields(shown, "reload") if shown else None,
        note=" ".join(n for n in (note, NAMES_NOTE if names else None) if n) or None,
    )


@read("List reloads")
async def list_reloads(
    reloads: Reloads,
    app_id: Annotated[
        str | None, Field(max_length=128, description="Omit for the whole tenant (tenant admin).")
    ] = None,
    status: Annotated[list[Status] | None, Field(max_length=7)] = None,
    type: Annotated[
        list[Type] | None,
        Field(
            max_length=6,
            description="Starters: chronos=reload task, choreographer=task, hub=user, external=API.",
        ),
    ] = None,
    partial: bool | None = None,
    hours: Annotated[int | None, Field(ge=1, le=720, description="Created in the last N hours.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ReloadPage:
    """App reloads, newest first: status, duration, what started it, each failure's first error line."""
    page = await reloads.api.list(
        app_id=app_id, statuses=list(status or []), types=list(type or []), partial=partial, limit=limit, cursor=cursor
    )
    docs, more = page.items, page.next_cursor
    if hours is not None:
        since = datetime.now(UTC) - timedelta(hours=hours)
        docs = [d for d in docs if (parse_time(d.creation_time) or since) >= since]
        # Newest first: once a row is older than the window, no later page can hold a newer one.
        more = more if len(docs) == len(page.items) else None
    firsts = [(d.id, d.error_message.strip().splitlines()[0]) for d in docs if d.error_message.strip()]
    names = await reload_names(reloads.names, docs)
    return ReloadPage(
        reloads=[Reload.of(d, names) for d in docs],
        errors=untrusted_fields(firsts, "reload errors") if firsts else None,
        next_cursor=more,
        note=" ".join(n for n in (page.cut_note, NAMES_NOTE if docs else None) if n) or None,
    )


@read("Get reload")
async def get_reload(reloads: Reloads, reload_id: ReloadId) -> ReloadDetail:
    """One reload: status, times, what started it, the error in full; once ended, its metadata."""
    api = reloads.api
    doc = await api.get(reload_id)
    names = await reload_names(reloads.names, [doc])
    if not doc.ended:
        return _detail(doc, names=names)
    try:
        meta = await api.metadata(doc.app_id, doc.id)
    except ApiError as exc:
        return _detail(doc, names=names, note=f"Its metadata could not be read: {exc}")
    note = None if meta else "No metadata: Qlik keeps it for an app's last 10 reloads only."
    return _detail(doc, meta, names=names, note=note)


async def _log(
    api: ReloadsApi, app_id: str, reload_id: str, *, lines: int, grep: str | None, offset: int | None
) -> RunLog:
    sink = await api.read_log(app_id, reload_id, LogSink(lines=lines, grep=grep, offset=offset))
    return sink.result(app_id, reload_id, source="reload log")


async def _failed_tail(api: ReloadsApi, doc: ReloadDoc) -> str | None:
    """A failed reload's last log lines: Qlik ends the log on the error, the statement it stopped at before it."""
    if doc.status.upper() != "FAILED":
        return None
    return (await _log(api, doc.app_id, doc.id, lines=FAILED_TAIL, grep=None, offset=None)).log


async def _queued(reloads: Reloads, app_id: str, exc: PendingReload) -> ReloadStarted:
    page = await reloads.api.list(app_id=app_id, statuses=list(ACTIVE), limit=1)
    pending = page.items[0] if page.items else None
    names = await reload_names(reloads.names, page.items[:1])
    return ReloadStarted(
        started=False,
        reload=_detail(pending, names=names) if pending else None,
        note=f"Not started: {exc.title} (Qlik answered 429 to the start, which here means this, not a rate "
        "limit). Follow the queued reload with get_reload instead of starting another.",
    )


def _watch(api: ReloadsApi, started: list[ReloadDoc]) -> RunWatch[ReloadDoc]:
    async def latest() -> ReloadDoc | None:
        return await api.get(started[0].id) if started else None

    def say(doc: ReloadDoc | None) -> str:
        return f"reload {doc.status}" if doc else "queued"

    return RunWatch(latest, lambda d: d.id, lambda d: d.ended, say, lambda d: _failed_tail(api, d))


@write("Reload app")
async def reload_app(
    reloads: Reloads,
    ctx: Context,
    app_id: AppId,
    partial: Annotated[bool, Field(description="Partial reload (the script's Add/Replace/Merge loads only).")] = False,
    variables: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=256)], Annotated[str, Field(max_length=256)]] | None,
        Field(max_length=20, description="Script variables: name -> value."),
    ] = None,
    weight: Annotated[int | None, Field(ge=1, le=10, description="Queue priority 1-10 (higher sooner).")] = None,
    wait: bool = False,
    timeout_seconds: WaitSeconds = 60,
) -> ReloadStarted:
    """Reload an app now; wait=true follows it to the end (a failure comes with its log's error lines). Ending
    the wait never cancels the reload."""
    api = reloads.api
    started: list[ReloadDoc] = []

    async def start() -> None:
        started.append(await api.start(app_id, partial=partial, variables=variables, weight=weight))

    try:
        followed = await follow(
            _watch(api, started),
            ctx=ctx,
            start=start,
            wait=wait,
            timeout_seconds=timeout_seconds,
            check_with="get_reload",
        )
    except PendingReload as exc:
        return await _queued(reloads, app_id, exc)
    run = followed.run or (started[0] if started else None)
    waited = followed.waited_seconds is not None
    names = await reload_names(reloads.names, [run] if run else [])
    return ReloadStarted(
        started=True,
        reload=_detail(run, message=followed.log_tail is None, names=names) if run else None,
        waited_seconds=followed.waited_seconds,
        wait_ended=("finished" if followed.finished else "timeout") if waited else None,
        log_tail=followed.log_tail,
        note=followed.note,
    )


async def plan_cancel(reloads: Reloads, reload_id: str) -> Plan:
    doc = await reloads.api.get(reload_id)
    if doc.ended:
        raise InvalidInput(f"reload {reload_id} already ended ({doc.status}); there is nothing to cancel")
    app = await reloads.names.describe_app(doc.app_id) if doc.app_id else "no app"
    user = f", as {await reloads.names.describe_user(doc.user_id)}" if doc.user_id else ""
    return Plan(
        action=f"Cancel reload {doc.id} of {app} ({doc.status}, started by {started_by(doc)}{user})",
        changes=[f"status: {doc.status} -> CANCELED"],
        # Not the status: QUEUED becomes RELOADING within seconds, and the user's yes still means the same.
        state={"id": doc.id, "ended": False},
        notes=["The app keeps the data of its last successful reload."],
    )


class Cancelled(Compact):
    reload_id: str
    status: Literal["canceled", "canceling"]


@destructive("Cancel reload", plan=plan_cancel, idempotent=True)
async def cancel_reload(reloads: Reloads, plan: Plan, reload_id: ReloadId) -> Cancelled:
    """Cancel a queued or running reload."""
    return Cancelled(reload_id=reload_id, status=await reloads.api.cancel(reload_id))


@read("Get reload log")
async def get_reload_log(
    reloads: Reloads,
    reload_id: ReloadId,
    app_id: Annotated[str | None, Field(max_length=128, description="Saves a lookup.")] = None,
    lines: Annotated[int, Field(ge=1, le=500, description="Max 500.")] = 40,
    grep: Annotated[str | None, Field(max_length=GREP_MAX, description="Case-insensitive regex.")] = None,
    offset: Annotated[int | None, Field(ge=0, description="Lines to skip; default: the tail.")] = None,
) -> ReloadLog:
    """A reload's script log: the tail by default, or from offset, or the lines matching grep."""
    if grep:
        compile_grep(grep)
    app = app_id or (await reloads.api.get(reload_id)).app_id
    log = await _log(reloads.api, app, reload_id, lines=lines, grep=grep, offset=offset)
    return ReloadLog(reload_id=reload_id, app_id=app, **log.model_dump(exclude={"task_id", "run_id"}))


def _numbered(lines: list[str], start: int, end: int) -> str:
    return "\n".join(f"{n + 1}: {lines[n]}" for n in range(start, end))


@read("Get app script")
async def get_app_script(
    reloads: Reloads,
    app_id: AppId,
    line: Annotated[int | None, Field(ge=1, description="E.g. a log's error line.")] = None,
    grep: Annotated[str | None, Field(max_length=GREP_MAX, description="Or the lines around the first match.")] = None,
    context: Annotated[int, Field(ge=0, le=100, description="Lines shown before and after.")] = 10,
    version: Annotated[
        str, Field(min_length=1, max_length=128, description="A script version id, or current.")
    ] = "current",
) -> ScriptExcerpt:
    """An app's load script: the lines around `line` or a grep hit; whole only when short."""
    lines = (await reloads.api.script(app_id, version)).splitlines()
    total = len(lines)
    if grep:
        pattern = compile_grep(grep)
        hit = next((n for n, text in enumerate(lines) if pattern.search(text)), None)
        if hit is None:
            return ScriptExcerpt(
                app_id=app_id, version=version, total_lines=total, returned=f"no line matches /{grep}/i", script=""
            )
        line = hit + 1
    if line is None:
        if total > 2 * context + 1 and total > 60:
            raise InvalidInput(f"the script has {total} lines: give line or grep to see a part of it")
        start, end = 0, total
    else:
        if line > total:
            raise InvalidInput(f"line {line} is past the script's end ({total} lines)")
        start, end = max(0, line - 1 - context), min(total, line + context)
    returned = f"lines {start + 1}-{end} of {total}" if end > start else "the script is empty"
    return ScriptExcerpt(
        app_id=app_id,
        version=version,
        total_lines=total,
        returned=returned,
        script=untrusted(_numbered(lines, start, end), "load script"),
    )


def _tab_offsets(lines: list[str]) -> list[int]:
    """Lines before each tab's line 1: a `///$tab` line starts a tab, as Qlik's script text marks them."""
    marks = [n + 1 for n, text in enumerate(lines) if text.startswith(TAB_MARK)]
    if not marks or any(text.strip() for text in lines[: marks[0] - 1]):
        marks.insert(0, 0)
    return marks


def _issues(found: list[ScriptIssue], lines: list[str]) -> list[Issue]:
    offsets = _tab_offsets(lines)
    out: list[Issue] = []
    for i in found:
        line = offsets[i.tab] + i.line if i.line is not None and i.tab is not None and i.tab < len(offsets) else None
        text = lines[line - 1][:300] if line is not None and 0 < line <= len(lines) else None
        out.append(
            Issue(
                line=line,
                tab=i.tab,
                line_in_tab=i.line,
                column=i.column,
                message=(i.msg or "?")[:300],
                info=i.info[:300] or None,
                text=text,
            )
        )
    return out


@read("Check app script")
async def check_app_script(
    reloads: Reloads,
    script: Annotated[str, Field(min_length=1, max_length=SCRIPT_MAX)],
) -> ScriptCheck:
    """Check a load script's syntax with Qlik: errors with their lines. Runs nothing, so a missing field or file
    shows only when the script runs."""
    errors, warnings = await reloads.api.validate(script)
    lines = script.splitlines()
    return ScriptCheck(valid=not errors, errors=_issues(errors, lines), warnings=_issues(warnings, lines))


def source(clients: Deps) -> AppReloadSource:
    return AppReloadSource(ReloadsApi(clients.qlik))
