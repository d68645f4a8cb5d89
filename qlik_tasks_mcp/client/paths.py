"""Path parameters: validated and encoded, so an id can never reach another endpoint."""

from __future__ import annotations

import re
from urllib.parse import quote

from qlik_tasks_mcp.client.errors import InvalidInput

# Qlik ids are hex, UUIDs or base64url-like strings; Qalyptus ids are GUIDs; file aliases add dots.
_ALLOWED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@~-]{0,127}$")


def path_segment(value: str, name: str = "id") -> str:
    """Return `value` encoded as one URL path segment, or raise InvalidInput saying what to fix."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string")
    if value in {".", ".."} or not _ALLOWED.match(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidInput(
            f"{name} {shown!r} is not a valid id: use 1-128 letters, digits or . _ : @ ~ - "
            "(no '/', '?', '#', '%', spaces), as returned by a list or get tool"
        )
    return quote(value, safe="")
