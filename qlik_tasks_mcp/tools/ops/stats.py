"""get_reload_stats (served by the ops toolset): which reloads got slower. Per app (or per task), over a window,
runs, failures, median and p90 duration beside the previous window of the same length, sorted by slowdown, with
the slowest statements of the newest reload where Qlik still keeps its metadata (an app's last 10 reloads).

Imported at the end of tools.py, whose service (RunSources) and helpers it uses.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.reloads import ReloadDoc, ReloadsApi
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import row_names
from qlik_tasks_mcp.tools.operation import read
from qlik_tasks_mcp.tools.ops.reload_window import SCAN_SECONDS, ReloadWindow, RunSources, read_window
from qlik_tasks_mcp.tools.ops.selection import unless_unavailable
from qlik_tasks_mcp.tools.sources import Budget, parse_time, scan_now, short_time

STATS_REQUESTS = 300
# The rows whose newest reload's statements are read (one metadata request each).
STATEMENT_ROWS = 3
STATEMENTS_SHOWN = 3
FAILED = ("FAILED", "EXCEEDED_LIMIT")
BY_TASK = {"reload-tasks": "reload", "tasks": "task"}


class ReloadStats(Compact):
    app_id: str
    app: str | None = None
    task: str | None = Field(default=None, description="With by=task: kind and id of the task that started these.")
    runs: int
    failures: int
    median_s: float | None = Field(default=None, description="Of the window's succeeded reloads.")
    p90_s: float | None = None
    before_runs: int
    before_failures: int
    before_median_s: float | None = None
    before_p90_s: float | None = None
    slowdown: float | None = Field(default=None, description="median_s / before_median_s.")
    statements_of: str | None = Field(default=None, description="Reload whose slowest statements are in `statements`.")


class ReloadStatsReport(Compact):
    window: str
    rows: list[ReloadStats]
    statements: str | None = Field(default=None, description="Slowest statements by row, fenced tenant text.")
    reloads_read: int
    more_rows: int = 0
    stopped_early: bool = False
    not_read: list[str] = []
    note: str | None = None


def _seconds(doc: ReloadDoc) -> float | None:
    start, end = parse_time(doc.start_time), parse_time(doc.end_time)
    if doc.status.upper() != "SUCCEEDED" or start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _key(doc: ReloadDoc, by: str) -> tuple[str, str | None] | None:
    if by == "app":
        return doc.app_id, None
    kind = BY_TASK.get(doc.resource_type)
    return (doc.app_id, f"{kind} {doc.resource_id}") if kind and doc.resource_id else None


def _rows(window: ReloadWindow, middle: datetime, by: str) -> list[ReloadStats]:
    runs: dict[tuple[str, str | None], tuple[list[ReloadDoc], list[ReloadDoc]]] = {}
    for doc in window.reloads:
        key, created = _key(doc, by), parse_time(doc.creation_time)
        if key is None or created is None:
            continue
        pair = runs.setdefault(key, ([], []))
        pair[0 if created >= middle else 1].append(doc)
    rows = []
    for (app_id, task), (now, before) in runs.items():
        row = ReloadStats(
            app_id=app_id,
            task=task,
            runs=len(now),
            failures=sum(d.status.upper() in FAILED for d in now),
            before_runs=len(before),
            before_failures=sum(d.status.upper() in FAILED for d in before),
        )
        took = [s for s in map(_seconds, now) if s is not None]
        took_before = [s for s in map(_seconds, before) if s is not None]
        if took:
            row.median_s, row.p90_s = round(statistics.median(took), 1), round(_p90(took), 1)
        if took_before:
            row.before_median_s = round(statistics.median(took_before), 1)
            row.before_p90_s = round(_p90(took_before), 1)
        if row.median_s is not None and row.before_median_s:
            row.slowdown = round(row.median_s / row.before_median_s, 2)
        rows.append(row)
    return sorted(rows, key=lambda r: (r.slowdown is None, -(r.slowdown or 0), -r.runs, r.app_id, r.task or ""))


def _newest_succeeded(window: ReloadWindow, row: ReloadStats, by: str) -> ReloadDoc | None:
    for doc in window.reloads:  # newest first
        if doc.app_id == row.app_id and _key(doc, by) == (row.app_id, row.task) and _seconds(doc) is not None:
            return doc
    return None


async def _statements(
    api: ReloadsApi, window: ReloadWindow, rows: list[ReloadStats], by: str, budget: Budget
) -> list[tuple[str, str]]:
    """The slowest statements of the newest succeeded reload of the slowed rows: Qlik keeps an app's last 10."""
    found: list[tuple[str, str]] = []
    for row in [r for r in rows if (r.slowdown or 0) > 1][:STATEMENT_ROWS]:
        doc = _newest_succeeded(window, row, by)
        if doc is None or not budget.spend(scan_now(), f"reload metadata of {doc.id}"):
            continue
        try:
            meta = await api.metadata(row.app_id, doc.id)
        except ApiError as exc:
            budget.skipped.append(f"reload metadata of {doc.id} (HTTP {exc.status})")
            continue
        if meta is None:
            continue
        timed = [s for s in meta.statements if isinstance(s.get("duration"), int | float)]
        slowest = sorted(timed, key=lambda s: -s["duration"])[:STATEMENTS_SHOWN]
        text = "; ".join(
            f"{one_line(str(s.get('label') or s.get('tableName') or s.get('type') or '?'), 60)} "
            f"{s['duration'] / 1000:.1f} s"
            for s in slowest
        )
        if text:
            row.statements_of = doc.id
            found.append((row.task or row.app_id, text))
    return found


