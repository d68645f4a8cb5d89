"""Every setting, read from the environment (and the command line, which wins)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo

from qlik_tasks_mcp.client.qalyptus_orgs import QalyptusOrg, parse_orgs
from qlik_tasks_mcp.client.qalyptus_paths import parse_overrides
from qlik_tasks_mcp.client.store import check_url
from qlik_tasks_mcp.tools.audit import unwritable
from qlik_tasks_mcp.tools.inventory import NAMES
from qlik_tasks_mcp.tools.inventory import TOOLSETS as INVENTORY

# The toolset names come from the one inventory.
TOOLSETS = NAMES


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the setting to fix."""


# Only these names are documented; a bare PORT, LOG_LEVEL or API_KEY set for another program must not reach us.
DOCUMENTED_PREFIXES = ("QLIK_", "QALYPTUS_")
API_PATH = "/api/v1"
QALYPTUS_DOMAIN = ".qalyptus.net"
MIN_CONFIRM_SECRET_BYTES = 16
# A team's MCP clients hold about two connections per session (a POST and the event stream): 200 sessions need
# ~400; the bound still stops a crowd of stalled connections from taking every file descriptor.
DEFAULT_MAX_CONNECTIONS = 1000
# Settings that mean something only when people sign in over OAuth: (variable, field).
OAUTH_ONLY = (
    ("QLIK_OAUTH_CLIENT_ID", "oauth_client_id"),
    ("QLIK_OAUTH_CLIENT_SECRET", "oauth_client_secret"),
    ("QLIK_MCP_PUBLIC_URL", "public_url"),
)


def setting(
    default: Any, name: str, meaning: str, *, flag: str | None = None, shown: str | None = None, **bounds: Any
) -> Any:
    """A setting read from the environment variable `name` (and the command line's `flag`, which wins); `meaning`
    (markdown) and `shown` (the default as users read it, when its value says too little) are what the README's
    table and `--help` print."""
    extra: dict[str, Any] = {"flag": flag, "shown": shown}
    return Field(default, validation_alias=name, description=meaning, json_schema_extra=extra, **bounds)


@dataclass(frozen=True)
class Documented:
    """One setting as users read it: in the README's table and in `--help`."""

    field: str
    variable: str
    flag: str | None
    default: str
    meaning: str
    annotation: Any


def documented_settings() -> list[Documented]:
    """Every setting, in the order Settings declares them, with its variable, flag, default and meaning."""
    found: list[Documented] = []
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag, shown = extra.get("flag"), extra.get("shown")
        found.append(
            Documented(
                field=name,
                variable=str(field.validation_alias),
                flag=flag if isinstance(flag, str) else None,
                default=shown if isinstance(shown, str) else _shown_default(field.default),
                meaning=field.description or "",
                annotation=field.annotation,
            )
        )
    return found


