"""The audit trail: one JSON line per call of a tool that writes, never with a secret in it.

Lines are ASCII-only JSON: a newline, U+2028 or any other character in an argument is escaped, so one
call is always exactly one line, whatever a reader counts as a line break.
"""

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mcp.server.auth.middleware.auth_context import get_access_token

from qlik_tasks_mcp.client.redact import redact, redact_cut

DETAIL_MAX = 500
log = logging.getLogger("qlik_tasks_mcp.audit")


def signed_in_person() -> dict[str, str] | None:
    """The person the current request acts as (QLIK_MCP_AUTH=oauth): {id, name}; None for an API key's calls."""
    token = get_access_token()
    if token is None or token.subject is None:
        return None
    return {"id": token.subject, "name": str((token.claims or {}).get("name", ""))}


def unwritable(path: str) -> str | None:
    """Why lines cannot be appended to `path` (the OS's reason), or None when they can: asked at start-up, so a
    server whose writes could not be audited never starts. Creates the file if it is missing, as a write would."""
    try:
        with Path(path).open("a", encoding="utf-8"):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class Audit:
    def __init__(self, path: str | None = None, stream: TextIO | None = None) -> None:
        self._path = Path(path) if path else None
        self._stream = stream
        self._lock = threading.Lock()

    def redirect(self, stream: TextIO) -> None:
        self._path = None
        self._stream = stream

    def write(self, tool: str, args: dict[str, Any], outcome: str, detail: str | None = None) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "audit": "write",
            "tool": tool,
            "args": args,
            "outcome": outcome,
        }
        person = signed_in_person()
        if person is not None:
            record["person"] = person
        if detail:
            record["detail"] = redact_cut(detail, DETAIL_MAX)
        line = redact(json.dumps(record, default=str, separators=(",", ":"), ensure_ascii=True))
        try:
            self._append(line)
        except OSError as exc:
            # The call's outcome stands (an action done stays done; a retrying assistant would repeat it): the
            # line goes to stderr in a warning instead, so the trail keeps it.
            log.warning("audit line not written to %s (%s): %s", self._path or "stream", exc.strerror or exc, line)

    def _append(self, line: str) -> None:
        with self._lock:
            if self._path is not None:
                with self._path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            else:
                # Never stdout: under stdio that channel carries the protocol.
                stream = self._stream or sys.stderr
                stream.write(line + "\n")
                stream.flush()
