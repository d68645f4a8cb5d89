"""QLIK_MCP_AUTH=oauth: people sign in to the (sandbox) tenant through the MCP client's OAuth flow and every Qlik call
acts as them. The MCP client is the SDK's, with its OAuth provider (registration, PKCE, metadata discovery); the
"browser" here follows the authorization URL over real loopback HTTP and clicks the person on the sandbox's
sign-in page (test_oauth_browser.py does the same in headless Chromium)."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import ValidationError

from qlik_tasks_mcp.sandbox import oauth as sandbox_oauth
from qlik_tasks_mcp.sandbox.tasks import tables
from qlik_tasks_mcp.server.transport import http_app
from tests.conftest import Harness, data, error_text, make_harness
from tests.http_server import Alternating as ReplicaBalancer
from tests.http_server import free_port, serving
from tests.redis_server import running_redis

pytestmark = pytest.mark.anyio

REDIRECT = "http://localhost:3030/callback"


class Memory:
    """The MCP client's token storage (TokenStorage), in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        # The client's OAuth provider using this storage (its clock is the wall's: a test ends its token early).
        self.provider: OAuthClientProvider | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def sign_in_form(page: str, person: str) -> dict[str, str]:
    """The sandbox sign-in page's form, with the button of `person` (a name) clicked."""
    fields = dict(re.findall(r"<input type='hidden' name='([^']*)' value='([^']*)'>", page))
    buttons = re.findall(r"<button type='submit' name='user' value='([^']*)'[^>]*>([^<(]*) \(", page)
    chosen = next(user_id for user_id, name in buttons if html.unescape(name) == person)
    return {html.unescape(k): html.unescape(v) for k, v in fields.items()} | {"user": chosen}


class HttpBrowser:
    """Follows the authorization URL as a browser would and clicks `person`; the redirect to the MCP client's
    callback is where it stops (the code and state are in it)."""

    def __init__(self, person: str, ports: list[int] | None = None) -> None:
        self.person = person
        self.landed: list[str] = []
        self.visits = 0
        # Replicas behind one address: each page load goes to the next one.
        self.transport = Alternating(ports) if ports else None

    async def open(self, url: str) -> None:
        self.visits += 1
        async with httpx.AsyncClient(transport=self.transport) as web:
            answer = await web.get(url)
            while answer.status_code in (302, 303, 307) and not answer.headers["location"].startswith(REDIRECT):
                answer = await web.get(answer.url.join(answer.headers["location"]))
            assert answer.status_code == 200, answer.text
            answer = await web.post(str(answer.url), data=sign_in_form(answer.text, self.person))
            while not answer.headers["location"].startswith(REDIRECT):
                assert answer.status_code in (302, 303, 307), answer.text
                answer = await web.get(answer.url.join(answer.headers["location"]))
        self.landed.append(answer.headers["location"])

    async def returned(self) -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(self.landed[-1]).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0])


class Alternating(httpx.AsyncBaseTransport):
    """A load balancer for the browser: each request goes to the next replica in turn."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self.ports[len(self.sent) % len(self.ports)]
        self.sent.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)


def signed_in_client(
    url: str,
    opener: Callable[[str], Awaitable[None]],
    back: Any,
    storage: Memory,
    transport: httpx2.AsyncBaseTransport | None = None,
    *,
    redirect_uri: str = REDIRECT,
) -> Client:
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata.model_validate(
            {
                "client_name": "test client",
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
            }
        ),
        storage=storage,
        redirect_handler=opener,
        callback_handler=back,
    )
    storage.provider = provider
    http = httpx2.AsyncClient(auth=provider, timeout=30, transport=transport)
    return Client(streamable_http_client(url, http_client=http))


def as_person(url: str, person: str) -> tuple[Client, HttpBrowser, Memory]:
    browser, storage = HttpBrowser(person), Memory()
    return signed_in_client(url, browser.open, browser.returned, storage), browser, storage


@asynccontextmanager
async def oauth_servers(count: int = 1, **extra: Any) -> AsyncIterator[tuple[list[Harness], list[str]]]:
    """`count` replicas in oauth mode over one sandbox tenant, each served over loopback HTTP; more than one share
    the first one's address as their public URL, as replicas behind a load balancer do."""
    ports = [free_port() for _ in range(count)]
    harnesses: list[Harness] = []
    if count > 1:
        extra |= {"public_url": f"http://127.0.0.1:{ports[0]}", "stateless": True}
    for port in ports:
        shared = {"share_with": harnesses[0]} if harnesses else {}
        harnesses.append(make_harness(transport="http", auth="oauth", port=port, **shared, **extra))
    async with AsyncExitStack() as stack:
        for harness, port in zip(harnesses, ports, strict=True):
            app = http_app(harness.mcp, harness.settings, log=io.StringIO())
            await stack.enter_async_context(serving(app, port=port))
        try:
            yield harnesses, [f"http://127.0.0.1:{port}/mcp" for port in ports]
        finally:
            for harness in harnesses:
                await harness.backend.aclose()
    assert not harnesses[0].recorder.problems, "\n".join(harnesses[0].recorder.problems)


