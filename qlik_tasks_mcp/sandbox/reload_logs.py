"""A sandbox reload run through its app's script: the Qlik script log (numbered with the script's own lines) and
the reload metadata, both the same every time for the same reload."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qlik_tasks_mcp.sandbox import app_scripts
from qlik_tasks_mcp.sandbox.core import Sandbox, stamp
from qlik_tasks_mcp.sandbox.qlik_script import Statement, read_script

_FILE = re.compile(r"\[(lib://[^\]]+)\]")
_FIELDS = re.compile(r"\bLOAD\b(.*?)\b(?:FROM|RESIDENT|AUTOGENERATE|INLINE)\b", re.IGNORECASE | re.DOTALL)


def error_message(script: str, defect: str) -> str:
    if defect == "field":
        return "Field 'CustomerKey' not found"
    if defect == "file":
        path = next(p for p in _FILE.findall(script) if "fx_rates_2026" in p)
        return f"Cannot open file: '{path}' (Connector error: File not found)"
    return "Unexpected token: 'STORE', expected one of: 'where', 'while', 'group', 'order', ';'"


@dataclass
class Execution:
    """What a run printed: (script line or None, text) entries, the loads and stores it made, and its error."""

    entries: list[tuple[int | None, str]] = field(default_factory=list[tuple[int | None, str]])
    loads: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    failed: bool = False


def _fields(text: str) -> list[str]:
    found = _FIELDS.search(text)
    if found is None:
        return []
    parts = [p.strip() for p in re.split(r",(?![^(]*\))", found.group(1)) if p.strip()]
    return [re.split(r"\s+AS\s+", p, flags=re.IGNORECASE)[-1].strip() for p in parts]


def _label(statement: Statement) -> str:
    tokens = statement.tokens
    if len(tokens) > 1 and tokens[1].text == ":":
        return tokens[0].text.strip('[]"')
    return "Orders" if "JOIN" in statement.words() else ""


def _run_statement(run: Execution, statement: Statement, text: str, rng: random.Random) -> None:
    words = statement.words()
    file = _FILE.search(text)
    if "LOAD" not in words:
        if "STORE" in words and file:
            run.loads.append(
                {"type": "Store", "path": file.group(1), "label": words[1].title(), "rows": 0, "fields": 0}
            )
        return
    fields = _fields(text)
    rows = rng.randint(1_000, 900_000) if "AUTOGENERATE" not in words else rng.randint(365, 3_000)
    if file:
        run.entries.append((None, f"{len(fields)} fields found: {', '.join(fields)}, "))
        run.loads.append(
            {"type": "Load", "path": file.group(1), "label": _label(statement), "rows": rows, "fields": len(fields)}
        )
    run.entries.append((None, f"{rows:,} Lines fetched"))


def _fail(run: Execution, lines: list[str], first: int, last: int, message: str, marker: str | None) -> None:
    if marker:
        before = " ".join(line.strip() for line in lines[first - 1 : last - 1] if line.strip())
        shown = f"{before} >>>>>>{marker}<<<<<< " + lines[last - 1].strip()[len(marker) :].strip()
    else:
        shown = " ".join(line.strip() for line in lines[first - 1 : last] if line.strip())
    run.entries += [
        (None, "The following error occurred:"),
        (None, message),
        (None, "---"),
        (None, "The error occurred here:"),
        (None, shown),
        (None, "---"),
        (None, "Data has not been loaded. Please correct the error and try loading again."),
        (None, "Execution Failed"),
        (None, "Execution finished."),
    ]
    run.failed = True


def execute(sandbox: Sandbox, reload: dict[str, Any]) -> Execution:
    defect: str | None = reload["_defect"]
    app_id = reload["appId"]
    script = (
        app_scripts.broken_script(sandbox, app_id, defect) if defect else app_scripts.working_script(sandbox, app_id)
    )
    bad_line = app_scripts.defect_line(script, defect) if defect else None
    lines = script.splitlines()
    script_tabs, statements, _ = read_script(script)
    rng = random.Random(reload["id"])
    run = Execution()
    starts = [s.first_line + script_tabs[s.tab].offset for s in statements]
    for index, statement in enumerate(statements):
        offset = script_tabs[statement.tab].offset
        first, last = starts[index], statement.last_line + offset
        # A missing `;` fails the statement before the token that could not follow it.
        syntax_here = defect == "syntax" and index + 1 < len(starts) and starts[index + 1] == bad_line
        end = bad_line if syntax_here and bad_line else last
        run.entries += [(n, lines[n - 1]) for n in range(first, end + 1) if lines[n - 1].strip()]
        if bad_line is not None and (first <= bad_line <= last or syntax_here):
            marker = lines[end - 1].split()[0] if syntax_here else None
            _fail(run, lines, first, end, reload["_error"], marker)
            return run
        _run_statement(run, statement, "\n".join(lines[first - 1 : last]), rng)
    return run


HEADER = [
    "Execution started.",
    "Qlik Sense Server Version 14.212.4",
    "CPU Target                    x64",
    "Operating System              Linux",
    "Wow64 mode                    Not using Wow64",
]
SUCCESS = [
    "Creating search index",
    "Search index creation completed successfully",
    "---",
    "App saved",
    "---",
    "Finished successfully",
    "0 forced error(s)",
    "0 synthetic key(s)",
    "Execution finished.",
]


def log_lines(sandbox: Sandbox, reload: dict[str, Any], status: str, now: datetime) -> list[str]:
    """The script log as Qlik writes it: `<time> <script line> <text>`, or 6 spaces instead of a line number."""
    app = sandbox.apps.get(reload["appId"])
    run = execute(sandbox, reload)
    kind = "partial" if reload["partial"] else "full"
    entries: list[tuple[int | None, str]] = [(None, text) for text in HEADER]
    entries.append((None, f"Reload ID: {reload['id']} ({kind} reload of {app.name if app else reload['appId']})"))
    entries += run.entries
    if not run.failed:
        entries += [(None, text) for text in SUCCESS]
    entries = _cut(reload, entries, status, now)
    rng = random.Random(reload["id"] + "clock")
    clock = reload["_created"] + timedelta(seconds=reload["_seconds"] * 0.2)
    out: list[str] = []
    for number, text in entries:
        clock += timedelta(milliseconds=rng.randint(1, 40))
        at = clock.strftime("%Y%m%dT%H%M%S.") + f"{clock.microsecond // 1000:03d}+0000"
        out.append(f"{at} {number:04d} {text}" if number is not None else f"{at}      {text}")
    return out


def _cut(
    reload: dict[str, Any], entries: list[tuple[int | None, str]], status: str, now: datetime
) -> list[tuple[int | None, str]]:
    """A reload still running (or canceled) shows the part it got through."""
    if status in ("SUCCEEDED", "FAILED"):
        return entries
    if status == "QUEUED":
        return []
    until = reload["_canceled"] if reload.get("_canceled") is not None else now
    done = (until - reload["_created"]) / timedelta(seconds=reload["_seconds"])
    kept = entries[: max(len(HEADER), int(len(entries) * min(done, 0.95)))]
    if status == "CANCELED":
        kept += [(None, "Reload was aborted by the user."), (None, "Execution finished.")]
    return kept


def metadata(sandbox: Sandbox, reload: dict[str, Any], ended: datetime) -> dict[str, Any]:
    """A ReloadMeta (apps.json) of an ended reload."""
    run = execute(sandbox, reload)
    rng = random.Random(reload["id"] + "meta")
    statements = [_statement(sandbox, reload, load, rng) for load in run.loads]
    loaded = sum(s["dataSize"] for s in statements if s["type"] == "Load")
    stored = sum(s["dataSize"] for s in statements if s["type"] == "Store")
    return {
        "reloadId": reload["id"],
        "endTime": stamp(ended),
        "success": not run.failed and reload.get("_canceled") is None,
        "duration": int(reload["_seconds"] * 800),
        "isPartialReload": reload["partial"],
        "skipStore": False,
        "rowLimit": -1,
        "loadFilesBytes": loaded,
        "loadDataFilesBytes": loaded,
        "loadExternalBytes": 0,
        "storeFilesBytes": stored,
        "storeDataFilesBytes": stored,
        "statements": statements,
        "includeFiles": [],
    }


def _statement(sandbox: Sandbox, reload: dict[str, Any], load: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    app = sandbox.apps[reload["appId"]]
    path = load["path"].removeprefix("lib://DataFiles/")
    return {
        "type": load["type"],
        "label": load["label"] or path.rsplit("/", 1)[-1],
        "tableName": path.rsplit("/", 1)[-1].rsplit(".", 1)[0],
        "qri": f"qri:qdf:space://{app.space_id}#{path}",
        "connection": "DataFiles",
        "connectionId": f"{app.space_id[:8]}-datafiles",
        "nbrOfRows": load["rows"] or rng.randint(1_000, 900_000),
        "nbrOfFields": load["fields"] or 5,
        "dataSize": rng.randint(50_000, 40_000_000),
        "duration": rng.randint(40, int(reload["_seconds"] * 300) + 50),
    }
