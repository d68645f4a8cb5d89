"""The HTTP core shared by the Qlik and Qalyptus clients: auth, pacing, retries, redirects, bounded bodies, errors.

Promises kept here, for every tool:
- A call waits at most `RetryPolicy.max_wait` per wait and `RetryPolicy.call_budget` in all (pacing, Retry-After,
  backoff and request time together); past either it fails fast with an error that says when to retry.
- A 3xx is never a success: only a GET is redirected, only on the tenant's own origin (so the key stays there).
- A body is read with a byte cap; a log is read as a stream that keeps only the lines asked for.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json as json_module
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import anyio
import httpx

from qlik_tasks_mcp.client.clock import Clock
from qlik_tasks_mcp.client.errors import ERROR_BODY_BYTES, ApiError, InvalidInput, ProbablyDone, error_from_response
from qlik_tasks_mcp.client.lines import LineSink, feed_lines, text_of_log_json
from qlik_tasks_mcp.client.paging import same_origin
from qlik_tasks_mcp.client.ratelimit import LONGEST_BELIEVED, TRIAL_EVERY, Tier, TierLimiter, report_pacing
from qlik_tasks_mcp.client.redact import redact, register_secret
from qlik_tasks_mcp.client.store import Store
from qlik_tasks_mcp.client.transport_errors import describe_transport_error

log = logging.getLogger("qlik_tasks_mcp.client")

# Methods whose repeat has the same effect as one send; only these are retried after they may have arrived.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUS = frozenset({429, 502, 503, 504})
# Transport failures that prove the request never left this process.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MiB = 1024 * 1024
# Larger than any page of a documented limit (100 rows of a few kB); a bigger answer is refused, not held.
JSON_MAX_BYTES = 8 * MiB
# A log wrapped in JSON cannot be streamed line by line; beyond this, ask for text/plain.
LOG_JSON_MAX_BYTES = 32 * MiB
# A streamed log is read to its end to count its lines; this bounds the time that takes, not memory.
LOG_MAX_BYTES = 1024 * MiB
REDIRECT_HOPS = 3
# A year: a longer Retry-After is read as this, so the time to retry can still be written as a date.
RETRY_AFTER_MAX = 366 * 86400.0

USER_AGENT = "qlik-tasks-mcp/0.1"

Params = httpx.QueryParams | Mapping[str, Any] | None
Sink = TypeVar("Sink", bound=LineSink)

# Deprecation warnings in response headers (Qlik changelog 266). Which header names Qlik uses is not in the stored
# qlik.dev pages (each cut after its first 2 KB), so the standard ones are read: Deprecation (RFC 9745: "@<epoch>",
# an HTTP date, or "true"), Sunset (RFC 8594, an HTTP date) and a Link with rel="deprecation" or "sunset". Only
# what parses (dates, an https link) is passed on: a header's free text never reaches a result.
_notices: ContextVar[list[str] | None] = ContextVar("qtm_api_notices", default=None)
NOTICES_MAX = 5
_LINK = re.compile(r'<(https://[^<>\s"]{1,300})>\s*;[^,]*\brel="?(?:deprecation|sunset)"?', re.IGNORECASE)


@contextmanager
def collecting_notices() -> Iterator[list[str]]:
    """Within the block, the deprecation notices of every answer received are gathered (once each) into the list."""
    found: list[str] = []
    token = _notices.set(found)
    try:
        yield found
    finally:
        _notices.reset(token)


def _header_date(value: str) -> str | None:
    value = value.strip()
    if value.startswith("@") and value[1:].isascii() and value[1:].isdigit() and len(value) <= 13:
        return datetime.fromtimestamp(int(value[1:]), UTC).strftime("%Y-%m-%d")
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(UTC).strftime("%Y-%m-%d")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def deprecation_notice(service: str, response: httpx.Response) -> str | None:
    """One line for an answer that says its endpoint is deprecated, or None."""
    headers = response.headers
    deprecation, sunset = headers.get("deprecation"), headers.get("sunset")
    if not deprecation and not sunset:
        return None
    # The API, not the one item: /api/v1/reload-tasks for every reload task read.
    api = "/".join(response.request.url.path.split("/")[:4])
    text = f"{service} marks {api} deprecated"
    since = _header_date(deprecation) if deprecation else None
    text += f" (since {since})" if since else ""
    until = _header_date(sunset) if sunset else None
    text += f"; it may be removed on or after {until}" if until else ""
    link = _LINK.search(headers.get("link", ""))
    return text + (f"; see {link.group(1)}" if link else "")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date; never more than RETRY_AFTER_MAX."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(RETRY_AFTER_MAX, max(0.0, when.timestamp() - (now if now is not None else time.time())))


def at_wall_clock(seconds: float) -> str:
    """When `seconds` from now is, in UTC, for a message that says when to retry."""
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RetryPolicy:
    """How long a call may wait: `max_wait` per wait (a Retry-After, a tier hold), `call_budget` in all."""

    def __init__(
        self,
        max_retries: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        max_wait: float = 30.0,
        call_budget: float = 90.0,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_wait = max_wait
        self.call_budget = call_budget

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311 - jitter, not crypto


class Deadline:
    """The end of one call's budget, on the client's clock."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.budget = seconds
        self.clock = clock
        self.end = clock.now() + seconds

    def left(self) -> float:
        return self.end - self.clock.now()

    def allows(self, seconds: float) -> bool:
        return seconds <= self.left()