def _shown_default(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{value:.0f}`"
    return f"`{value}`"


README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_START, TABLE_END = "<!-- settings:start -->", "<!-- settings:end -->"
REWRITE = "python -m qlik_tasks_mcp.server.settings --readme"


def readme_table() -> str:
    """The README's settings table and toolset list, as the settings and the inventory declare them."""
    rows = [
        "| variable | flag | default | meaning |",
        "|---|---|---|---|",
        *(
            "|"
            + "|".join(
                f" {cell} " if cell else " "
                for cell in (f"`{d.variable}`", f"`{d.flag}`" if d.flag else "", d.default, d.meaning)
            )
            + "|"
            for d in documented_settings()
        ),
        "",
        "Toolsets (`QLIK_MCP_TOOLSETS`, `--toolsets`):",
        "",
        *(f"- `{t.name}`: {t.description}" for t in INVENTORY),
    ]
    return "\n".join(rows)


def rewritten_readme(text: str) -> str:
    """`text` (the README) with the part between the settings markers replaced by readme_table()."""
    head, found, rest = text.partition(TABLE_START)
    _, found_end, tail = rest.partition(TABLE_END)
    if not found or not found_end:
        raise ValueError(f"README.md has no {TABLE_START} ... {TABLE_END} markers around the settings table")
    return f"{head}{TABLE_START}\n{readme_table()}\n{TABLE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qlik_tasks_mcp.server.settings")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's settings table from the settings")
    args = parser.parse_args(argv)
    if not args.readme:
        print(readme_table())
        return 0
    text = README.read_text(encoding="utf-8")
    README.write_text(rewritten_readme(text), encoding="utf-8")
    print(f"wrote the settings table of {README}")
    return 0


def documented_names(field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else [alias]
    return [n for n in names if isinstance(n, str) and n.startswith(DOCUMENTED_PREFIXES)]


def documented_environment(fields: dict[str, FieldInfo], given: dict[str, Any]) -> dict[str, str]:
    """The environment, read through each setting's documented QLIK_*/QALYPTUS_* name only (exact case, empty
    meaning unset), for the settings not `given` (flags and code, which win)."""
    values: dict[str, str] = {}
    for field_name, field in fields.items():
        names = documented_names(field)
        if field_name in given or given.keys() & set(names):
            continue
        for name in names:
            if os.environ.get(name):
                values[name] = os.environ[name]
                break
    return values


def with_scheme(url: str) -> str:
    """A URL pasted without a scheme gets https:// (an explicit http:// is kept, to be refused by name)."""
    text = url.strip()
    return text if "://" in text else f"https://{text}"


def normal_tenant_url(url: str) -> str:
    """The tenant's base URL: a trailing / or the API prefix /api/v1 (the clients add it) is dropped."""
    text = with_scheme(url).rstrip("/")
    if text.lower().endswith(API_PATH):
        text = text[: -len(API_PATH)].rstrip("/")
    return text


def normal_qalyptus_url(url: str) -> str:
    """A Qalyptus Cloud URL has one form, https://<sub-domain>.qalyptus.net/api/v1: complete a bare host."""
    text = with_scheme(url).rstrip("/")
    parts = urlsplit(text)
    if not parts.path and (parts.hostname or "").endswith(QALYPTUS_DOMAIN):
        text += API_PATH
    return text


class Settings(BaseModel):
    # Defaults are validated too, as the environment's values are.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    def __init__(self, **given: Any) -> None:
        super().__init__(**(documented_environment(type(self).model_fields, given) | given))

    # The order and texts here are the README's settings table and `--help` (`python -m
    # qlik_tasks_mcp.server.settings --readme` rewrites the table).
    tenant_url: str | None = setting(
        None,
        "QLIK_TENANT_URL",
        "`https://<tenant>.<region>.qlikcloud.com`; https only. A missing scheme gets `https://`, a trailing `/` or "
        "`/api/v1` is dropped; any other path, a query or credentials stop the start with a message",
    )
    api_key: SecretStr | None = setting(
        None, "QLIK_API_KEY", "API key (Bearer); never printed; not used with `QLIK_MCP_AUTH=oauth`"
    )
    auth: Literal["apikey", "oauth"] = setting(
        "apikey",
        "QLIK_MCP_AUTH",
        "whose rights the Qlik calls use: `apikey` (`QLIK_API_KEY`'s user, for everyone) or `oauth` (each person "
        "signs in to the tenant from their MCP client and acts as themselves; needs `--transport http`)",
        flag="--auth",
    )
    oauth_client_id: str | None = setting(
        None,
        "QLIK_OAUTH_CLIENT_ID",
        "with `oauth`: the id of the OAuth client registered in the tenant (scopes `user_default offline_access`, "
        "redirect URI `<QLIK_MCP_PUBLIC_URL>/oauth/qlik/callback`)",
        shown="(the sandbox's, with `--sandbox`)",
    )
    oauth_client_secret: SecretStr | None = setting(
        None, "QLIK_OAUTH_CLIENT_SECRET", "that client's secret; unset for a public client; never printed"
    )
    timeout_seconds: float = setting(30.0, "QLIK_TIMEOUT_SECONDS", "per-request timeout", ge=1, le=300)
    # Which API serves the tasks toolset: auto = scheduling, or v1 when /api/scheduling/tasks answers 404.
    tasks_api: Literal["auto", "scheduling", "v1"] = setting(
        "auto",
        "QLIK_TASKS_API",
        "which API the `tasks` toolset uses: `scheduling` (`/api/scheduling/tasks`), `v1` (`/api/v1/tasks`), or "
        "`auto` (scheduling, or v1 when the scheduling list answers 404; decided once per process on the first call)",
    )
    # Qalyptus Cloud: one organization (URL + key) and/or named ones (QALYPTUS_ORGS, JSON), and path overrides.
    qalyptus_url: str | None = setting(
        None,
        "QALYPTUS_URL",
        "one Qalyptus organization's API base, `https://<sub-domain>.qalyptus.net/api/v1`; https only; named after "
        "its sub-domain. A missing scheme gets `https://`, a bare `<sub-domain>.qalyptus.net` gets `/api/v1`",
    )
    qalyptus_api_key: SecretStr | None = setting(None, "QALYPTUS_API_KEY", "that organization's API key; never printed")
    qalyptus_orgs: SecretStr | None = setting(
        None,
        "QALYPTUS_ORGS",
        'more organizations, JSON: `{"sales": {"url": "https://sales.qalyptus.net/api/v1", "api_key": "..."}}`; '
        "never printed",
    )
    qalyptus_paths: str | None = setting(
        None,
        "QALYPTUS_PATHS",
        'JSON overrides of the Qalyptus path table: `{"run_task": "POST /tasks/{id}/run"}` (see Qalyptus Cloud)',
    )
    sandbox: bool = setting(False, "QLIK_MCP_SANDBOX", "serve the built-in simulated tenant", flag="--sandbox")
    sandbox_profile: Literal["admin", "user", "retired"] = setting(
        "admin",
        "QLIK_MCP_SANDBOX_PROFILE",
        "whose key the sandbox answers: a tenant admin's (`admin`), a space member's (`user`: the users filter "
        "answers 403; items, tasks and reloads are those of the key's spaces and its own), or an admin's on a "
        "tenant whose `/api/v1/reload-tasks` is retired (`retired`)",
        flag="--sandbox-profile",
    )
    sandbox_history: bool = setting(
        False,
        "QLIK_MCP_SANDBOX_HISTORY",
        "seed the sandbox with two weeks of runs (slowed apps, missed, late and doubled runs) for "
        "`get_reload_stats` and `find_missed_runs`; the first call takes about half a second longer",
        flag="--sandbox-history",
    )
    read_only: bool = setting(False, "QLIK_MCP_READ_ONLY", "list and run no tool that writes", flag="--read-only")
    toolsets: str = setting(
        ",".join(TOOLSETS),
        "QLIK_MCP_TOOLSETS",
        "comma-separated toolsets to serve; a choice that leaves no tool (e.g. `qalyptus` "
        "without an organization) stops the start with the reason",
        flag="--toolsets",
        shown=f"all: `{','.join(TOOLSETS)}`",
    )
    confirm_secret: SecretStr | None = setting(
        None,
        "QLIK_MCP_CONFIRM_SECRET",
        "HMAC secret for confirm tokens (>= 16 bytes, else the start stops with a one-line message); share it "
        "between replicas",
        shown="random per process",
    )
    confirm_secret_previous: SecretStr | None = setting(
        None,
        "QLIK_MCP_CONFIRM_SECRET_PREVIOUS",
        "the secret before a rotation: what it signed is still accepted, nothing new is signed with it",
    )
    redis_url: SecretStr | None = setting(
        None,
        "QLIK_MCP_REDIS_URL",
        "Redis or Valkey shared by replicas (`redis://host:6379/0`; `rediss://` for TLS): used confirm tokens, human "
        "approvals, rate tiers; needs `QLIK_MCP_CONFIRM_SECRET`; never printed",
        shown="(this process alone)",
    )
    confirm_ttl_minutes: int = setting(
        10, "QLIK_MCP_CONFIRM_TTL_MINUTES", "confirm token (and human approval) lifetime (1-60)", ge=1, le=60
    )
    approval: Literal["token", "human"] = setting(
        "token",
        "QLIK_MCP_APPROVAL",
        "who approves a destructive call: `token` (the preview's `confirm_token`, which the assistant holds) or "
        "`human` (a person, on a loopback page the preview links to; no token is handed out)",
    )
    audit_log: str | None = setting(
        None,
        "QLIK_MCP_AUDIT_LOG",
        "file to append audit lines to; one that cannot be written stops the start",
        flag="--audit-log",
        shown="stderr",
    )
    transport: Literal["stdio", "http"] = setting(
        "stdio", "QLIK_MCP_TRANSPORT", "`stdio` or `http` (streamable HTTP)", flag="--transport"
    )
    host: str = setting("127.0.0.1", "QLIK_MCP_HOST", "HTTP bind address", flag="--host")
    port: int = setting(8000, "QLIK_MCP_PORT", "HTTP port", flag="--port", ge=1, le=65535)
    http_token: SecretStr | None = setting(
        None,
        "QLIK_MCP_HTTP_TOKEN",
        "bearer token HTTP clients must send; required off loopback with `apikey` (with `oauth` each person's "
        "sign-in takes its place)",
    )
    public_url: str | None = setting(
        None,
        "QLIK_MCP_PUBLIC_URL",
        "with `oauth`: this server's base URL as MCP clients and browsers reach it (`https://mcp.example.com`), "
        "the OAuth issuer and the base of every redirect; required off loopback",
        shown="`http://<host>:<port>`",
    )
    allowed_hosts: str = setting(
        "",
        "QLIK_MCP_ALLOWED_HOSTS",
        "comma-separated Host values (`host:port`, `host:*`) accepted over HTTP",
        shown="(loopback names)",
    )
    allowed_origins: str = setting(
        "",
        "QLIK_MCP_ALLOWED_ORIGINS",
        "comma-separated exact Origin values accepted over HTTP, besides `http://127.0.0.1:<port>`, "
        "`http://localhost:<port>`, `http://[::1]:<port>` (on loopback) and requests without Origin",
        shown="this server's own loopback origins",
    )
    stateless: bool = setting(
        False,
        "QLIK_MCP_STATELESS",
        "HTTP without sessions, for replicas behind a load balancer",
        flag="--stateless",
    )
    # Bounds on the HTTP transport, so clients that connect and never finish their headers cannot pile up.
    http_header_timeout_seconds: float = setting(
        10.0,
        "QLIK_MCP_HTTP_HEADER_TIMEOUT_SECONDS",
        "an HTTP connection that has not sent a complete request head by then is closed (0.5-300)",
        ge=0.5,
        le=300,
    )
    http_max_connections: int = setting(
        DEFAULT_MAX_CONNECTIONS,
        "QLIK_MCP_HTTP_MAX_CONNECTIONS",
        "open HTTP connections at most; beyond, a new one gets 503 and is closed (4-10000)",
        ge=4,
        le=10_000,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "WARNING", "QLIK_MCP_LOG_LEVEL", "log level (stderr)", flag="--log-level"
    )

    @field_validator("tenant_url")
    @classmethod
    def _tenant_base_url(cls, value: str | None) -> str | None:
        return normal_tenant_url(value) if value else value

    @field_validator("qalyptus_url")
    @classmethod
    def _qalyptus_base_url(cls, value: str | None) -> str | None:
        return normal_qalyptus_url(value) if value else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_url(value.get_secret_value())
        return value

    @field_validator("confirm_secret", "confirm_secret_previous")
    @classmethod
    def _long_enough_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_CONFIRM_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_CONFIRM_SECRET_BYTES} bytes (e.g. openssl rand -hex 24), "
                "or unset for a random per-process secret"
            )
        return value

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in TOOLSETS]
        if unknown or not names:
            raise ValueError(f"unknown toolsets {unknown or value!r}; choose from {', '.join(TOOLSETS)}")
        return ",".join(names)

    @model_validator(mode="after")
    def _shared_store_needs_a_shared_secret(self) -> Settings:
        if self.redis_url is not None and self.confirm_secret is None:
            raise ValueError(
                "QLIK_MCP_REDIS_URL is for replicas, which must sign and check confirmations alike: "
                "set QLIK_MCP_CONFIRM_SECRET too (the same on every replica; e.g. openssl rand -hex 24)"
            )
        return self

    @model_validator(mode="after")
    def _auth_mode(self) -> Settings:
        problem = self._auth_mix()
        if problem:
            raise ValueError(problem)
        return self

    def _auth_mix(self) -> str | None:
        """What makes no sense in the chosen auth mode, in one line (None: nothing)."""
        if self.auth == "apikey":
            given = [name for name, value in OAUTH_ONLY if getattr(self, value) is not None]
            if not given:
                return None
            verb = "is" if len(given) == 1 else "are"
            return f"{' and '.join(given)} {verb} for QLIK_MCP_AUTH=oauth: unset it or set QLIK_MCP_AUTH=oauth"
        if self.transport != "http":
            return (
                "QLIK_MCP_AUTH=oauth signs people in over HTTP: start with --transport http, or use "
                "QLIK_MCP_AUTH=apikey for stdio"
            )
        if self.api_key is not None:
            return "QLIK_MCP_AUTH=oauth acts as each signed-in person: unset QLIK_API_KEY (it would not be used)"
        if self.http_token is not None:
            return (
                "QLIK_MCP_AUTH=oauth gives each person their own token: unset QLIK_MCP_HTTP_TOKEN (one shared "
                "bearer token would take the place of the sign-in)"
            )
        if self.oauth_client_id is None and not self.sandbox:
            return (
                "QLIK_MCP_AUTH=oauth needs QLIK_OAUTH_CLIENT_ID: register an OAuth client in the tenant's "
                "management console (see the README, 'Each person as themselves')"
            )
        if self.public_url is None and not self.loopback():
            return (
                f"QLIK_MCP_AUTH=oauth off loopback ({self.host}) needs QLIK_MCP_PUBLIC_URL, the https address "
                "clients use"
            )
        return None

    def base_url(self) -> str:
        """This server's address as clients and browsers reach it: QLIK_MCP_PUBLIC_URL, or the loopback bind."""
        if self.public_url:
            return self.public_url
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @field_validator("public_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        text = value.strip().rstrip("/")
        parts = urlsplit(text)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only for a loopback address)")
        if parts.path or parts.query or parts.fragment or parts.username or not parts.hostname:
            raise ValueError("must be the server's base URL only, like https://mcp.example.com (no path or query)")
        return text

    @model_validator(mode="after")
    def _qalyptus_settings(self) -> Settings:
        # Checked at startup, so a wrong organization or path override is named before any tool runs.
        self.qalyptus_organizations()
        parse_overrides(self.qalyptus_paths)
        return self

    def qalyptus_organizations(self) -> list[QalyptusOrg]:
        return parse_orgs(self.qalyptus_url, self.qalyptus_api_key, self.qalyptus_orgs)

    def selected_toolsets(self) -> list[str]:
        return self.toolsets.split(",")

    def loopback(self) -> bool:
        return self.host in LOOPBACK

    def check_http(self) -> None:
        """Serving beyond this machine needs a bearer token (or each person's sign-in); on loopback it is optional."""
        if self.transport != "http" or self.loopback() or self.auth == "oauth":
            return
        if self.http_token is None or len(self.http_token.get_secret_value()) < 16:
            raise ConfigError(
                f"binding HTTP to {self.host} exposes the server beyond this machine: set QLIK_MCP_HTTP_TOKEN "
                "(at least 16 characters; clients send 'Authorization: Bearer <token>'), or bind 127.0.0.1"
            )

    def check_audit_log(self) -> None:
        """A writing tool audits after it acted: an audit file that cannot be written stops the start instead."""
        if not self.audit_log:
            return
        why = unwritable(self.audit_log)
        if why is not None:
            raise ConfigError(
                f"QLIK_MCP_AUDIT_LOG (--audit-log) {self.audit_log!r} cannot be written ({why}): give a file this "
                "user can append to, or leave it unset for stderr"
            )

    def check_tenant(self) -> None:
        """Refuse to start against no tenant, or one reached without TLS; never fall back to the sandbox."""
        if self.sandbox:
            return
        if self.sandbox_history or self.sandbox_profile != "admin":
            raise ConfigError(
                "--sandbox-history and --sandbox-profile shape the built-in sandbox: add --sandbox, or leave them out "
                "for a real tenant"
            )
        needed = (("QLIK_TENANT_URL", self.tenant_url),)
        if self.auth == "apikey":
            needed += (("QLIK_API_KEY", self.api_key),)
        missing = [name for name, value in needed if not value]
        if missing:
            raise ConfigError(
                f"no Qlik tenant configured: set {' and '.join(missing)} "
                "(e.g. QLIK_TENANT_URL=https://your-tenant.eu.qlikcloud.com and an API key from the tenant's "
                "profile settings), or start with --sandbox to try the built-in simulated tenant"
            )
        assert self.tenant_url is not None
        if not self.tenant_url.lower().startswith("https://"):
            raise ConfigError(
                f"QLIK_TENANT_URL must start with https:// (got {self.tenant_url.split('://')[0]}://...): "
                "the API key is never sent without TLS"
            )
        self._check_tenant_base(urlsplit(self.tenant_url))

    @staticmethod
    def _check_tenant_base(parts: SplitResult) -> None:
        """Every call appends /api/v1/... to this URL, so anything beyond scheme and host would break them all."""
        extra = [
            what
            for what, present in (
                ("a path", parts.path),
                ("a query", parts.query),
                ("a fragment", parts.fragment),
                ("credentials", parts.username or parts.password),
            )
            if present
        ]
        if extra or not parts.hostname:
            problem = ", ".join(extra) if extra else "no host name"
            raise ConfigError(
                f"QLIK_TENANT_URL must be the tenant's base URL like https://your-tenant.eu.qlikcloud.com "
                f"(it has {problem})"
            )


if __name__ == "__main__":
    sys.exit(main())
