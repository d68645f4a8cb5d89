"""Each person as themselves (QLIK_MCP_AUTH=oauth): this server is an OAuth authorization server and resource server
for MCP clients (through the SDK's provider protocol and routes), and a Qlik OAuth client for the people behind them.

The flow: an MCP client registers (dynamic client registration) and sends its user to /authorize; the SDK's handler
asks `authorize`, which sends the browser on to the tenant's /oauth/authorize (authorization code + PKCE, scopes
`user_default offline_access`). The tenant returns to CALLBACK_PATH; the Qlik tokens are exchanged there and kept
here, encrypted, in the shared store (a "grant"), and the MCP client gets a code for this server's own tokens, which
name the grant and the person. A Qlik token never leaves this server, and a Qlik token presented here is no token of
ours (no passthrough).

Every record lives in the store (Redis for replicas), so any replica serves any step. Tokens are stored under
their SHA-256 only; grants and pending sign-ins are encrypted with a key derived from QLIK_MCP_CONFIRM_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.store import Store
from qlik_tasks_mcp.server.settings import Settings

QLIK_SCOPES = "user_default offline_access"
# This server's one scope: its tools, as the signed-in person.
SCOPE = "qlik"
CALLBACK_PATH = "/oauth/qlik/callback"
# With --sandbox the browser reaches the simulated tenant's sign-in page through this server (it has no address).
SANDBOX_SIGN_IN_PATH = "/sandbox/oauth/authorize"
PENDING_SECONDS = 600
CODE_SECONDS = 300
ACCESS_SECONDS = 3600
REFRESH_SECONDS = 30 * 86400
CLIENT_SECONDS = 365 * 86400
# A Qlik access token this close to its end is renewed before a call, so no call meets it expiring.
RENEW_BEFORE_SECONDS = 60
# The approval page's sign-in (QLIK_MCP_APPROVAL=human): who is at the browser, for this long.
PAGE_COOKIE = "qtm_person"
PAGE_SIGN_IN_SECONDS = 3600
# An access token whose end the tenant did not say is renewed after this long.
UNSAID_SECONDS = 300.0
LOCK_SECONDS = 15.0
LOCK_WAIT_SECONDS = 0.1


def _hashed(kind: str, token: str) -> str:
    return f"oauth:{kind}:{hashlib.sha256(token.encode()).hexdigest()}"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def grant_cipher(secrets_: list[str]) -> MultiFernet:
    """Fernet keys derived from the confirm secret (the first encrypts; a previous one still decrypts)."""
    label = b"qlik-tasks-mcp oauth grants v1"
    keys = [base64.urlsafe_b64encode(hmac.new(s.encode(), label, hashlib.sha256).digest()) for s in secrets_]
    return MultiFernet([Fernet(key) for key in keys])


def sign_in_again(why: str) -> ApiError:
    return ApiError(
        401,
        f"Your Qlik sign-in has ended ({why})",
        hint="Sign in again: your MCP client is asked to on its next request (HTTP 401).",
    )


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str


@dataclass(frozen=True)
class Grant:
    """One sign-in's Qlik tokens, as kept (encrypted) in the store."""

    person: Person
    access: str
    refresh: str | None
    expires_at: float


class SignInCode(AuthorizationCode):
    grant: str
    name: str
    email: str


class SignInRefresh(RefreshToken):
    grant: str
    name: str
    email: str


