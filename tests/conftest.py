from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, ElicitResult
from pydantic import SecretStr

from qlik_tasks_mcp.sandbox import Sandbox, build_sandbox
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import Backend, TaskServer, build_server
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools import sources
from tests.spec_check import SpecRecorder, ValidatingTransport


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def scans_on_a_stopped_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan's time budget runs on the wall clock (it waits on the tenant). Here the tenant answers in-process, so
    a busy machine would spend it instead: the tests' scans are bounded by their request budgets alone."""
    monkeypatch.setattr(sources, "SCAN_CLOCK", lambda: 0.0)


@dataclass
class Harness:
    mcp: TaskServer
    backend: Backend
    sandbox: Sandbox
    recorder: SpecRecorder
    audit: io.StringIO
    settings: Settings
    transport: ValidatingTransport
    elicit_answers: list[ElicitResult] = field(default_factory=list)
    elicit_messages: list[str] = field(default_factory=list)

    def client(self, *, elicitation: bool = False, **kwargs: Any) -> Client:
        if elicitation:

            async def answer(_ctx: Any, params: Any) -> ElicitResult:
                self.elicit_messages.append(params.message)
                return self.elicit_answers.pop(0)

            kwargs["elicitation_callback"] = answer
        return Client(self.mcp, **kwargs)

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.getvalue().splitlines() if line.strip()]


def make_harness(
    *, share_with: Harness | None = None, sandbox_options: dict[str, Any] | None = None, **settings: Any
) -> Harness:
    """A server on a fresh sandbox tenant, or another replica on the same tenant as `share_with`."""
    if share_with is None:
        # The tenant answers the key of the server's sandbox profile, as a `--sandbox` server's does.
        profile = {"profile": settings["sandbox_profile"]} if "sandbox_profile" in settings else {}
        sandbox, app = build_sandbox(**(profile | (sandbox_options or {})))
        recorder = SpecRecorder()
        transport = ValidatingTransport(SandboxTransport(app), recorder)
    else:
        sandbox, recorder, transport = share_with.sandbox, share_with.recorder, share_with.transport
    config = Settings(sandbox=True, confirm_secret=SecretStr("test-secret-0123456789abcdef"), **settings)
    mcp, backend = build_server(config, transport=transport)
    audit = io.StringIO()
    backend.audit.redirect(audit)
    return Harness(mcp, backend, sandbox, recorder, audit, config, transport)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = make_harness()
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


@pytest.fixture
async def seeded() -> AsyncIterator[Harness]:
    """A server on the history sandbox (sandbox/history.py): two weeks of runs with known slowdowns, misses and
    doubles, as `--sandbox-history` serves it."""
    h = make_harness(sandbox_options={"history": True})
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


def first_error(report: dict[str, Any], group: dict[str, Any]) -> str:
    """A find_failures group's first error: the line of the report's errors fence it names ("" when none)."""
    number = group.get("error")
    for line in (report.get("errors") or "").splitlines():
        head, _, text = line.partition("): ")
        if number is not None and head.startswith(f"{number} (") and text:
            return text
    return ""


def fenced_once(report: dict[str, Any], group: dict[str, Any]) -> bool:
    """A group's first error is one line of the result's one fence (its `errors` block), said there once."""
    errors: str = report["errors"]
    text = first_error(report, group)
    one_fence = errors.count("BEGIN UNTRUSTED") == 1 and "UNTRUSTED" not in json.dumps(report["groups"])
    said_once = sum(line.endswith(f"): {text}") for line in errors.splitlines()) == 1
    return one_fence and bool(text) and said_once and text not in json.dumps(report["groups"])


def row_ids(page: dict[str, Any]) -> list[dict[str, Any]]:
    """A list_tasks page's rows with their app and owner ids filled in from the page's name -> id maps (each id is
    said once per page: a row naming an app or owner that several rows share carries the name alone)."""
    apps, owners = page.get("app_ids", {}), page.get("owner_ids", {})
    return [
        r
        | ({"app_id": apps[r["app"]]} if "app_id" not in r and r.get("app") in apps else {})
        | ({"owner_id": owners[r["owner"]]} if "owner_id" not in r and r.get("owner") in owners else {})
        for r in page["tasks"]
    ]
