"""`qlik-tasks-mcp`: the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import ValidationError

from qlik_tasks_mcp import __version__
from qlik_tasks_mcp.client.redact import RedactingFilter
from qlik_tasks_mcp.client.store import RedisStore
from qlik_tasks_mcp.server.settings import ConfigError, Documented, Settings, documented_settings
from qlik_tasks_mcp.tools.inventory import TOOLSETS

if TYPE_CHECKING:
    from qlik_tasks_mcp.server.app import Backend

log = logging.getLogger("qlik_tasks_mcp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    documented = documented_settings()
    parser = argparse.ArgumentParser(
        prog="qlik-tasks-mcp",
        description="MCP server for Qlik Cloud and Qalyptus scheduled tasks. Settings also come from "
        "environment variables (named in brackets below); flags win.",
        epilog="Settings from the environment only: "
        + ", ".join(d.variable for d in documented if d.flag is None)
        + " (the README's Settings table says what each does).",
    )
    parser.add_argument("--version", action="version", version=f"qlik-tasks-mcp {__version__}")
    for setting in documented:
        if setting.flag is not None:
            parser.add_argument(setting.flag, dest=setting.field, **_flag_options(setting))
    return parser.parse_args(argv)


def _flag_options(setting: Documented) -> dict[str, Any]:
    """The flag of a setting as the settings declare it: its kind, its choices, its help."""
    text = setting.meaning.replace("`", "")
    if setting.field == "toolsets":
        text += "; one or more of: " + "; ".join(f"{t.name} ({t.description})" for t in TOOLSETS)
    if setting.annotation is bool:
        return {"action": "store_true", "default": None, "help": _escaped(f"{text} [{setting.variable}]")}
    help_text = f"{text} (default: {setting.default.replace('`', '')}) [{setting.variable}]"
    options: dict[str, Any] = {"help": _escaped(help_text)}
    if get_origin(setting.annotation) is Literal:
        options["choices"] = list(get_args(setting.annotation))
    elif setting.annotation is int:
        options["type"] = int
    return options


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


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
    settings.check_audit_log()
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
    if backend.sign_in is not None:
        print(
            f"qlik-tasks-mcp: each person signs in to the tenant and acts as themselves (QLIK_MCP_AUTH=oauth); "
            f"OAuth issuer {backend.sign_in.base_url}, Qlik redirect URI {backend.sign_in.callback_url}",
            file=sys.stderr,
            flush=True,
        )
    if isinstance(backend.store, RedisStore):
        print(
            f"qlik-tasks-mcp: replicas share used confirmations, approvals and rate tiers through Redis at "
            f"{backend.store.where}",
            file=sys.stderr,
            flush=True,
        )
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
