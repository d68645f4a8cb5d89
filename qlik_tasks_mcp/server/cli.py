"""`qlik-tasks-mcp`: the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pydantic import ValidationError

from qlik_tasks_mcp import __version__
from qlik_tasks_mcp.client.redact import RedactingFilter
from qlik_tasks_mcp.server.settings import ConfigError, Settings
from qlik_tasks_mcp.tools.inventory import TOOLSETS

log = logging.getLogger("qlik_tasks_mcp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qlik-tasks-mcp",
        description="MCP server for Qlik Cloud and Qalyptus scheduled tasks. Settings also come from "
        "environment variables (QLIK_TENANT_URL, QLIK_API_KEY, QLIK_MCP_*); flags win.",
    )
    parser.add_argument("--version", action="version", version=f"qlik-tasks-mcp {__version__}")
    parser.add_argument("--sandbox", action="store_true", default=None, help="serve a built-in simulated tenant")
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
    overrides: dict[str, Any] = {key: value for key, value in vars(args).items() if value is not None}
    return Settings(**overrides)


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
        settings = load_settings(args)
        settings.check_tenant()
        settings.check_http()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"qlik-tasks-mcp: invalid settings: {problems}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"qlik-tasks-mcp: {exc}", file=sys.stderr)
        return 2

    from qlik_tasks_mcp.server.app import build_server

    mcp, backend = build_server(settings)
    configure_logging(settings.log_level)
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
    if settings.transport == "http":
        from qlik_tasks_mcp.server.transport import run_http

        run_http(mcp, settings)
    else:
        mcp.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