class QlikSignIn:
    """The SDK's OAuthAuthorizationServerProvider, with Qlik's sign-in behind it, and the Credentials that give each
    Qlik call the token of the request's signed-in person."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        qlik: QlikClient,
        *,
        tenant_url: str,
        client_id: str,
        transport: httpx.AsyncBaseTransport | None,
        secrets_: list[str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.qlik = qlik
        self.base_url = settings.base_url()
        self.resource = f"{self.base_url}/mcp"
        self.callback_url = f"{self.base_url}{CALLBACK_PATH}"
        self.tenant_url = tenant_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = settings.oauth_client_secret.get_secret_value() if settings.oauth_client_secret else None
        self.sign_in_url = (
            f"{self.base_url}{SANDBOX_SIGN_IN_PATH}" if settings.sandbox else f"{self.tenant_url}/oauth/authorize"
        )
        self.cipher = grant_cipher(secrets_)
        self.http = httpx.AsyncClient(transport=transport, timeout=settings.timeout_seconds, follow_redirects=False)
        # What "now" is for expiries: tests move it forward rather than wait.
        self.now: Callable[[], float] = time.time

    def auth_settings(self) -> AuthSettings:
        return AuthSettings(
            issuer_url=self.base_url,  # type: ignore[arg-type]  # pydantic validates the str
            resource_server_url=self.resource,  # type: ignore[arg-type]
            validate_token_resource=True,
            required_scopes=[SCOPE],
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
            revocation_options=RevocationOptions(enabled=True),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def install(self, mcp: Any) -> None:
        """The routes of the Qlik side: the callback, and with --sandbox the simulated tenant's sign-in page."""
        mcp.custom_route(CALLBACK_PATH, methods=["GET"])(self.callback)
        if self.settings.sandbox:
            mcp.custom_route(SANDBOX_SIGN_IN_PATH, methods=["GET", "POST"])(self.sandbox_sign_in)

    # --- records in the store -------------------------------------------------------------------------------------

    async def _sealed(self, key: str) -> dict[str, Any] | None:
        text = await self.store.get(key)
        if text is None:
            return None
        try:
            return json.loads(self.cipher.decrypt(text.encode()))
        except InvalidToken:
            # Sealed with a secret this server no longer has: as good as gone.
            return None

    async def _seal(self, key: str, record: dict[str, Any], ttl: float) -> None:
        await self.store.put(key, self.cipher.encrypt(json.dumps(record).encode()).decode(), ttl)

    async def _plain(self, key: str) -> dict[str, Any] | None:
        text = await self.store.get(key)
        return json.loads(text) if text is not None else None

    async def _once(self, key: str, ttl: float) -> bool:
        """True the first time only, across replicas: what makes codes, states and refresh tokens single-use."""
        return await self.store.put(f"{key}:used", "1", ttl, only_new=True)

    async def grant(self, grant_id: str) -> Grant | None:
        record = await self._sealed(f"oauth:grant:{grant_id}")
        if record is None:
            return None
        return Grant(Person(**record["person"]), record["access"], record["refresh"], record["expires_at"])

    async def _save_grant(self, grant_id: str, grant: Grant) -> None:
        await self._seal(f"oauth:grant:{grant_id}", asdict(grant), REFRESH_SECONDS)

    # --- the MCP client's side: registration, authorization, tokens ---------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        text = await self.store.get(f"oauth:client:{client_id}")
        return OAuthClientInformationFull.model_validate_json(text) if text else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        await self.store.put(f"oauth:client:{client_info.client_id}", client_info.model_dump_json(), CLIENT_SECONDS)

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and params.resource.rstrip("/") != self.resource:
            raise AuthorizeError("invalid_target", f"this server's resource is {self.resource}")
        pending = {
            "client_id": client.client_id,
            "redirect_uri": str(params.redirect_uri),
            "explicit": params.redirect_uri_provided_explicitly,
            "challenge": params.code_challenge,
            "state": params.state,
            "scopes": params.scopes or [SCOPE],
        }
        return await self._qlik_sign_in(pending, QLIK_SCOPES)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> SignInCode | None:
        record = await self._plain(_hashed("code", authorization_code))
        if record is None or record["client_id"] != client.client_id:
            return None
        return SignInCode.model_validate(record | {"code": authorization_code})

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: SignInCode
    ) -> OAuthToken:
        key = _hashed("code", authorization_code.code)
        if not await self._once(key, CODE_SECONDS):
            raise TokenError("invalid_grant", "the authorization code was used already")
        await self.store.delete(key)
        return await self._issue(authorization_code, authorization_code.scopes)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> SignInRefresh | None:
        record = await self._plain(_hashed("refresh", refresh_token))
        if record is None or record["client_id"] != client.client_id:
            return None
        return SignInRefresh.model_validate(record | {"token": refresh_token})

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: SignInRefresh, scopes: list[str]
    ) -> OAuthToken:
        key = _hashed("refresh", refresh_token.token)
        if not await self._once(key, REFRESH_SECONDS):
            raise TokenError("invalid_grant", "the refresh token was used already")
        await self.store.delete(key)
        if await self.grant(refresh_token.grant) is None:
            raise TokenError("invalid_grant", "the Qlik sign-in behind this token has ended: sign in again")
        return await self._issue(refresh_token, scopes or refresh_token.scopes)

    async def _issue(self, origin: SignInCode | SignInRefresh, scopes: list[str]) -> OAuthToken:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.now()
        record = {
            "client_id": origin.client_id,
            "scopes": scopes,
            "resource": self.resource,
            "subject": origin.subject,
            "grant": origin.grant,
            "name": origin.name,
            "email": origin.email,
        }
        await self.store.put(
            _hashed("access", access), json.dumps(record | {"expires_at": int(now) + ACCESS_SECONDS}), ACCESS_SECONDS
        )
        await self.store.put(
            _hashed("refresh", refresh),
            json.dumps(record | {"expires_at": int(now) + REFRESH_SECONDS}),
            REFRESH_SECONDS,
        )
        return OAuthToken(
            access_token=access,
            token_type="Bearer",  # noqa: S106 - the scheme, not a secret
            expires_in=ACCESS_SECONDS,
            refresh_token=refresh,
            scope=" ".join(scopes),
        )

    async def load_access_token(self, token: str) -> AccessToken | None:
        """Checked on every request: our token, unexpired, and a Qlik sign-in still behind it (renewed here when
        due, so a refresh token the tenant revoked answers this request with 401 and the client signs in again)."""
        record = await self._plain(_hashed("access", token))
        if record is None or record["expires_at"] <= self.now():
            return None
        grant = await self.grant(record["grant"])
        if grant is None:
            return None
        if grant.expires_at - self.now() < RENEW_BEFORE_SECONDS:
            try:
                await self._renewed(record["grant"], grant.access)
            except ApiError as exc:
                if exc.status == 401:
                    return None
                # The tenant did not answer: the request goes on, and its calls say what failed.
        return AccessToken(
            token=token,
            client_id=record["client_id"],
            scopes=record["scopes"],
            expires_at=record["expires_at"],
            resource=record["resource"],
            subject=record["subject"],
            claims={"name": record["name"], "email": record["email"], "grant": record["grant"]},
        )

    async def revoke_token(self, token: SignInRefresh | AccessToken) -> None:
        """Ends the whole sign-in: every token of ours naming it stops working, and the tenant is told."""
        kind = "refresh" if isinstance(token, SignInRefresh) else "access"
        await self.store.delete(_hashed(kind, token.token))
        grant_id = token.grant if isinstance(token, SignInRefresh) else (token.claims or {}).get("grant")
        if not isinstance(grant_id, str):
            return
        grant = await self.grant(grant_id)
        await self.store.delete(f"oauth:grant:{grant_id}")
        if grant is not None and grant.refresh:
            try:
                await self.http.post(f"{self.tenant_url}/oauth/revoke", data=self._client_form(token=grant.refresh))
            except httpx.HTTPError:
                pass  # Ended here whatever the tenant says; its token expires on its own.

    # --- the Qlik side: the callback, the token endpoint, renewal ---------------------------------------------------

    def _client_form(self, **fields: str) -> dict[str, str]:
        form = fields | {"client_id": self.client_id}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        return form

    async def _qlik_token(self, **fields: str) -> dict[str, Any]:
        """The tenant's token endpoint. Its 401 (the code or token "can be deleted by the client") and 403 (the user
        is disabled) end the sign-in: ApiError 401, sign in again."""
        try:
            answer = await self.http.post(f"{self.tenant_url}/oauth/token", data=self._client_form(**fields))
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Qlik Cloud's token endpoint did not answer ({type(exc).__name__})") from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            return body
        said = _error_text(body) or f"HTTP {answer.status_code}"
        refresh = fields.get("grant_type") == "refresh_token"
        if answer.status_code in (401, 403) or said in ("invalid_grant", "invalid_token"):
            raise sign_in_again(f"the tenant refused its {'refresh token' if refresh else 'sign-in code'}: {said}")
        raise ApiError(
            answer.status_code,
            f"Qlik Cloud's token endpoint refused this server ({said})",
            hint="Check QLIK_OAUTH_CLIENT_ID, QLIK_OAUTH_CLIENT_SECRET and the client's redirect URI in the tenant.",
        )

    def _grant_of(self, person: Person, body: dict[str, Any], refresh: str | None = None) -> Grant:
        return Grant(person, body["access_token"], body.get("refresh_token") or refresh, self._expiry(body))

    def _expiry(self, body: dict[str, Any]) -> float:
        """When the access token ends: Qlik says `expires_at` (a date); RFC 6749's `expires_in` is read too. Without
        either it is renewed after five minutes rather than trusted for long."""
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            return self.now() + float(expires_in)
        expires_at = body.get("expires_at")
        if isinstance(expires_at, str):
            try:
                return datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
        return self.now() + UNSAID_SECONDS

    async def _renewed(self, grant_id: str, seen: str) -> Grant:
        """The grant with a fresh Qlik access token. One replica renews at a time (a refresh token is single-use);
        the others wait and read what it stored."""
        lock = f"oauth:renewing:{grant_id}"
        # Replicas share no event to wait on: the lock is polled (held for one token request, rarely contended).
        while not await self.store.put(lock, "1", LOCK_SECONDS, only_new=True):  # noqa: ASYNC110
            await anyio.sleep(LOCK_WAIT_SECONDS)
        try:
            current = await self.grant(grant_id)
            if current is None:
                raise sign_in_again("it was revoked")
            if current.access != seen:
                return current
            if not current.refresh:
                await self.store.delete(f"oauth:grant:{grant_id}")
                raise sign_in_again("the tenant gave no refresh token")
            try:
                body = await self._qlik_token(grant_type="refresh_token", refresh_token=current.refresh)
            except ApiError as exc:
                if exc.status == 401:
                    await self.store.delete(f"oauth:grant:{grant_id}")
                raise
            renewed = self._grant_of(current.person, body, current.refresh)
            await self._save_grant(grant_id, renewed)
            return renewed
        finally:
            await self.store.delete(lock)

    async def _qlik_sign_in(self, pending: dict[str, Any], scopes: str) -> str:
        """Keep `pending` under a fresh state and give the tenant's authorization URL that returns to it."""
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        await self._seal(f"oauth:pending:{state}", pending | {"verifier": verifier}, PENDING_SECONDS)
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.callback_url,
            "scope": scopes,
            "state": state,
            "code_challenge": _s256(verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.sign_in_url}?{urlencode(query)}"

    async def browser_sign_in(self, return_to: str) -> Response:
        """The approval page's sign-in: the tenant says who is at this browser; a cookie keeps it for an hour."""
        url = await self._qlik_sign_in({"kind": "page", "return_to": return_to}, "user_default")
        return RedirectResponse(url, 302, {"Cache-Control": "no-store"})

    def browser_person(self, request: Request) -> str | None:
        sealed = request.cookies.get(PAGE_COOKIE)
        if not sealed:
            return None
        try:
            found = json.loads(self.cipher.decrypt(sealed.encode(), ttl=PAGE_SIGN_IN_SECONDS))
        except (InvalidToken, ValueError):
            return None
        return found.get("id") if isinstance(found, dict) and isinstance(found.get("id"), str) else None

    async def _page_signed_in(self, pending: dict[str, Any], code: str) -> Response:
        try:
            body = await self._qlik_token(
                grant_type="authorization_code",
                code=code,
                redirect_uri=self.callback_url,
                code_verifier=pending["verifier"],
            )
            person = await self._person(body["access_token"])
        except ApiError as exc:
            return _page("Sign-in to Qlik Cloud failed", exc.title, 502)
        # Only who it is was needed: the tenant's token is not kept.
        response = RedirectResponse(pending["return_to"], 302, {"Cache-Control": "no-store"})
        response.set_cookie(
            PAGE_COOKIE,
            self.cipher.encrypt(json.dumps({"id": person.id}).encode()).decode(),
            max_age=PAGE_SIGN_IN_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.base_url.startswith("https://"),
        )
        return response

    async def callback(self, request: Request) -> Response:
        """Where the tenant sends the browser back: the Qlik tokens are fetched and kept, the person is named, and the
        browser goes on to the MCP client with a code for this server's tokens (or, for the approval page, back to
        it, signed in)."""
        state = request.query_params.get("state", "")
        key = f"oauth:pending:{state}"
        pending = await self._sealed(key) if state else None
        if pending is None or not await self._once(key, PENDING_SECONDS):
            return _page("This sign-in has expired or was used", "Start again from your MCP client.", 400)
        await self.store.delete(key)
        if pending.get("kind") == "page":
            if "code" not in request.query_params:
                return _page("Sign-in was not completed", "Open the approval link again to sign in.", 403)
            return await self._page_signed_in(pending, request.query_params["code"])
        redirect = pending["redirect_uri"]
        if "code" not in request.query_params:
            error = request.query_params.get("error") or "access_denied"
            return RedirectResponse(construct_redirect_uri(redirect, error=error, state=pending["state"]), 302)
        try:
            body = await self._qlik_token(
                grant_type="authorization_code",
                code=request.query_params["code"],
                redirect_uri=self.callback_url,
                code_verifier=pending["verifier"],
            )
            person = await self._person(body["access_token"])
        except ApiError as exc:
            return _page("Sign-in to Qlik Cloud failed", exc.title, 502)
        grant_id = secrets.token_urlsafe(24)
        await self._save_grant(grant_id, self._grant_of(person, body))
        code = secrets.token_urlsafe(32)
        record = {
            "client_id": pending["client_id"],
            "scopes": pending["scopes"],
            "expires_at": self.now() + CODE_SECONDS,
            "code_challenge": pending["challenge"],
            "redirect_uri": redirect,
            "redirect_uri_provided_explicitly": pending["explicit"],
            "resource": self.resource,
            "subject": person.id,
            "grant": grant_id,
            "name": person.name,
            "email": person.email,
        }
        await self.store.put(_hashed("code", code), json.dumps(record), CODE_SECONDS)
        return RedirectResponse(construct_redirect_uri(redirect, code=code, state=pending["state"]), 302)

    async def _person(self, access: str) -> Person:
        """Who signed in: the tenant's own answer for the new token (users/me, which redirects to the user)."""
        body = await self.qlik.json(
            "GET", "/api/v1/users/me", tier=Tier.T1, headers={"Authorization": f"Bearer {access}"}
        )
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ApiError(200, "Qlik Cloud did not say who signed in (users/me had no id)")
        return Person(body["id"], str(body.get("name") or body["id"]), str(body.get("email") or ""))

    async def sandbox_sign_in(self, request: Request) -> Response:
        """The simulated tenant's sign-in page, passed through (it lives in this process, at no address)."""
        answer = await self.http.request(
            request.method,
            f"{self.tenant_url}/oauth/authorize",
            params=request.query_params,
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "")},
        )
        headers = {
            k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "location", "cache-control")
        }
        return Response(answer.content, answer.status_code, headers)

    # --- Credentials: the token of the request's person, for every Qlik call --------------------------------------

    async def _request_grant(self) -> tuple[str, Grant]:
        token = get_access_token()
        grant_id = (token.claims or {}).get("grant") if token is not None else None
        if not isinstance(grant_id, str):
            raise ApiError(401, "Nobody is signed in on this request", hint="Sign in from your MCP client.")
        grant = await self.grant(grant_id)
        if grant is None:
            raise sign_in_again("it was revoked")
        return grant_id, grant

    async def token(self) -> str:
        grant_id, grant = await self._request_grant()
        if grant.expires_at - self.now() < RENEW_BEFORE_SECONDS:
            grant = await self._renewed(grant_id, grant.access)
        return grant.access

    async def rejected(self, token: str) -> str:
        grant_id, _ = await self._request_grant()
        return (await self._renewed(grant_id, token)).access


def _error_text(body: Any) -> str | None:
    """What a token endpoint's error body says: Qlik's `errors` (code: title) or RFC 6749's `error`, bounded."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        text = ": ".join(str(first[k]) for k in ("code", "title") if first.get(k))
        return text[:200] or None
    error = body.get("error")
    return str(error)[:200] if error else None


def _page(title: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>",
        status,
        {"Cache-Control": "no-store"},
    )
