"""Every setting, read from the environment (and the command line, which wins)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qlik_tasks_mcp.client.qalyptus_orgs import QalyptusOrg, parse_orgs
from qlik_tasks_mcp.client.qalyptus_paths import parse_overrides
from qlik_tasks_mcp.tools.inventory import NAMES

# The toolset names come from the one inventory.
TOOLSETS = NAMES


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the setting to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    tenant_url: str | None = Field(None, validation_alias=AliasChoices("QLIK_TENANT_URL", "tenant_url"))
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("QLIK_API_KEY", "api_key"))
    timeout_seconds: float = Field(
        30.0, ge=1, le=300, validation_alias=AliasChoices("QLIK_TIMEOUT_SECONDS", "timeout_seconds")
    )
    sandbox: bool = Field(False, validation_alias=AliasChoices("QLIK_MCP_SANDBOX", "sandbox"))
    read_only: bool = Field(False, validation_alias=AliasChoices("QLIK_MCP_READ_ONLY", "read_only"))
    toolsets: str = Field(",".join(TOOLSETS), validation_alias=AliasChoices("QLIK_MCP_TOOLSETS", "toolsets"))
    confirm_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("QLIK_MCP_CONFIRM_SECRET", "confirm_secret")
    )
    confirm_ttl_minutes: int = Field(
        10, ge=1, le=60, validation_alias=AliasChoices("QLIK_MCP_CONFIRM_TTL_MINUTES", "confirm_ttl_minutes")
    )
    # token: the preview's confirm_token approves (the assistant holds it); human: a person approves on a page.
    approval: Literal["token", "human"] = Field("token", validation_alias=AliasChoices("QLIK_MCP_APPROVAL", "approval"))
    audit_log: str | None = Field(None, validation_alias=AliasChoices("QLIK_MCP_AUDIT_LOG", "audit_log"))
    transport: Literal["stdio", "http"] = Field(
        "stdio", validation_alias=AliasChoices("QLIK_MCP_TRANSPORT", "transport")
    )
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("QLIK_MCP_HOST", "host"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("QLIK_MCP_PORT", "port"))
    http_token: SecretStr | None = Field(None, validation_alias=AliasChoices("QLIK_MCP_HTTP_TOKEN", "http_token"))
    allowed_hosts: str = Field("", validation_alias=AliasChoices("QLIK_MCP_ALLOWED_HOSTS", "allowed_hosts"))
    allowed_origins: str = Field("", validation_alias=AliasChoices("QLIK_MCP_ALLOWED_ORIGINS", "allowed_origins"))
    stateless: bool = Field(False, validation_alias=AliasChoices("QLIK_MCP_STATELESS", "stateless"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", validation_alias=AliasChoices("QLIK_MCP_LOG_LEVEL", "log_level")
    )
    # Qalyptus Cloud: one organization (URL + key) and/or named ones (QALYPTUS_ORGS, JSON), and path overrides.
    qalyptus_url: str | None = Field(None, validation_alias=AliasChoices("QALYPTUS_URL", "qalyptus_url"))
    qalyptus_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("QALYPTUS_API_KEY", "qalyptus_api_key")
    )
    qalyptus_orgs: SecretStr | None = Field(None, validation_alias=AliasChoices("QALYPTUS_ORGS", "qalyptus_orgs"))
    qalyptus_paths: str | None = Field(None, validation_alias=AliasChoices("QALYPTUS_PATHS", "qalyptus_paths"))

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