def user_id(h: Harness, name: str) -> str:
    return next(u.id for u in h.sandbox.users.values() if u.name == name)


def visible_task(h: Harness, person: str) -> dict[str, Any]:
    """A task the person may see and change, owned by someone else."""
    who = h.sandbox.users[user_id(h, person)]
    spaces = h.sandbox.memberships[who.id]
    for task in tables(h.sandbox).tasks.values():
        app = h.sandbox.apps.get(task["resourceId"])
        if app is None or task["metadata"]["ownerId"] == who.id:
            continue
        if who.admin or app.space_id in spaces:
            return task
    raise AssertionError(f"no task {person} may change")


async def update(client: Client, task_id: str, description: str) -> dict[str, Any]:
    preview = data(await client.call_tool("update_task", {"task_id": task_id, "description": description}))
    args = {"task_id": task_id, "description": description, "confirm_token": preview["confirm_token"]}
    return {"preview": preview, "done": data(await client.call_tool("update_task", args))}


def audit_lines(h: Harness) -> list[dict[str, Any]]:
    return [json.loads(line) for line in h.audit.getvalue().splitlines() if line.strip()]


async def test_two_people_sign_in_and_each_owns_the_task_they_changed() -> None:
    async with oauth_servers() as ([h], [url]):
        ben_task, ada_task = visible_task(h, "Ben Builder"), visible_task(h, "Ada Admin")
        ben, ben_browser, _ = as_person(url, "Ben Builder")
        ada, ada_browser, _ = as_person(url, "Ada Admin")
        async with ben, ada:
            ben_done = await update(ben, ben_task["id"], "changed by Ben")
            ada_done = await update(ada, ada_task["id"], "changed by Ada")
    assert ben_browser.visits == 1 and ada_browser.visits == 1
    stored = tables(h.sandbox).tasks
    assert stored[ben_task["id"]]["metadata"]["ownerId"] == user_id(h, "Ben Builder")
    assert stored[ada_task["id"]]["metadata"]["ownerId"] == user_id(h, "Ada Admin")
    assert stored[ben_task["id"]]["description"] == "changed by Ben"
    # The preview and the audit name who acts.
    assert "Ben Builder" in json.dumps(ben_done["preview"]) and "Ada Admin" in json.dumps(ada_done["preview"])
    done = [line for line in audit_lines(h) if line["outcome"] == "done"]
    people = {line["args"]["task_id"]: line["person"]["name"] for line in done}
    assert people == {ben_task["id"]: "Ben Builder", ada_task["id"]: "Ada Admin"}


async def test_a_request_without_a_token_gets_401_with_the_metadata_link() -> None:
    async with oauth_servers() as ([_h], [url]):
        base = url.removesuffix("/mcp")
        async with httpx.AsyncClient() as web:
            answer = await web.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            metadata = await web.get(f"{base}/.well-known/oauth-protected-resource/mcp")
            server = await web.get(f"{base}/.well-known/oauth-authorization-server")
            # A token of the tenant is no token here (no passthrough).
            forged = await web.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": "Bearer sandbox-api-key-not-a-secret-0000"},
            )
    assert answer.status_code == 401 and forged.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert metadata.json()["resource"] == url and metadata.json()["authorization_servers"] == [base]
    assert server.json()["registration_endpoint"] == f"{base}/register"


