"""Qalyptus organizations from settings: a Qalyptus API key reaches exactly one organization, so each
configured organization has its own base URL and key, under a name the tools take as `organization`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.redact import register_secret

T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EXAMPLE = "https://your-sub-domain.qalyptus.net/api/v1"
MIN_KEY = 8


@dataclass(frozen=True)
class QalyptusOrg:
    name: str
    url: str
    api_key: SecretStr = field(repr=False)


def check_url(url: str, where: str) -> str:
    """The API base URL, https only (the key is never sent without TLS), ending in /api/v1."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise InvalidInput(f"{where} must be an https URL like {_EXAMPLE}: the API key is never sent without TLS")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput(f"{where} must be a plain base URL like {_EXAMPLE} (no query, fragment or credentials)")
    if not parts.path.endswith("/api/v1"):
        raise InvalidInput(f"{where} must be the API base URL, ending in /api/v1, like {_EXAMPLE}")
    return text


def _key(value: object, where: str) -> SecretStr:
    secret = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(secret, str) or len(secret.strip()) < MIN_KEY:
        raise InvalidInput(f"{where} must be the organization's API key (at least {MIN_KEY} characters)")
    register_secret(secret.strip())
    return SecretStr(secret.strip())


def _name(value: str, where: str) -> str:
    if not _NAME.match(value):
        raise InvalidInput(f"{where}: organization name {value[:40]!r} must be 1-64 letters, digits, . _ -")
    return value


def parse_orgs(url: str | None, api_key: SecretStr | None, orgs_json: SecretStr | None) -> list[QalyptusOrg]:
    """QALYPTUS_URL + QALYPTUS_API_KEY (one organization, named after its sub-domain) first, then each entry
    of QALYPTUS_ORGS, a JSON object {"name": {"url": ..., "api_key": ...}}, in its order."""
    orgs: list[QalyptusOrg] = []
    if url or api_key:
        if not (url and api_key):
            missing = "QALYPTUS_API_KEY" if url else "QALYPTUS_URL"
            raise InvalidInput(f"set {missing} too: QALYPTUS_URL and QALYPTUS_API_KEY go together")
        base = check_url(url, "QALYPTUS_URL")
        host = urlsplit(base).hostname or ""
        orgs.append(QalyptusOrg(_name(host.split(".")[0], "QALYPTUS_URL"), base, _key(api_key, "QALYPTUS_API_KEY")))
    text = orgs_json.get_secret_value().strip() if orgs_json else ""
    if text:
        try:
            raw = json.loads(text)
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or not raw:
            raise InvalidInput(
                'QALYPTUS_ORGS must be a JSON object like {"sales": {"url": "' + _EXAMPLE + '", "api_key": "..."}}'
            )
        for name, entry in raw.items():
            where = f'QALYPTUS_ORGS["{str(name)[:40]}"]'
            _name(str(name), "QALYPTUS_ORGS")
            if not isinstance(entry, dict) or set(entry) != {"url", "api_key"} or not isinstance(entry["url"], str):
                raise InvalidInput(f'{where} must be an object with exactly "url" and "api_key"')
            if any(o.name.lower() == name.lower() for o in orgs):
                raise InvalidInput(f"{where}: organization {name!r} is configured twice (names are case-insensitive)")
            orgs.append(QalyptusOrg(name, check_url(entry["url"], f"{where}.url"), _key(entry["api_key"], where)))
    return orgs


class Organizations(Generic[T]):
    """Deps by organization name; no name means the first configured one."""

    def __init__(self, clients: dict[str, T]) -> None:
        if not clients:
            raise ValueError("at least one Qalyptus organization is needed")
        self.clients = clients

    @property
    def names(self) -> list[str]:
        return list(self.clients)

    def get(self, name: str | None) -> T:
        if name is None:
            return next(iter(self.clients.values()))
        for known, client in self.clients.items():
            if known.lower() == name.strip().lower():
                return client
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InvalidInput(
            f"unknown Qalyptus organization {shown!r}: configured are {', '.join(self.clients)} (omit it for "
            f"{self.names[0]})"
        )
