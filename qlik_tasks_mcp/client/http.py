"""The HTTP core shared by the Qlik and Qalyptus clients: auth, pacing, retries, error mapping."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput, error_from_response
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter
from qlik_tasks_mcp.client.redact import register_secret

log = logging.getLogger("qlik_tasks_mcp.client")

# Methods whose repeat has the same effect as one send; only these are retried after they may have arrived.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUS = frozenset({429, 502, 503, 504})
# Transport failures that prove the request never left this process.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

USER_AGENT = "qlik-tasks-mcp/0.1"

Params = httpx.QueryParams | Mapping[str, Any] | None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class RetryPolicy:
    def __init__(self, max_retries: int = 3, base_delay: float = 0.5, max_delay: float = 8.0, max_wait: float = 30.0):
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        # A Retry-After longer than this ends the call with an error instead of holding the tool call open.
        self.max_wait = max_wait

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311 - jitter, not crypto


class TenantHttp:
    """One httpx.AsyncClient for one tenant, shared by every tool of the process."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        service: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        register_secret(api_key)
        self.service = service
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.limiter = limiter or TierLimiter()
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )
        self.requests_sent = 0
        self.throttled = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    def decode(self, response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer; a broken body is an ApiError, never a crash."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{self.service} answered with a body that is not valid JSON",
                method=response.request.method,
                path=response.request.url.path,
                hint="The service may be degraded; try again later.",
            ) from None

    def url(self, path: str) -> httpx.URL:
        return self.base_url.join(path.lstrip("/"))

    async def send(
        self,
        method: str,
        path: str,
        *,
        tier: Tier,
        params: Params = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        hint_404: str | None = None,
    ) -> httpx.Response:
        """Send one request with pacing and safe retries; return a 2xx answer or raise ApiError."""
        if not path.startswith("/"):
            raise InvalidInput(f"path must be absolute, got {path!r}")
        method = method.upper()
        request = self._http.build_request(
            method,
            self.url(path),
            params=params,
            json=json,
            headers=headers,
            extensions={"qtm_tier": tier.label},
        )
        attempt = 0
        while True:
            await self.limiter.acquire(tier)
            self.requests_sent += 1
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                may_have_arrived = not isinstance(exc, NOT_SENT)
                if attempt < self.retry.max_retries and (method in IDEMPOTENT or not may_have_arrived):
                    await anyio.sleep(self.retry.backoff(attempt))
                    attempt += 1
                    continue
                hint = (
                    "The request may have reached the service and taken effect: check its state before trying again."
                    if may_have_arrived and method not in IDEMPOTENT
                    else "Check the tenant URL and the network, then try again."
                )
                raise ApiError(
                    0, f"{self.service} did not answer: {type(exc).__name__}", method=method, path=path, hint=hint
                ) from None
            if response.status_code < 400:
                return response
            await response.aread()
            if response.status_code == 429:
                self.throttled += 1
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                wait = self.retry.backoff(attempt) if wait is None else wait
                self.limiter.pause(tier, wait)
                # A 429 means the request was refused before it acted, so even a POST may be sent again.
                if attempt < self.retry.max_retries and wait <= self.retry.max_wait:
                    attempt += 1
                    continue
                raise error_from_response(response, f"Rate limited; retry after {wait:.0f} s.")
            if response.status_code in RETRY_STATUS and method in IDEMPOTENT and attempt < self.retry.max_retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                await anyio.sleep(min(wait, self.retry.max_wait) if wait is not None else self.retry.backoff(attempt))
                attempt += 1
                continue
            raise error_from_response(response, hint_404 if response.status_code in (404, 405) else None)
