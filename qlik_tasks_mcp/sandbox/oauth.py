"""The sandbox tenant's authorization server, as Qlik Cloud's OAuth clients meet it: `/oauth/authorize` (a sign-in
page listing the active seeded people: click one), `/oauth/token` (authorization code with PKCE S256, and the
refresh_token grant, which rotates), `/oauth/revoke`. Its access tokens act as their person on every Qlik endpoint
(core.guarded), so ownership, visibility and 403s follow whoever signed in.

Shapes as qlik.dev's OAuth API describes them: the token set carries `expires_at` (a date, no `expires_in`); a code
or token that is no good is a 401 ("can be deleted by the client"), a disabled user a 403, a malformed request a
400, each in Qlik's `errors` shape; a bad client_id or redirect_uri at /oauth/authorize is a JSON 400; the body of
/oauth/token and /oauth/revoke is JSON or form-encoded.

One OAuth client is registered: SANDBOX_OAUTH_CLIENT_ID, a public client (no secret), whose redirect URIs may be
any http(s) URL (a real tenant lists them exactly).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import SANDBOX_OAUTH_CLIENT_ID, Sandbox

SCOPES = frozenset({"user_default", "offline_access"})
CODE_SECONDS = 60
ACCESS_SECONDS = 3600
REFRESH_SECONDS = 30 * 86400


def _table(sandbox: Sandbox, name: str) -> dict[str, dict[str, Any]]:
    return sandbox.tables.setdefault(name, {})


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


err = ErrorShape("OAUTH")


async def _fields(request: Request) -> dict[str, str]:
    """A JSON or form-encoded body, as /oauth/token and /oauth/revoke take either."""
    raw = (await request.body()).decode("utf-8", "replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            found = json.loads(raw)
        except ValueError:
            return {}
        return {k: str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    return dict(parse_qsl(raw))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status,
        {"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _authorize_problem(query: dict[str, str]) -> str | None:
    """What is wrong with an authorization request that must not be redirected back (RFC 6749 4.1.2.1)."""
    if query.get("client_id") != SANDBOX_OAUTH_CLIENT_ID:
        return "unknown client_id: no OAuth client of that id is registered in this tenant"
    redirect = urlsplit(query.get("redirect_uri", ""))
    if redirect.scheme not in ("http", "https") or not redirect.netloc:
        return "redirect_uri must be an absolute http(s) URL"
    return None


def _redirect_problem(query: dict[str, str]) -> str | None:
    """What is wrong with a request whose answer goes back to the client as `error=` (RFC 6749 4.1.2.1)."""
    if query.get("response_type") != "code":
        return "unsupported_response_type"
    if query.get("code_challenge_method") != "S256" or len(query.get("code_challenge", "")) < 43:
        return "invalid_request"
    scopes = set(query.get("scope", "").split())
    if not scopes or not scopes <= SCOPES:
        return "invalid_scope"
    return None


def _back(query: dict[str, str], **params: str) -> RedirectResponse:
    state = {"state": query["state"]} if query.get("state") else {}
    separator = "&" if "?" in query["redirect_uri"] else "?"
    return RedirectResponse(f"{query['redirect_uri']}{separator}{urlencode(params | state)}", 302)


def routes(sandbox: Sandbox) -> list[Route]:
    def sign_in_page(query: dict[str, str]) -> Response:
        people = [u for u in sandbox.users.values() if u.status == "active"]
        buttons = "".join(
            f"<li><button type='submit' name='user' value='{html.escape(u.id)}' data-email='{html.escape(u.email)}'>"
            f"{html.escape(u.name)} ({html.escape(u.email)})</button></li>"
            for u in people
        )
        fields = "".join(
            f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>" for k, v in query.items()
        )
        return _page("Sign in to the sandbox tenant", f"<form method='post'>{fields}<ul>{buttons}</ul></form>")

    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            query = dict(request.query_params)
        else:
            query = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        problem = _authorize_problem(query)
        if problem:
            return err(400, problem)
        refused = _redirect_problem(query)
        if refused:
            return _back(query, error=refused)
        if request.method == "GET":
            return sign_in_page(query)
        user = sandbox.users.get(query.get("user", ""))
        if user is None or user.status != "active":
            return _page("Sign-in refused", "<p>no active user of that id</p>", 400)
        code = secrets.token_urlsafe(32)
        _table(sandbox, "oauth_codes")[code] = {
            "user_id": user.id,
            "redirect_uri": query["redirect_uri"],
            "challenge": query["code_challenge"],
            "scopes": sorted(set(query["scope"].split())),
            "expires_at": sandbox.clock.now().timestamp() + CODE_SECONDS,
        }
        return _back(query, code=code)

    def issue(user_id: str, scopes: list[str]) -> dict[str, Any]:
        now = sandbox.clock.now().timestamp()
        access = secrets.token_urlsafe(32)
        answer: dict[str, Any] = {
            "scope": " ".join(scopes),
            "auth_time": int(now),
            "expires_at": datetime.fromtimestamp(now + ACCESS_SECONDS, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "token_type": "bearer",
            "access_token": access,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        refresh = secrets.token_urlsafe(32) if "offline_access" in scopes else None
        _table(sandbox, "oauth_access")[access] = {
            "user_id": user_id,
            "scopes": scopes,
            "expires_at": now + ACCESS_SECONDS,
            "refresh": refresh,
        }
        if refresh:
            _table(sandbox, "oauth_refresh")[refresh] = {
                "user_id": user_id,
                "scopes": scopes,
                "expires_at": now + REFRESH_SECONDS,
            }
            answer["refresh_token"] = refresh
        return answer

    async def token(request: Request) -> Response:
        form = await _fields(request)
        if form.get("client_id") != SANDBOX_OAUTH_CLIENT_ID:
            return err(401, "unknown client_id: no OAuth client of that id is registered in this tenant")
        now = sandbox.clock.now().timestamp()
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            if not form.get("code") or not form.get("code_verifier"):
                return err(400, "code and code_verifier are required")
            found = _table(sandbox, "oauth_codes").pop(form["code"], None)
            if found is None or found["expires_at"] <= now:
                return err(401, "the authorization code is unknown, used or expired")
            if form.get("redirect_uri") != found["redirect_uri"]:
                return err(401, "redirect_uri differs from the authorization request's")
            if not secrets.compare_digest(_s256(form["code_verifier"]), found["challenge"]):
                return err(401, "code_verifier does not match the code_challenge")
            return JSONResponse(issue(found["user_id"], found["scopes"]), headers={"Cache-Control": "no-store"})
        if grant_type == "refresh_token":
            found = _table(sandbox, "oauth_refresh").pop(form.get("refresh_token", ""), None)
            if found is None or found["expires_at"] <= now:
                return err(401, "the refresh token is unknown, revoked or expired")
            user = sandbox.users.get(found["user_id"])
            if user is None or user.status != "active":
                return err(403, "the user is disabled")
            return JSONResponse(issue(found["user_id"], found["scopes"]), headers={"Cache-Control": "no-store"})
        return err(400, f"grant_type {grant_type!r} is not supported")

    async def revoke(request: Request) -> Response:
        form = await _fields(request)
        given = form.get("token", "")
        access, refresh = _table(sandbox, "oauth_access"), _table(sandbox, "oauth_refresh")
        # A revoked refresh token takes the access tokens issued with it along (RFC 7009 2.1 allows it; Qlik does).
        if refresh.pop(given, None) is not None:
            for key in [k for k, v in access.items() if v.get("refresh") == given]:
                del access[key]
        else:
            access.pop(given, None)
        return JSONResponse({})

    return [
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/revoke", revoke, methods=["POST"]),
    ]


def revoke_sign_ins(sandbox: Sandbox, user_id: str) -> int:
    """A tenant admin ends every sign-in of a person (refresh and access tokens); how many tokens went."""
    gone = 0
    for name in ("oauth_access", "oauth_refresh"):
        table = _table(sandbox, name)
        for key in [k for k, v in table.items() if v["user_id"] == user_id]:
            del table[key]
            gone += 1
    return gone