class Credentials(Protocol):
    """Whose token a call carries when people sign in (QLIK_MCP_AUTH=oauth): the person of the request."""

    async def token(self) -> str:
        """The signed-in person's current access token; raises ApiError 401 when nobody is signed in."""
        ...

    async def rejected(self, token: str) -> str:
        """The tenant answered 401 to `token`: a renewed token, or ApiError 401 asking the person to sign in."""
        ...


class TenantHttp:
    """One httpx.AsyncClient for one tenant, shared by every tool of the process."""

    # Set when each request acts as its signed-in person: their token replaces the key on every call.
    credentials: Credentials | None = None

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        service: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
        retry: RetryPolicy | None = None,
        key_setting: str = "QLIK_API_KEY",
        headers: Mapping[str, str] | None = None,
        store: Store | None = None,
    ) -> None:
        register_secret(api_key)
        self.service = service
        self.key_setting = key_setting
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        # One budget per service and key: replicas with the same key share it through the store.
        scope = hashlib.sha256(f"{self.base_url}\n{api_key or ''}".encode()).hexdigest()[:24]
        self.limiter = limiter or TierLimiter(store=store, scope=scope)
        self.retry = retry or RetryPolicy()
        # What the call budget is counted on and every wait sleeps on (the pacer's waits: the limiter's own clock).
        self.clock = Clock()
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                **(headers or {}),
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )
        self.requests_sent = 0
        self.throttled = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    def decode(self, response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer, secrets masked; a broken body is an ApiError, never a crash.

        Masking the text before parsing means no result, whatever tool renders it, carries a key a tenant
        echoed (API keys hold no character JSON escapes, so they appear verbatim in the text)."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return json_module.loads(redact(response.text))
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{self.service} answered with a body that is not valid JSON",
                method=response.request.method,
                path=response.request.url.path,
                hint="The service may be degraded; try again later.",
            ) from None

    def url(self, path: str) -> httpx.URL:
        return _joined(self.base_url, path)

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
        max_bytes: int = JSON_MAX_BYTES,
        final_429: bool = False,
    ) -> httpx.Response:
        """Send one request with pacing, safe retries and same-origin GET redirects; return a 2xx answer whose
        body is read whole (at most `max_bytes`), or raise ApiError.

        `final_429`: a 429 is this endpoint's answer, not a rate limit (POST /api/v1/reloads: a reload of the
        app is already queued), so it is raised at once and never paces the tier."""
        response = await self._open(
            method, path, tier=tier, params=params, json=json, headers=headers, hint=hint_404, final_429=final_429
        )
        try:
            return await self._read_capped(response, max_bytes)
        finally:
            await response.aclose()

    async def read_lines(
        self,
        path: str,
        sink: Sink,
        *,
        tier: Tier,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        hint_404: str | None = None,
        max_bytes: int = LOG_MAX_BYTES,
    ) -> Sink:
        """GET a text body (a log) and pass it line by line to `sink`, which keeps only what was asked.

        A text answer is streamed (at most `max_bytes` read); a JSON answer (`{"logContent": ...}` or an
        envelope, see `log_text`) is read with a 32 MiB cap first. Lines are redacted before the sink sees them.
        A text body longer than `max_bytes` is an ApiError: the sink has seen only its start.
        """
        response = await self._open("GET", path, tier=tier, params=params, json=None, headers=headers, hint=hint_404)
        try:
            if "json" in response.headers.get("content-type", ""):
                whole = await self._read_capped(response, LOG_JSON_MAX_BYTES)
                await feed_lines(_one_chunk(self.log_text(whole)), sink, max_bytes=max_bytes)
            elif not await feed_lines(response.aiter_bytes(), sink, max_bytes=max_bytes):
                raise self._too_large(response, max_bytes)
        finally:
            await response.aclose()
        return sink

    def log_text(self, response: httpx.Response) -> str:
        """The log text of a JSON answer: `logContent` (Qlik) or a like-named field. Qalyptus overrides it."""
        return text_of_log_json(self.decode(response))

    async def _open(
        self,
        method: str,
        path: str,
        *,
        tier: Tier,
        params: Params,
        json: Any,
        headers: Mapping[str, str] | None,
        hint: str | None,
        final_429: bool = False,
    ) -> httpx.Response:
        """An open 2xx answer (the caller reads and closes it), after following same-origin GET redirects."""
        if not path.startswith("/"):
            raise InvalidInput(f"path must be absolute, got {path!r}")
        request = self._http.build_request(
            method.upper(),
            self.url(path),
            params=params,
            json=json,
            headers=headers,
            extensions={"qtm_tier": tier.label, "qtm_final_429": final_429},
        )
        if self.credentials is not None and not (headers and "Authorization" in headers):
            request.headers["Authorization"] = f"Bearer {await self.credentials.token()}"
            request.extensions["qtm_personal"] = True
        deadline = Deadline(self.retry.call_budget, self.clock)
        status = 0
        for _hop in range(REDIRECT_HOPS + 1):
            response = await self._exchange(request, tier, deadline, hint)
            status = response.status_code
            if not 300 <= status < 400:
                return response
            await response.aclose()
            request = self._redirected(response)
        raise ApiError(
            status,
            f"{self.service} redirected more than {REDIRECT_HOPS} times; stopped",
            method=request.method,
            path=request.url.path,
            hint="The tenant may be misconfigured; try again later.",
        )

    async def _exchange(
        self, request: httpx.Request, tier: Tier, deadline: Deadline, hint: str | None
    ) -> httpx.Response:
        """Send until an answer below 400 (returned open), retrying only what is safe to repeat."""
        method = request.method
        attempt = 0
        may_have_acted = False
        renewed = False
        while True:
            trial = await self._acquire(tier, deadline, request)
            self.requests_sent += 1
            self._bound_timeout(request, deadline)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                arrived = not isinstance(exc, NOT_SENT)
                may_have_acted = may_have_acted or arrived
                failure = self._no_answer(exc, request, arrived)
                if attempt >= self.retry.max_retries or (arrived and method not in IDEMPOTENT):
                    raise failure from None
                await self._sleep(self.retry.backoff(attempt), deadline, failure)
                attempt += 1
                continue
            if trial and response.status_code != 429:
                await self.limiter.release(tier)
            self._notice(response)
            if response.status_code < 400:
                return response
            personal = request.extensions.get("qtm_personal", False)
            if response.status_code == 401 and self.credentials is not None and personal and not renewed:
                # The person's token was refused before it acted: renewed once (or the person asked to sign in).
                await response.aclose()
                given = request.headers.get("Authorization", "").removeprefix("Bearer ")
                request.headers["Authorization"] = f"Bearer {await self.credentials.rejected(given)}"
                renewed = True
                continue
            answer = await self._error_answer(response)
            wait = await self._retry_wait(answer, tier, attempt, deadline, hint, may_have_acted)
            await self.clock.sleep(wait)
            attempt += 1

    def _notice(self, response: httpx.Response) -> None:
        found = _notices.get()
        if found is None or len(found) >= NOTICES_MAX:
            return
        notice = deprecation_notice(self.service, response)
        if notice and notice not in found:
            found.append(redact(notice))

    async def _retry_wait(
        self,
        answer: httpx.Response,
        tier: Tier,
        attempt: int,
        deadline: Deadline,
        hint: str | None,
        may_have_acted: bool,
    ) -> float:
        """How long to wait before the next attempt, or the error that ends the call."""
        status, method = answer.status_code, answer.request.method
        advised = retry_after_seconds(answer.headers.get("Retry-After"))
        wait = self.retry.backoff(attempt) if advised is None else advised
        if status == 429 and answer.request.extensions.get("qtm_final_429"):
            raise error_from_response(answer, self._hint_for(status, hint))
        if status == 429:
            self.throttled += 1
            if wait > self.retry.max_wait:
                # Cap before pausing: the tier is not put to sleep for what the service asked, it fails fast
                # until a trial request is due.
                trial_in = await self.limiter.hold(tier, wait)
                raise error_from_response(answer, self._held_hint(wait, trial_in))
            if attempt < self.retry.max_retries and deadline.allows(wait):
                # A 429 means the request was refused before it acted, so even a POST may be sent again.
                await self.limiter.pause(tier, wait)
                return 0.0
            raise error_from_response(answer, self._rate_limited_hint(wait))
        retryable = status in RETRY_STATUS and method in IDEMPOTENT and attempt < self.retry.max_retries
        if retryable and wait <= self.retry.max_wait and deadline.allows(wait):
            return wait
        if status in (404, 410) and method == "DELETE" and may_have_acted:
            raise self._probably_deleted(answer)
        if retryable:
            raise error_from_response(
                answer, f"The service asks to wait {wait:.0f} s; retry after {at_wall_clock(wait)}."
            )
        raise error_from_response(answer, self._hint_for(status, hint))

    def _hint_for(self, status: int, hint_404: str | None) -> str | None:
        if status == 401 and self.credentials is not None:
            return "The tenant refused your sign-in: sign in again (your MCP client is asked to on its next request)."
        if status == 401:
            return f"Check {self.key_setting}: the key is missing, expired or revoked, or belongs to another tenant."
        return hint_404 if status in (404, 405) else None

    def _held_hint(self, asked: float, trial_in: float) -> str:
        believed = "" if asked <= LONGEST_BELIEVED else f", read as at most {LONGEST_BELIEVED:.0f} s (Qlik's window)"
        return (
            f"Rate limited; the service asked to wait {asked:.0f} s{believed}. This server sends one trial request "
            f"of the tier every {TRIAL_EVERY:.0f} s meanwhile: retry after {trial_in:.0f} s "
            f"(at {at_wall_clock(trial_in)})"
        )

    def _rate_limited_hint(self, wait: float) -> str:
        return (
            f"Rate limited; retry after {wait:.0f} s (at {at_wall_clock(wait)}). "
            f"This server waits at most {self.retry.max_wait:.0f} s at a time, "
            f"{self.retry.call_budget:.0f} s per call"
        )

    async def _acquire(self, tier: Tier, deadline: Deadline, request: httpx.Request) -> bool:
        """A slot in the tier's window within the call's budget, or an error saying when to retry.
        True: this request is the trial of a held tier."""
        admission = await self.limiter.admit(tier)
        if admission.held > 0:
            raise ApiError(
                429,
                f"Rate limited: {self.service} asked this server to pause rate tier {tier.label}; not sent",
                method=request.method,
                path=request.url.path,
                hint=f"Retry after {admission.held:.0f} s (at {at_wall_clock(admission.held)}).",
            )
        paused = admission.wait
        if paused > self.retry.max_wait or not deadline.allows(paused):
            raise self._tier_spent(tier, request, paused)
        # Pacing waits at most `max_wait` (and never past the call's budget): a tier spent by earlier calls (a
        # scan, say) fails this one fast with the time to retry, instead of holding it silently for a minute.
        free_in = await self.limiter.free_in(tier)
        bound = min(self.retry.max_wait, max(0.0, deadline.left()))
        if paused + free_in > bound:
            raise self._tier_spent(tier, request, paused + free_in)
        if paused + free_in > 0:
            await report_pacing(tier, paused + free_in)
        with anyio.move_on_after(bound) as scope:
            if paused > 0:
                self.limiter.waited_seconds += paused
                await self.clock.sleep(paused)
            await self.limiter.acquire(tier)
        if scope.cancelled_caught:
            raise self._tier_spent(tier, request, await self.limiter.free_in(tier))
        return admission.trial

    def _tier_spent(self, tier: Tier, request: httpx.Request, wait: float) -> ApiError:
        return ApiError(
            429,
            f"Rate limited: this server's requests in rate tier {tier.label} are spent for {wait:.0f} s, longer "
            f"than a call waits ({self.retry.max_wait:.0f} s); not sent",
            method=request.method,
            path=request.url.path,
            hint=f"Retry after {wait:.0f} s (at {at_wall_clock(wait)}).",
        )

    def _bound_timeout(self, request: httpx.Request, deadline: Deadline) -> None:
        """No single request outlives the call's budget: each of the client's timeouts is cut to what is left."""
        left = max(0.01, deadline.left())
        configured = self._http.timeout.as_dict()
        request.extensions["timeout"] = {
            name: left if value is None else min(value, left) for name, value in configured.items()
        }

    async def _sleep(self, seconds: float, deadline: Deadline, failure: ApiError) -> None:
        if not deadline.allows(seconds):
            raise failure
        await self.clock.sleep(seconds)

    def _no_answer(self, exc: httpx.TransportError, request: httpx.Request, arrived: bool) -> ApiError:
        hint = (
            "The request may have reached the service and taken effect: check its state before trying again."
            if arrived and request.method not in IDEMPOTENT
            else "Check the tenant URL and the network, then try again."
        )
        read = request.extensions.get("timeout", {}).get("read")
        what = describe_transport_error(exc, request.url, read if read is not None else self.timeout)
        return ApiError(
            0, f"{self.service} did not answer: {what}", method=request.method, path=request.url.path, hint=hint
        )

    def _probably_deleted(self, answer: httpx.Response) -> ProbablyDone:
        request = answer.request
        return ProbablyDone(
            answer.status_code,
            "probably deleted: the connection dropped after the DELETE was sent, and the retry found it gone",
            method=request.method,
            path=request.url.path,
            hint="The first attempt most likely deleted it. To check, read it again by its id: "
            f"HTTP 404 there confirms it is gone (GET {request.url.path})",
        )

    def _redirected(self, answer: httpx.Response) -> httpx.Request:
        """The request to send next for a 3xx answer, or the ApiError that says why it is not followed."""
        request, status = answer.request, answer.status_code
        location = answer.headers.get("location")
        if not location:
            raise self._redirect_error(answer, f"{self.service} answered HTTP {status} with no place to go", None)
        target = request.url.join(location)
        where = f"{target.scheme}://{target.host}{f':{target.port}' if target.port else ''}{target.path[:120]}"
        if request.method != "GET":
            raise self._redirect_error(
                answer,
                f"{self.service} answered {request.method} with a redirect (HTTP {status}) to {where}; "
                "a write is never sent on to another address, so the change is not done or not confirmed",
                "Nothing confirms the change: check the item's state before trying again.",
            )
        if not same_origin(self.base_url, target):
            raise self._redirect_error(
                answer,
                f"{self.service} redirected to {where}, which is not the configured tenant; not followed, "
                "as the API key is only ever sent to the tenant",
                "Check the tenant URL setting: the tenant may have moved.",
            )
        # Same origin only, so the Authorization header may go along.
        carried = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        return self._http.build_request("GET", target, headers=carried, extensions=dict(request.extensions))

    def _redirect_error(self, answer: httpx.Response, title: str, hint: str | None) -> ApiError:
        request = answer.request
        return ApiError(answer.status_code, title, method=request.method, path=request.url.path, hint=hint)

    async def _error_answer(self, response: httpx.Response) -> httpx.Response:
        """The error answer with at most its first 64 KiB: enough for any error body."""
        try:
            return await _read_prefix(response, ERROR_BODY_BYTES)
        finally:
            await response.aclose()

    async def _read_capped(self, response: httpx.Response, max_bytes: int) -> httpx.Response:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            raise self._too_large(response, max_bytes)
        answer = await _read_prefix(response, max_bytes + 1)
        if len(answer.content) > max_bytes:
            raise self._too_large(response, max_bytes)
        return answer

    def _too_large(self, response: httpx.Response, limit: int) -> ApiError:
        request = response.request
        return ApiError(
            response.status_code,
            f"{self.service} answered with a body larger than this server reads ({limit / MiB:g} MiB); not read",
            method=request.method,
            path=request.url.path,
            hint="Ask for less: a smaller limit, a narrower filter, or fewer lines of a log.",
        )


@functools.lru_cache(maxsize=1024)
def _joined(base: httpx.URL, path: str) -> httpx.URL:
    # Parsing a URL costs more than sending the request to an in-process tenant: the same paths come back.
    return base.join(path.lstrip("/"))


async def _read_prefix(response: httpx.Response, max_bytes: int) -> httpx.Response:
    """A closed copy of `response` holding at most the first `max_bytes` bytes of its (decoded) body."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: max_bytes - size])
        size += len(chunks[-1])
        if size >= max_bytes:
            break
    # The body is decoded already; the copy must not claim an encoding or a length it no longer has.
    headers = [
        (k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=response.request)


async def _one_chunk(text: str) -> AsyncIterator[bytes]:
    yield text.encode("utf-8")
