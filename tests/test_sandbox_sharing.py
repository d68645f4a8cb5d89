"""The sandbox's sharing-tasks API over HTTP, for what the tools never send: it must still answer as the spec says."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from qlik_tasks_mcp.sandbox import Sandbox, build_sandbox
from qlik_tasks_mcp.sandbox import sharing_tasks as sbx
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.sharing_fields import recipient_users
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from tests.spec_check import SpecRecorder, ValidatingTransport

pytestmark = pytest.mark.anyio


class Tenant:
    def __init__(self) -> None:
        self.sandbox: Sandbox
        self.sandbox, app = build_sandbox(rate_limits=False)
        self.recorder = SpecRecorder()
        self.http = httpx.AsyncClient(
            transport=ValidatingTransport(SandboxTransport(app), self.recorder),
            base_url=SANDBOX_URL,
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            event_hooks={"request": [self.pace]},
        )
        self.invalid_sent = 0

    async def invalid(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request the spec itself forbids: the sandbox must refuse it as a tenant would."""
        self.invalid_sent += 1
        return await self.http.request(method, url, **kwargs)

    @staticmethod
    async def pace(request: httpx.Request) -> None:
        # What our client declares per request: on this API every read is tier 1 and every write tier 2.
        request.extensions["qtm_tier"] = "1" if request.method == "GET" else "2"

    @property
    def table(self) -> sbx.SharingTables:
        return sbx.tables(self.sandbox)

    def non_admin(self) -> str:
        return next(u.id for u in self.sandbox.users.values() if not u.admin)


@pytest.fixture
async def tenant() -> AsyncIterator[Tenant]:
    t = Tenant()
    yield t
    await t.http.aclose()
    answers = [p for p in t.recorder.problems if not p.startswith("request ")]
    assert not answers, "\n".join(answers)
    assert len(t.recorder.problems) == t.invalid_sent, "\n".join(t.recorder.problems)


async def test_list_pages_by_cursor_with_filters_repeated_in_the_links(tenant: Tenant) -> None:
    params = {"type": ["sheet-sharing", "chart-sharing"], "sort": "-name", "limit": 3}
    first = (await tenant.http.get(sbx.BASE, params=params)).json()
    assert first["currentPageCount"] == 3 and first["totalCount"] > 3
    nxt = first["links"]["next"]["href"]
    assert nxt.startswith(SANDBOX_URL) and "type=sheet-sharing&type=chart-sharing" in nxt and "page=" in nxt
    second = (await tenant.http.get(nxt)).json()
    names = [t["name"] for t in first["sharingTasks"] + second["sharingTasks"]]
    assert names == sorted(names, key=str.casefold, reverse=True)
    assert {t["type"] for t in second["sharingTasks"]} <= {"sheet-sharing", "chart-sharing"}
    assert "prev" in second["links"]
    for bad in ({"limit": 101}, {"sort": "color"}, {"type": "alerting"}):
        assert (await tenant.invalid("GET", sbx.BASE, params=bad)).status_code == 400, bad
    assert (await tenant.http.get(sbx.BASE, params={"page": "not-a-cursor"})).status_code == 400


async def test_a_non_admin_sees_only_what_they_own_or_receive(tenant: Tenant) -> None:
    tenant.sandbox.caller_id = me = tenant.non_admin()
    seen = (await tenant.http.get(sbx.BASE, params={"limit": 100})).json()["sharingTasks"]
    assert seen and all(t["owner"] == me or me in {u["value"] for u in t["recipients"]["userIds"]} for t in seen)
    owned = (await tenant.http.get(sbx.BASE, params={"limit": 100, "role": "owner"})).json()["sharingTasks"]
    assert owned and {t["owner"] for t in owned} == {me}
    refused = await tenant.http.get(sbx.BASE, params={"type": "template-sharing"})
    assert refused.status_code == 400 and "appid" in refused.json()["errors"][0]["detail"]
    hidden = next(t for t in tenant.table.tasks.values() if t["owner"] != me and me not in recipient_users(t))
    assert (await tenant.http.get(f"{sbx.BASE}/{hidden['id']}")).status_code == 403


async def test_a_bad_patch_changes_nothing_and_names_the_operation(tenant: Tenant) -> None:
    task = next(t for t in tenant.table.tasks.values() if t["type"] == "sheet-sharing")
    before = copy.deepcopy(task)
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/name", "value": "Renamed"},
        {"op": "remove", "path": "/name"},
    ]
    refused = await tenant.http.patch(f"{sbx.BASE}/{task['id']}", json=ops)
    assert refused.status_code == 400 and "[1]" in refused.json()["errors"][0]["detail"]
    sharepoint = [{"op": "replace", "path": "/transportChannels", "value": ["sharepoint"]}]
    refused = await tenant.http.patch(f"{sbx.BASE}/{task['id']}", json=sharepoint)
    assert refused.status_code == 400 and "sharePointFolder" in refused.json()["errors"][0]["detail"]
    assert tenant.table.tasks[task["id"]] == before


async def test_execution_files_come_back_as_png(tenant: Tenant) -> None:
    task_id = next(k for k, v in tenant.table.executions.items() if v)
    listed = (await tenant.http.get(f"{sbx.BASE}/{task_id}/executions", params={"status": "successful"})).json()
    done = listed["executions"][0]
    url = f"{sbx.BASE}/{task_id}/executions/{done['id']}/files/{done['files'][0]['fileAlias']}"
    got = await tenant.http.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content.startswith(b"\x89PNG")
    missing = await tenant.http.get(f"{sbx.BASE}/{task_id}/executions/{done['id']}/files/nope")
    assert missing.status_code == 404


async def test_put_settings_is_admin_only_and_refuses_read_only_fields(tenant: Tenant) -> None:
    url = f"{sbx.BASE}/settings"
    assert (await tenant.invalid("PUT", url, json={"enable-sharing": True, "maxRecipients": 5})).status_code == 400
    assert (await tenant.http.put(url, json={"enable-sharing": False})).status_code == 204
    off = await tenant.http.get(sbx.BASE)
    assert off.status_code == 403 and "enable-sharing" in off.json()["errors"][0]["detail"]
    assert (await tenant.http.get(url)).json()["enable-sharing"] is False
    tenant.sandbox.caller_id = tenant.non_admin()
    assert (await tenant.http.put(url, json={"enable-sharing": True})).status_code == 403
    assert tenant.table.settings["enable-sharing"] is False


async def test_template_sharing_is_not_created_and_disabled_tasks_are_not_executed(tenant: Tenant) -> None:
    app = next(iter(tenant.sandbox.apps))
    body = {"name": "x", "type": "template-sharing", "state": {}, "templates": [{"type": "pixel-perfect"}]}
    assert (await tenant.http.post(sbx.BASE, json=body)).status_code == 400
    chart = {"type": "chart", "subType": "image", "chartData": {"appId": app, "sheetId": "s", "objectId": "o"}}
    body = {"name": "x", "type": "chart-sharing", "state": {}, "templates": [chart], "trigger": {"recurrence": []}}
    refused = await tenant.http.post(sbx.BASE, json=body)
    assert refused.status_code == 400 and "recurrence" in refused.json()["errors"][0]["detail"]
    disabled = next(t for t in tenant.table.tasks.values() if not t["enabled"])
    refused = await tenant.http.post(f"{sbx.BASE}/actions/execute", json={"sharingTaskID": disabled["id"]})
    assert refused.status_code == 400 and "disabled" in refused.json()["errors"][0]["detail"]
