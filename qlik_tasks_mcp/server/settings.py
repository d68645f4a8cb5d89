"""Every setting, read from the environment (and the command line, which wins)."""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo

from qlik_tasks_mcp.client.qalyptus_orgs import QalyptusOrg, parse_orgs
from qlik_tasks_mcp.client.qalyptus_paths import parse_overrides
from qlik_tasks_mcp.tools.inventory import NAMES

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

    tenant_url: str | None = Field(None, validation_alias="QLIK_TENANT_URL")
    api_key: SecretStr | None = Field(None, validation_alias="QLIK_API_KEY")
    timeout_seconds: float = Field(30.0, ge=1, le=300, validation_alias="QLIK_TIMEOUT_SECONDS")
    sandbox: bool = Field(False, validation_alias="QLIK_MCP_SANDBOX")
    # Whose key the sandbox answers (sandbox/core.py PROFILES): a TenantAdmin's, a space member's (user), or an
    # admin's on a tenant whose /api/v1/reload-tasks is retired.
    sandbox_profile: Literal["admin", "user", "retired"] = Field("admin", validation_alias="QLIK_MCP_SANDBOX_PROFILE")
    read_only: bool = Field(False, validation_alias="QLIK_MCP_READ_ONLY")
    toolsets: str = Field(",".join(TOOLSETS), validation_alias="QLIK_MCP_TOOLSETS")
    confirm_secret: SecretStr | None = Field(None, validation_alias="QLIK_MCP_CONFIRM_SECRET")
    confirm_ttl_minutes: int = Field(10, ge=1, le=60, validation_alias="QLIK_MCP_CONFIRM_TTL_MINUTES")
    # token: the preview's confirm_token approves (the assistant holds it); human: a person approves on a page.
    approval: Literal["token", "human"] = Field("token", validation_alias="QLIK_MCP_APPROVAL")
    audit_log: str | None = Field(None, validation_alias="QLIK_MCP_AUDIT_LOG")
    transport: Literal["stdio", "http"] = Field("stdio", validation_alias="QLIK_MCP_TRANSPORT")
    host: str = Field("127.0.0.1", validation_alias="QLIK_MCP_HOST")
    port: int = Field(8000, ge=1, le=65535, validation_alias="QLIK_MCP_PORT")
    http_token: SecretStr | None = Field(None, validation_alias="QLIK_MCP_HTTP_TOKEN")
    allowed_hosts: str = Field("", validation_alias="QLIK_MCP_ALLOWED_HOSTS")
    allowed_origins: str = Field("", validation_alias="QLIK_MCP_ALLOWED_ORIGINS")
    stateless: bool = Field(False, validation_alias="QLIK_MCP_STATELESS")
    # Bounds on the HTTP transport, so clients that connect and never finish their headers cannot pile up.
    http_header_timeout_seconds: float = Field(
        10.0, ge=0.5, le=300, validation_alias="QLIK_MCP_HTTP_HEADER_TIMEOUT_SECONDS"
    )
    http_max_connections: int = Field(100, ge=4, le=10_000, validation_alias="QLIK_MCP_HTTP_MAX_CONNECTIONS")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("WARNING", validation_alias="QLIK_MCP_LOG_LEVEL")
    # Qalyptus Cloud: one organization (URL + key) and/or named ones (QALYPTUS_ORGS, JSON), and path overrides.
    qalyptus_url: str | None = Field(None, validation_alias="QALYPTUS_URL")
    qalyptus_api_key: SecretStr | None = Field(None, validation_alias="QALYPTUS_API_KEY")
    qalyptus_orgs: SecretStr | None = Field(None, validation_alias="QALYPTUS_ORGS")
    qalyptus_paths: str | None = Field(None, validation_alias="QALYPTUS_PATHS")
    # Which API serves the tasks toolset: auto = scheduling, or v1 when /api/scheduling/tasks answers 404.
    tasks_api: Literal["auto", "scheduling", "v1"] = Field("auto", validation_alias="QLIK_TASKS_API")

    @field_validator("tenant_url")
    @classmethod
    def _tenant_base_url(cls, value: str | None) -> str | None:
        return normal_tenant_url(value) if value else value

    @field_validator("qalyptus_url")
    @classmethod
    def _qalyptus_base_url(cls, value: str | None) -> str | None:
        return normal_qalyptus_url(value) if value else value

    @field_validator("confirm_secret")
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
        """Serving beyond this machine needs a bearer token; on loopback one is optional."""
        if self.transport != "http" or self.loopback():
            return
        if self.http_token is None or len(self.http_token.get_secret_value()) < 16:
            raise ConfigError(
                f"binding HTTP to {self.host} exposes the server beyond this machine: set QLIK_MCP_HTTP_TOKEN "
                "(at least 16 characters; clients send 'Authorization: Bearer <token>'), or bind 127.0.0.1"
            )

    def check_tenant(self) -> None:
        """Refuse to start against no tenant, or one reached without TLS; never fall back to the sandbox."""
        if self.sandbox:
            return
        missing = [
            name for name, value in (("QLIK_TENANT_URL", self.tenant_url), ("QLIK_API_KEY", self.api_key)) if not value
        ]
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