async def test_a_token_of_one_person_cannot_act_as_another_and_never_reaches_the_tenant() -> None:
    async with oauth_servers() as ([h], [url]):
        task = visible_task(h, "Ben Builder")
        ben, _, ben_store = as_person(url, "Ben Builder")
        ada, _, ada_store = as_person(url, "Ada Admin")
        async with ben, ada:
            # The admin first: the names she may read are hers, never shown to Ben from a cache.
            as_ada = data(await ada.call_tool("get_task", {"task_id": task["id"]}))
            as_ben = data(await ben.call_tool("get_task", {"task_id": task["id"]}))
            assert ben_store.tokens is not None and ada_store.tokens is not None
            # A live Qlik token of Ben's, presented here, is no token of this server's (no passthrough).
            qlik_token = next(iter(h.sandbox.tables["oauth_access"]))
            async with httpx.AsyncClient() as web:
                passed = await web.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"Authorization": f"Bearer {qlik_token}"},
                )
        assert passed.status_code == 401
        ours = {ben_store.tokens.access_token, ada_store.tokens.access_token}
    # Each gets their own rights' answer: Ben may not look up the tenant's users (403), the admin may.
    assert "users/actions/filter -> HTTP 403" in json.dumps(as_ben)
    assert "HTTP 403" not in json.dumps(as_ada) and "owner" in as_ada["task"] and "owner" not in as_ben["task"]
    # The MCP clients hold this server's tokens, none the tenant issued.
    assert ours.isdisjoint(h.sandbox.tables["oauth_access"]) and ours.isdisjoint(h.sandbox.tables["oauth_refresh"])


async def test_a_session_keeps_its_person() -> None:
    """A stateful session opened by one person's token is not reachable with another's (the SDK's session owner)."""
    async with oauth_servers() as ([_h], [url]):
        ben, _, ben_store = as_person(url, "Ben Builder")
        ada, _, ada_store = as_person(url, "Ada Admin")
        async with ben, ada:
            await ben.list_tools()
            await ada.list_tools()
            assert ben_store.tokens is not None and ada_store.tokens is not None
            session = ben.session  # noqa: F841 - kept open while the other token knocks
            async with httpx.AsyncClient() as web:
                opened = await web.post(
                    url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": "2025-06-18",
                            "capabilities": {},
                            "clientInfo": {"name": "x", "version": "1"},
                        },
                    },
                    headers={
                        "Authorization": f"Bearer {ben_store.tokens.access_token}",
                        "Accept": "application/json, text/event-stream",
                    },
                )
                session_id = opened.headers["mcp-session-id"]
                crossed = await web.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                    headers={
                        "Authorization": f"Bearer {ada_store.tokens.access_token}",
                        "mcp-session-id": session_id,
                        "Accept": "application/json, text/event-stream",
                    },
                )
    assert opened.status_code == 200 and crossed.status_code == 404


def space_of(h: Harness, task: dict[str, Any]) -> str:
    app = h.sandbox.apps[task["resourceId"]]
    return next(s["name"] for i, s in h.sandbox.tables["spaces"].items() if i == app.space_id)


async def test_a_revoked_qlik_refresh_token_asks_the_person_to_sign_in_again() -> None:
    async with oauth_servers() as ([h], [url]):
        ben, browser, storage = as_person(url, "Ben Builder")
        async with ben:
            await ben.list_tools()
            assert browser.visits == 1
            # A tenant admin ends Ben's sign-ins; his Qlik access token runs out.
            assert sandbox_oauth.revoke_sign_ins(h.sandbox, user_id(h, "Ben Builder")) == 2
            sign_in = h.backend.sign_in
            assert sign_in is not None
            later = sign_in.now() + 2 * 3600
            sign_in.now = lambda: later
            first = storage.tokens
            # The next request is answered 401, and the client sends Ben through the sign-in again.
            task = visible_task(h, "Ben Builder")
            seen = data(await ben.call_tool("get_task", {"task_id": task["id"]}))
        assert seen["task"]["id"] == task["id"]
        assert browser.visits == 2 and storage.tokens is not None and storage.tokens != first


