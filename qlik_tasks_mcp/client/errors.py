"""One typed error for every API family, and the one mapper from HTTP answers to it.

Everything a tenant sends is redacted whole before it is cut to length: a tenant that echoes the API key in
an error code, a traceId, the x-request-id header or any other field never gets it into a tool error.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from qlik_tasks_mcp.client.redact import redact, redact_cut


class ClientError(Exception):
    """The one base of every error the client raises: the tools map it to a tool error with its message."""


class InvalidInput(ClientError, ValueError):
    """Input refused before any request was sent; the message says what to fix."""


class UnsafeLinkError(ClientError, RuntimeError):
    """A link from the API points away from the configured tenant; it is never followed."""


class ApiError(ClientError):
    """An error answer from Qlik Cloud or Qalyptus, whatever shape its body had.

    Status 0 means no HTTP answer came back; the title then says what failed (name, TLS, refused, timeout).
    """

    def __init__(
        self,
        status: int,
        title: str,
        *,
        code: str | None = None,
        detail: str | None = None,
        trace_id: str | None = None,
        method: str = "",
        path: str = "",
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = _clean(code)
        self.title = redact(title)
        self.detail = _clean(detail)
        self.trace_id = _clean(trace_id)
        self.method = method
        self.path = redact(path)
        self.hint = _clean(hint)
        super().__init__(str(self))

    def __str__(self) -> str:
        answer = f"HTTP {self.status}" if self.status else "no HTTP answer"
        head = f"{self.method} {self.path} -> {answer}".strip()
        code = f" [{self.code}]" if self.code else ""
        text = f"{head}{code}: {self.title}"
        if self.detail and self.detail != self.title:
            text += f" ({self.detail})"
        if self.trace_id:
            text += f" traceId={self.trace_id}"
        if self.hint:
            text += f". {self.hint}"
        # Every part was redacted already; this pass also catches a secret that only the joined text completes.
        return redact(text)


class ProbablyDone(ApiError):
    """A request that may have acted before its answer was lost, whose repeat found the work already done."""


def _clean(value: str | None) -> str | None:
    return redact(value) if value else None


_MAX_TEXT = 300
# Error bodies are read only this far: enough for every documented shape, never a hostile tenant's megabytes.
ERROR_BODY_BYTES = 64 * 1024


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return redact_cut(text, _MAX_TEXT)


def _body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content[:ERROR_BODY_BYTES])
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def error_from_response(response: httpx.Response, hint: str | None = None) -> ApiError:
    """Map any of the error bodies the specs describe into ApiError.

    Shapes: reload-tasks and sharing-tasks `{"errors":[{"code": str, "title", "detail"|"details"}],
    "traceId"}`; tasks `{"errors":[{"code": int, "title", "context", "inner"}], "traceId"}`;
    Qalyptus `{"isSuccess": false, "error", "errorDetails"}`; anything else is kept as short text.
    """
    status = response.status_code
    method = response.request.method if response.request else ""
    path = response.request.url.path if response.request else ""
    title = response.reason_phrase or f"HTTP {status}"
    code: str | None = None
    detail: str | None = None
    trace_id = _text(response.headers.get("x-request-id"))
    body = _body(response)
    if isinstance(body, dict):
        trace_id = _text(body.get("traceId")) or trace_id
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = _text(first.get("code"))
            title = _text(first.get("title")) or title
            detail = _first_detail(first)
            if len(errors) > 1:
                detail = f"{detail or ''} (+{len(errors) - 1} more errors)".strip()
        elif "isSuccess" in body:
            title = _text(body.get("error")) or title
            detail = _text(body.get("errorDetails"))
        elif body.get("title") or body.get("message"):
            title = _text(body.get("title") or body.get("message")) or title
            detail = _text(body.get("detail"))
    elif response.content:
        detail = _text(response.content[:ERROR_BODY_BYTES].decode("utf-8", errors="replace").strip())
    return ApiError(status, title, code=code, detail=detail, trace_id=trace_id, method=method, path=path, hint=hint)


def _first_detail(first: dict[str, Any]) -> str | None:
    detail = first.get("detail") or first.get("details") or first.get("context")
    inner = first.get("inner")
    if isinstance(inner, dict) and inner.get("title"):
        detail = f"{_plain(detail) + ': ' if detail else ''}{_plain(inner['title'])}"
    return _text(detail)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