@read("Reload time trends")
async def get_reload_stats(
    sources: RunSources,
    app_ids: Annotated[list[str] | None, Field(max_length=200, description="Default: the whole tenant.")] = None,
    days: Annotated[int, Field(ge=1, le=30, description="Window, compared with the one before it.")] = 7,
    by: Literal["app", "task"] = "app",
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
) -> ReloadStatsReport:
    """Reload runs, failures, median/p90 seconds per app or task over a window vs the previous one, most slowed
    first, with the slowest statements where Qlik keeps them."""
    api = sources.reloads
    if api is None:
        raise InvalidInput("reload stats read app reloads: serve the reloads toolset beside ops")
    now = datetime.now(UTC)
    middle, since = now - timedelta(days=days), now - timedelta(days=2 * days)
    budget = Budget(requests=STATS_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    notes: list[str] = []

    async def known_apps() -> set[str]:
        apps: set[str] = set()
        for found in sources.by_kind.values():
            apps |= await unless_unavailable(found.app_ids(), set(), notes)
        return apps

    window = await read_window(api, since, budget, scan_now, app_ids, known_apps)
    rows = _rows(window, middle, by)
    shown = rows[:limit]
    statements = await _statements(api, window, shown, by, budget)
    names = await row_names(sources.names, (r.app_id for r in shown), [])
    for row in shown:
        row.app = names.app(row.app_id)
    if budget.skipped:
        notes.append(
            f"Stopped early: {len(budget.skipped)} reads skipped to stay within {STATS_REQUESTS} requests / "
            f"{SCAN_SECONDS:.0f} s; the oldest reloads are missing from the earlier window: narrow with app_ids."
        )
    return ReloadStatsReport(
        window=f"{short_time(middle.isoformat())} to {short_time(now.isoformat())}, vs the {days} days before",
        rows=shown,
        statements=untrusted_fields(statements, "slowest statements") if statements else None,
        reloads_read=len(window.reloads),
        more_rows=len(rows) - len(shown),
        stopped_early=bool(budget.skipped),
        not_read=budget.skipped[:20],
        note=" ".join(filter(None, [window.note, *notes, tenant_text_note(["app"])])),
    )
