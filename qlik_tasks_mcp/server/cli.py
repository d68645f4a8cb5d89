"""`qlik-tasks-mcp`: the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from qlik_tasks_mcp import __version__
from qlik_tasks_mcp.client.redact import RedactingFilter
from qlik_tasks_mcp.server.settings import ConfigError, Settings
from qlik_tasks_mcp.tools.inventory import TOOLSETS

if TYPE_CHECKING:
    from qlik_tasks_mcp.server.app import Backend

log = logging.getLogger("qlik_tasks_mcp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qlik-tasks-mcp",
        description="MCP server for Qlik Cloud and Qalyptus scheduled tasks. Settings also come from "
        "environment variables (QLIK_TENANT_URL, QLIK_API_KEY, QLIK_MCP_*); flags win.",
    )
    parser.add_argument("--version", action="version", version=f"qlik-tasks-mcp {__version__}")
    parser.add_argument("--sandbox", action="store_true", default=None, help="serve a built-in simulated tenant")
    parser.add_argument(
        "--sandbox-profile",
        choices=["admin", "user", "retired"],
        help="whose key the sandbox answers: a tenant admin's (default), a space member's (user), or an admin's "
        "on a tenant without /api/v1/reload-tasks (retired)",
    )
    parser.add_argument("--read-only", action="store_true", default=None, help="list and run no tool that writes")
    parser.add_argument(
        "--toolsets", help="comma-separated subset of: " + "; ".join(f"{t.name} ({t.description})" for t in TOOLSETS)
    )
    parser.add_argument("--transport", choices=["stdio", "http"], help="stdio (default) or streamable HTTP")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000)")
    parser.add_argument(
        "--stateless", action="store_true", default=None, help="HTTP without sessions, for replicas behind a balancer"
    )
    parser.add_argument("--audit-log", help="append audit lines to this file instead of stderr")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> Settings:
    # Flags arrive by field name; the environment is read by Settings through the documented names only.
    overrides: dict[str, Any] = {key: value for key, value in vars(args).items() if value is not None}
    return Settings(**overrides)


def setting_name(loc: tuple[int | str, ...]) -> str:
    """The name a user sets: a field's documented variable (QLIK_MCP_PORT), not its Python name."""
    field = Settings.model_fields.get(str(loc[0]))
    alias = field.validation_alias if field is not None else None
    return alias if isinstance(alias, str) else ".".join(str(part) for part in loc)


def describe(exc: ValidationError) -> str:
    # A check across settings (the Qalyptus organizations) has no location; its message names the variable.
    problems = [
        f"{setting_name(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        if e["loc"]
        else e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


def checked_settings(args: argparse.Namespace) -> Settings:
    """Settings that can start a server, or ConfigError with one line saying what to fix."""
    try:
        settings = load_settings(args)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    settings.check_tenant()
    settings.check_http()
    return settings


def no_tool_reason(settings: Settings, backend: Backend) -> str:
    reasons = [f"--toolsets {settings.toolsets} leaves no tool to serve"]
    if "qalyptus" in settings.selected_toolsets() and not backend.qalyptus:
        reasons.append(
            "the qalyptus toolset needs a Qalyptus organization: set QALYPTUS_URL and QALYPTUS_API_KEY, "
            "or QALYPTUS_ORGS"
        )
    if settings.read_only:
        reasons.append("read-only mode serves only the tools that read")
    reasons.append(f"or choose more toolsets from {','.join(t.name for t in TOOLSETS)}")
    return "; ".join(reasons)


def announce(settings: Settings, backend: Backend) -> None:
    if settings.sandbox:
        print(
            "qlik-tasks-mcp: *** SANDBOX MODE *** serving a simulated Qlik Cloud tenant with made-up data; "
            "nothing here reaches a real tenant.",
            file=sys.stderr,
        )
    names = ", ".join(t.name for t in backend.tools)
    mode = "read-only" if settings.read_only else "read-write"
    print(f"qlik-tasks-mcp: {len(backend.tools)} tools ({mode}): {names}", file=sys.stderr, flush=True)
    if "qalyptus" in settings.selected_toolsets() and not backend.qalyptus:
        print(
            "qlik-tasks-mcp: no Qalyptus organization configured, so the qalyptus tools are off (set QALYPTUS_URL "
            "and QALYPTUS_API_KEY, or QALYPTUS_ORGS)",
            file=sys.stderr,
            flush=True,
        )


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = checked_settings(args)
    except ConfigError as exc:
        print(f"qlik-tasks-mcp: {exc}", file=sys.stderr)
        return 2

    from qlik_tasks_mcp.server.app import build_server

    mcp, backend = build_server(settings)
    if not backend.tools:
        print(f"qlik-tasks-mcp: {no_tool_reason(settings, backend)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    announce(settings, backend)
    if settings.transport == "http":
        from qlik_tasks_mcp.server.transport import run_http

        run_http(mcp, settings)
    else:
        mcp.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