async def test_a_tool_call_whose_qlik_token_was_revoked_says_to_sign_in_again() -> None:
    async with oauth_servers() as ([h], [url]):
        ben, browser, _ = as_person(url, "Ben Builder")
        async with ben:
            await ben.list_tools()
            sandbox_oauth.revoke_sign_ins(h.sandbox, user_id(h, "Ben Builder"))
            task = visible_task(h, "Ben Builder")
            refused = error_text(await ben.call_tool("get_task", {"task_id": task["id"]}))
            # The sign-in is gone here too: the next request gets 401 and the client signs in again.
            again = data(await ben.call_tool("get_task", {"task_id": task["id"]}))
    assert "sign-in has ended" in refused and "Sign in again" in refused
    assert again["task"]["id"] == task["id"] and browser.visits == 2


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"auth": "oauth"}, "start with --transport http"),
        ({"auth": "oauth", "transport": "http", "api_key": "k" * 20}, "unset QLIK_API_KEY"),
        ({"auth": "oauth", "transport": "http", "http_token": "t" * 20}, "unset QLIK_MCP_HTTP_TOKEN"),
        ({"oauth_client_id": "abc"}, "QLIK_OAUTH_CLIENT_ID is for QLIK_MCP_AUTH=oauth"),
        ({"auth": "oauth", "transport": "http", "sandbox": False}, "needs QLIK_OAUTH_CLIENT_ID"),
        (
            {"auth": "oauth", "transport": "http", "oauth_client_id": "abc", "sandbox": False, "host": "0.0.0.0"},  # noqa: S104
            "needs QLIK_MCP_PUBLIC_URL",
        ),
        ({"auth": "oauth", "transport": "http", "public_url": "http://mcp.example.com"}, "must be an https:// URL"),
        ({"auth": "oauth", "transport": "http", "public_url": "https://mcp.example.com/x"}, "base URL only"),
    ],
)
def test_a_mix_of_settings_that_makes_no_sense_is_refused_in_one_line(given: dict[str, Any], said: str) -> None:
    from qlik_tasks_mcp.server.cli import describe
    from qlik_tasks_mcp.server.settings import Settings

    with pytest.raises(ValidationError) as caught:
        Settings(**({"sandbox": True} | given))
    line = describe(caught.value)
    assert said in line and "\n" not in line


def test_oauth_needs_no_api_key_and_serves_off_loopback_without_a_shared_token() -> None:
    from qlik_tasks_mcp.server.settings import Settings

    settings = Settings(
        auth="oauth",
        transport="http",
        tenant_url="https://t.eu.qlikcloud.com",
        oauth_client_id="abc",
        host="0.0.0.0",  # noqa: S104 - the point: beyond loopback
        public_url="https://mcp.example.com/",
    )
    settings.check_tenant()
    settings.check_http()
    assert settings.base_url() == "https://mcp.example.com"


async def test_two_replicas_with_redis_serve_the_same_signed_in_session(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis:
        async with oauth_servers(2, redis_url=redis.url) as ([one, two], [url, _]):
            ports = [one.settings.port, two.settings.port]
            browser, storage = HttpBrowser("Ben Builder", ports), Memory()
            balancer = ReplicaBalancer(ports)
            ben = signed_in_client(url, browser.open, browser.returned, storage, balancer)
            task = visible_task(one, "Ben Builder")
            async with ben:
                done = await update(ben, task["id"], "changed across replicas")
    assert browser.visits == 1 and set(browser.transport.sent if browser.transport else []) == set(ports)
    # Every step (registration, token, the calls) went to both replicas, and the sign-in held on each.
    assert {port for port, _ in balancer.sent} == set(ports) and done["done"]["status"] == "done"
    assert tables(one.sandbox).tasks[task["id"]]["metadata"]["ownerId"] == user_id(one, "Ben Builder")
    assert any(line.get("person", {}).get("name") == "Ben Builder" for h in (one, two) for line in audit_lines(h))


async def browser_signed_in(web: httpx.AsyncClient, url: str, person: str) -> httpx.Response:
    """Open `url`; on the tenant's sign-in page click `person`; the page the browser lands on after."""
    answer = await web.get(url)
    assert "Sign in to the sandbox tenant" in answer.text, answer.text
    return await web.post(str(answer.url), data=sign_in_form(answer.text, person))


async def test_in_human_mode_only_the_person_who_asked_may_approve() -> None:
    async with oauth_servers(approval="human") as ([h], [url]):
        base = url.removesuffix("/mcp")
        task = visible_task(h, "Ben Builder")
        ben, _, _ = as_person(url, "Ben Builder")
        args = {"task_id": task["id"], "description": "approved by Ben"}
        async with ben:
            preview = data(await ben.call_tool("update_task", args))
            page_url = preview["approve_url"]
            assert preview["status"] == "confirmation_required" and page_url.startswith(f"{base}/approve/")
            async with httpx.AsyncClient(follow_redirects=True) as stranger:
                # No sign-in on this browser: a decision is refused, and the page asks to sign in first.
                blind = await stranger.post(
                    page_url, data={"decision": "approve", "csrf": "x"}, headers={"Origin": base}
                )
                ada_page = await browser_signed_in(stranger, page_url, "Ada Admin")
                ada_post = await stranger.post(
                    page_url, data={"decision": "approve", "csrf": "x"}, headers={"Origin": base}
                )
            async with httpx.AsyncClient(follow_redirects=True) as own:
                ben_page = await browser_signed_in(own, page_url, "Ben Builder")
                csrf = re.search(r'name="csrf" value="([^"]+)"', ben_page.text)
                assert csrf is not None, ben_page.text
                decided = await own.post(
                    page_url,
                    data={"decision": "approve", "csrf": html.unescape(csrf.group(1))},
                    headers={"Origin": base},
                )
            done = data(await ben.call_tool("update_task", args))
    assert blind.status_code == 403 and "Sign in first" in blind.text
    assert ada_page.status_code == 403 and ada_post.status_code == 403
    assert "Only Ben Builder, who asked for this action, may decide it." in ada_page.text
    assert ben_page.status_code == 200 and "Done as Ben Builder" in ben_page.text
    assert decided.status_code == 200 and "Approved." in decided.text
    assert done["status"] == "done"
    assert tables(h.sandbox).tasks[task["id"]]["metadata"]["ownerId"] == user_id(h, "Ben Builder")


async def test_a_confirm_token_of_one_person_does_not_act_for_another() -> None:
    async with oauth_servers() as ([h], [url]):
        task = visible_task(h, "Ada Admin")
        ada, _, _ = as_person(url, "Ada Admin")
        dan, _, _ = as_person(url, "Ben Builder")
        args = {"task_id": task["id"], "description": "x"}
        async with ada, dan:
            preview = data(await ada.call_tool("update_task", args))
            refused = error_text(await dan.call_tool("update_task", args | {"confirm_token": preview["confirm_token"]}))
    assert "confirm_token does not match this action" in refused
    assert tables(h.sandbox).tasks[task["id"]]["metadata"]["ownerId"] == task["metadata"]["ownerId"]


async def test_the_readiness_probe_needs_nobody_signed_in() -> None:
    async with oauth_servers() as ([h], [url]):
        async with httpx.AsyncClient() as web:
            ready = await web.get(url.replace("/mcp", "/readyz"))
    assert [(x.path, x.status) for x in h.recorder.exchanges] == [("/api/v1/spaces", 401)]
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "tenant": "ok", "store": "ok"}


