"""Settings as a new user meets them: only documented variables count, bad values stop the start with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr, ValidationError

from qlik_tasks_mcp.sandbox import SANDBOX_API_KEY, build_sandbox
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.cli import load_settings, main, parse_args
from qlik_tasks_mcp.server.settings import (
    README,
    REWRITE,
    TABLE_END,
    TABLE_START,
    ConfigError,
    Settings,
    documented_settings,
    readme_table,
    rewritten_readme,
)
from qlik_tasks_mcp.tools.inventory import TOOLSETS
from tests.conftest import data
from tests.test_stdio import run_cli

TENANT = {"QLIK_TENANT_URL": "https://tenant.example.com", "QLIK_API_KEY": "tenant-key-0123456789"}
# Names other programs use; none of them is ours.
BARE = {
    "LOG_LEVEL": "info",
    "PORT": "1",
    "HOST": "0.0.0.0",  # noqa: S104 - the value must be ignored
    "API_KEY": "bare-api-key-0123456789",
    "TENANT_URL": "https://bare.example.com",
    "SANDBOX": "true",
    "READ_ONLY": "true",
    "TRANSPORT": "http",
    "TOOLSETS": "nope",
}


def make(**fields: Any) -> Settings:
    """Settings from these fields (as the command line passes them) and the process environment."""
    return Settings(**fields)


def test_bare_variables_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in BARE.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(name.lower(), value)
    settings = make()
    assert settings.log_level == "WARNING" and settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.api_key is None and settings.tenant_url is None
    assert not settings.sandbox and not settings.read_only and settings.transport == "stdio"


def test_documented_variables_are_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLIK_MCP_PORT", "9001")
    monkeypatch.setenv("QLIK_MCP_READ_ONLY", "true")
    monkeypatch.setenv("QLIK_MCP_LOG_LEVEL", "INFO")
    settings = make()
    assert (settings.port, settings.read_only, settings.log_level) == (9001, True, "INFO")
    flagged = load_settings(parse_args(["--port", "9002", "--log-level", "ERROR", "--sandbox"]))
    assert (flagged.port, flagged.log_level, flagged.sandbox, flagged.read_only) == (9002, "ERROR", True, True)


def test_short_confirm_secret_exits_with_one_line() -> None:
    secret = "short-secret"
    done = run_cli("--sandbox", env={"QLIK_MCP_CONFIRM_SECRET": secret})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "QLIK_MCP_CONFIRM_SECRET" in lines[0] and "16 bytes" in lines[0]
    assert "Traceback" not in done.stderr and secret not in done.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("t.eu.qlikcloud.com", "https://t.eu.qlikcloud.com"),
        ("https://t.eu.qlikcloud.com/", "https://t.eu.qlikcloud.com"),
        ("https://t.eu.qlikcloud.com/api/v1", "https://t.eu.qlikcloud.com"),
        (" t.eu.qlikcloud.com/api/v1/ ", "https://t.eu.qlikcloud.com"),
    ],
)
def test_tenant_url_is_normalised(given: str, expected: str) -> None:
    settings = make(tenant_url=given, api_key=SecretStr("tenant-key-0123456789"))
    assert settings.tenant_url == expected
    settings.check_tenant()


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("http://t.eu.qlikcloud.com", "https://"),
        ("https://t.eu.qlikcloud.com/hub/home", "a path"),
        ("https://t.eu.qlikcloud.com/?x=1", "a query"),
        ("https://user:pw@t.eu.qlikcloud.com", "credentials"),
    ],
)
def test_tenant_url_that_cannot_work_is_refused(given: str, named: str) -> None:
    with pytest.raises(ConfigError, match="QLIK_TENANT_URL") as refused:
        make(tenant_url=given, api_key=SecretStr("tenant-key-0123456789")).check_tenant()
    assert named in str(refused.value) and "pw" not in str(refused.value)


def test_tenant_url_with_a_path_is_refused_at_startup() -> None:
    done = run_cli(env=TENANT | {"QLIK_TENANT_URL": "https://tenant.example.com/hub/home"})
    assert done.returncode == 2
    assert "QLIK_TENANT_URL" in done.stderr and "base URL" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.anyio
async def test_tenant_url_pasted_with_api_prefix_reaches_the_tenant() -> None:
    # The sandbox tenant answers at https://sandbox.qlikcloud.invalid/api/v1/...; before normalising, this URL
    # made every call go to /api/v1/api/v1/... and fail.
    _, app = build_sandbox()
    settings = make(
        tenant_url="sandbox.qlikcloud.invalid/api/v1/", api_key=SecretStr(SANDBOX_API_KEY), toolsets="reload"
    )
    mcp, backend = build_server(settings, transport=SandboxTransport(app))
    async with Client(mcp) as client:
        listed = data(await client.call_tool("list_reload_tasks", {"limit": 1}))
        assert len(listed["tasks"]) == 1
    await backend.aclose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("acme.qalyptus.net", "https://acme.qalyptus.net/api/v1"),
        ("https://acme.qalyptus.net", "https://acme.qalyptus.net/api/v1"),
        ("https://acme.qalyptus.net/api/v1/", "https://acme.qalyptus.net/api/v1"),
    ],
)
def test_qalyptus_url_is_normalised(given: str, expected: str) -> None:
    settings = make(qalyptus_url=given, qalyptus_api_key=SecretStr("qalyptus-key-0123"))
    assert settings.qalyptus_url == expected
    assert [org.url for org in settings.qalyptus_organizations()] == [expected]


@pytest.mark.parametrize(
    ("given", "named"),
    [("http://acme.qalyptus.net/api/v1", "https"), ("https://acme.qalyptus.net/reports", "/api/v1")],
)
def test_qalyptus_url_that_cannot_work_is_refused(given: str, named: str) -> None:
    with pytest.raises(ValidationError, match="QALYPTUS_URL") as refused:
        make(qalyptus_url=given, qalyptus_api_key=SecretStr("qalyptus-key-0123"))
    assert named in str(refused.value)


def test_toolsets_that_leave_no_tool_exit_and_say_why() -> None:
    done = run_cli("--toolsets", "qalyptus", env=TENANT)
    assert done.returncode == 2
    assert "no tool" in done.stderr and "QALYPTUS_URL" in done.stderr and "Traceback" not in done.stderr
    assert TENANT["QLIK_API_KEY"] not in done.stderr


def test_an_unwritable_audit_log_stops_the_start_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "audit.log"
    done = run_cli("--sandbox", "--audit-log", str(missing))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "QLIK_MCP_AUDIT_LOG (--audit-log)" in line and str(missing) in line and "No such file or directory" in line
    # The variable too, and a directory given for the file.
    done = run_cli("--sandbox", env={"QLIK_MCP_AUDIT_LOG": str(tmp_path)})
    assert done.returncode == 2 and "Is a directory" in done.stderr and "Traceback" not in done.stderr


def test_an_unwritable_audit_log_is_refused_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sandbox", "--audit-log", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("qlik-tasks-mcp: QLIK_MCP_AUDIT_LOG (--audit-log)") and "Is a directory" in line
    with pytest.raises(ConfigError, match="cannot be written"):
        make(sandbox=True, audit_log=str(tmp_path / "no-such-dir" / "audit.log")).check_audit_log()


def test_a_writable_audit_log_passes_the_start_check(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make(sandbox=True, audit_log=str(path)).check_audit_log()
    make(sandbox=True).check_audit_log()  # unset: lines go to stderr
    assert path.exists() and path.read_text() == ""


def test_the_readme_settings_table_is_what_the_settings_declare() -> None:
    shown = README.read_text(encoding="utf-8").split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert shown == readme_table(), (
        f"README.md's settings table differs from server/settings.py: rewrite it with `{REWRITE}` and commit README.md"
    )
    assert "`QLIK_MCP_APPROVAL`" in shown and f"all: `{','.join(t.name for t in TOOLSETS)}`" in shown


def test_every_setting_says_what_it_does_under_a_documented_name() -> None:
    documented = documented_settings()
    assert [d.field for d in documented] == list(Settings.model_fields)
    for setting in documented:
        assert setting.variable.startswith(("QLIK_", "QALYPTUS_")), setting
        assert setting.meaning and setting.default, f"{setting.field}: give setting() a meaning"
        assert setting.flag is None or setting.flag == "--" + setting.field.replace("_", "-"), setting


def test_help_comes_from_the_settings_and_the_inventory() -> None:
    done = run_cli("--help", env={"COLUMNS": "10000"})  # no wrapping, which would split words at hyphens
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for setting in documented_settings():
        if setting.flag:
            assert setting.flag in text and f"[{setting.variable}]" in text, setting
        else:
            assert setting.variable in text.split("environment only:")[1], setting
    for toolset in TOOLSETS:
        assert f"{toolset.name} ({' '.join(toolset.description.split())})" in text, toolset.name
    assert "--toolsets" in text and "default: stdio" in text


def test_the_readme_is_rewritten_between_its_markers_only() -> None:
    text = f"before\n{TABLE_START}\nold table\n{TABLE_END}\nafter\n"
    assert rewritten_readme(text) == f"before\n{TABLE_START}\n{readme_table()}\n{TABLE_END}\nafter\n"
    with pytest.raises(ValueError, match="settings:start"):
        rewritten_readme("no markers here")