async def test_an_expired_session_token_is_renewed_without_signing_in_again() -> None:
    async with oauth_servers() as ([h], [url]):
        ben, browser, storage = as_person(url, "Ben Builder")
        task = visible_task(h, "Ben Builder")
        async with ben:
            await ben.list_tools()
            first = storage.tokens
            sign_in = h.backend.sign_in
            assert sign_in is not None and first is not None and first.refresh_token
            # Two hours on: this server's access token and the Qlik access token behind it have both run out.
            later = sign_in.now() + 2 * 3600
            sign_in.now = lambda: later
            assert storage.provider is not None
            storage.provider.context.token_expiry_time = 1.0
            grant_before = dict(h.sandbox.tables["oauth_access"])
            seen = data(await ben.call_tool("get_task", {"task_id": task["id"]}))
        assert seen["task"]["id"] == task["id"]
        # The client used its refresh token (no browser), and the server renewed the Qlik token with its own.
        assert browser.visits == 1 and storage.tokens is not None
        assert storage.tokens.access_token != first.access_token
        assert set(h.sandbox.tables["oauth_access"]) - set(grant_before)


async def test_revoking_the_session_token_ends_the_sign_in_here_and_at_the_tenant() -> None:
    async with oauth_servers() as ([h], [url]):
        ben, browser, storage = as_person(url, "Ben Builder")
        async with ben:
            await ben.list_tools()
            assert storage.tokens is not None and storage.client is not None
            ben_id = user_id(h, "Ben Builder")
            assert any(t["user_id"] == ben_id for t in h.sandbox.tables["oauth_refresh"].values())
            async with httpx.AsyncClient() as web:
                revoked = await web.post(
                    url.replace("/mcp", "/revoke"),
                    data={
                        "token": storage.tokens.access_token,
                        "client_id": storage.client.client_id or "",
                        "client_secret": storage.client.client_secret or "",
                    },
                )
                after = await web.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"Authorization": f"Bearer {storage.tokens.access_token}"},
                )
            assert not any(t["user_id"] == ben_id for t in h.sandbox.tables["oauth_refresh"].values())
            await ben.list_tools()
    assert revoked.status_code == 200 and after.status_code == 401 and browser.visits == 2
