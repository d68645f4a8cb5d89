"""The sandbox knows only Qlik's contract: no client code, request bodies checked against the specs' schemas,
Qlik's own example documents accepted, errors in each spec's shape, one cursor pager."""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator

import qlik_tasks_mcp.sandbox
from qlik_tasks_mcp.sandbox import Sandbox, build_sandbox
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.qalyptus import QALYPTUS_SANDBOX_URL, tables
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.specs import QLIK

pytestmark = pytest.mark.anyio
FORBIDDEN = ("qlik_tasks_mcp.client", "qlik_tasks_mcp.tools", "qlik_tasks_mcp.server")


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_sandbox_module_imports_the_client_tools_or_server() -> None:
    modules = sorted(Path(qlik_tasks_mcp.sandbox.__file__).parent.glob("*.py"))
    assert len(modules) >= 10
    found = {
        f"{path.name}: {name}" for path in modules for name in imported_modules(path) if name.startswith(FORBIDDEN)
    }
    assert not found, sorted(found)


def test_the_import_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from qlik_tasks_mcp.client import schedule as s\nimport qlik_tasks_mcp.tools.gate\n")
    assert [n for n in imported_modules(module) if n.startswith(FORBIDDEN)] == [
        "qlik_tasks_mcp.client",
        "qlik_tasks_mcp.client.schedule",
        "qlik_tasks_mcp.tools.gate",
    ]


class Tenant:
    def __init__(self) -> None:
        self.sandbox: Sandbox
        self.sandbox, app = build_sandbox(rate_limits=False)
        headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        self.http = httpx.AsyncClient(transport=SandboxTransport(app), base_url=SANDBOX_URL, headers=headers)
        self.qalyptus = httpx.AsyncClient(
            transport=SandboxTransport(app), base_url=QALYPTUS_SANDBOX_URL + "/", headers=headers
        )

    def app_id(self, index: int = 0) -> str:
        return list(self.sandbox.apps)[index]

    def task_id(self) -> str:
        return next(iter(sandbox_tasks.tables(self.sandbox).tasks))


@pytest.fixture
async def tenant() -> AsyncIterator[Tenant]:
    t = Tenant()
    yield t
    await t.http.aclose()
    await t.qalyptus.aclose()


def spec(name: str) -> dict[str, Any]:
    return json.loads((QLIK / name).read_text(encoding="utf-8"))


def with_ids(document: dict[str, Any], app_id: str, task_id: str) -> dict[str, Any]:
    """A Qlik example with its placeholder app and task ids replaced by ones the tenant has."""
    text = json.dumps(document)
    for placeholder in ('"app4"', '"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"'):
        text = text.replace(placeholder, json.dumps(app_id))
    return json.loads(text.replace('"task-1"', json.dumps(task_id)))


async def test_qliks_own_task_examples_are_accepted(tenant: Tenant) -> None:
    """tasks.json's example has a free-text name and a state "App4.Reload"; scheduling-tasks.json's an RRULE."""
    example = copy.deepcopy(spec("tasks.json")["components"]["examples"]["Task"]["value"])
    example.pop("id")
    created = await tenant.http.post("/api/v1/tasks", json=with_ids(example, tenant.app_id(), tenant.task_id()))
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Reload app4 when Task 1,2,3 succeeded"
    assert created.json()["states"][0]["name"] == "App4.Reload"
    scheduling = spec("scheduling-tasks.json")["components"]
    single = scheduling["examples"]["createSingleEventTriggerTask"]["value"] | {"specVersion": "0.8"}
    created = await tenant.http.post("/api/v1/tasks", json=with_ids(single, tenant.app_id(1), tenant.task_id()))
    assert created.status_code == 201, created.text
    scheduled = with_ids(single, tenant.app_id(2), tenant.task_id())
    scheduled.pop("events")
    scheduled["start"] = scheduling["schemas"]["startdef"]["example"]
    created = await tenant.http.post("/api/v1/tasks", json=scheduled)
    assert created.status_code == 201, created.text
    assert created.json()["start"]["schedule"]["recurrence"] == "RRULE:FREQ=DAILY;INTERVAL=1"
    by_app = scheduling["schemas"]["Task"]["example"]["events"][0]["correlation"][0]
    chained = with_ids(example, tenant.app_id(3), tenant.task_id())
    chained["events"][0]["correlation"].append(with_ids(by_app, tenant.app_id(3), ""))
    assert (await tenant.http.post("/api/v1/tasks", json=chained)).status_code == 201


def error_validator(name: str, component: str) -> Draft7Validator:
    schemas = spec(name)["components"]["schemas"]
    return Draft7Validator({"$ref": f"#/components/schemas/{component}", "components": {"schemas": schemas}})


@pytest.mark.parametrize(
    ("path", "body", "name", "component", "code_type"),
    [
        ("/api/v1/reload-tasks", {"appId": 5, "timeZone": "UTC"}, "reload-tasks.json", "Errors", str),
        ("/api/v1/tasks", {"name": "no-spec-version", "states": []}, "tasks.json", "ErrorResponse", int),
        ("/api/v1/sharing-tasks", {"name": "x", "type": "fax", "state": {}}, "sharing-tasks.json", "Errors", str),
    ],
)
async def test_a_body_off_the_schema_gets_400_in_the_specs_error_shape(
    tenant: Tenant, path: str, body: dict[str, Any], name: str, component: str, code_type: type
) -> None:
    before = tenant.sandbox.digest()
    refused = await tenant.http.post(path, json=body)
    assert refused.status_code == 400
    answer = refused.json()
    assert not list(error_validator(name, component).iter_errors(answer))
    error = answer["errors"][0]
    assert isinstance(error["code"], code_type) and answer["traceId"]
    assert "request schema" in (error.get("detail") or error.get("context"))
    assert tenant.sandbox.digest() == before


async def test_meaning_checks_a_tenant_makes(tenant: Tenant) -> None:
    """An app that does not exist is the spec's 404; an RRULE that does not parse is a 400."""
    missing = await tenant.http.post("/api/v1/reload-tasks", json={"appId": "no-such-app", "timeZone": "UTC"})
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "RELOAD-TASKS-404"
    bad_rule = {"appId": tenant.app_id(), "timeZone": "UTC", "recurrence": ["RRULE:FREQ=SOMETIMES"]}
    assert (await tenant.http.post("/api/v1/reload-tasks", json=bad_rule)).status_code == 400
    bad_zone = {"appId": tenant.app_id(), "timeZone": "Mars/Olympus"}
    assert (await tenant.http.post("/api/v1/reload-tasks", json=bad_zone)).status_code == 400
    example = copy.deepcopy(spec("tasks.json")["components"]["examples"]["Task"]["value"])
    example.pop("id")
    unknown_app = with_ids(example, "no-such-app", tenant.task_id())
    assert (await tenant.http.post("/api/v1/tasks", json=unknown_app)).status_code == 404
    scheduled = with_ids(example, tenant.app_id(), tenant.task_id())
    scheduled.pop("events")
    scheduled["start"] = {"schedule": {"recurrence": "RRULE:FREQ=NEVER"}}
    refused = await tenant.http.post("/api/v1/tasks", json=scheduled)
    assert refused.status_code == 400 and "recurrence" in refused.json()["errors"][0]["context"]


async def collect(http: httpx.AsyncClient, url: str, params: dict[str, Any], key: str, cursor: str) -> list[str]:
    ids: list[str] = []
    page = (await http.get(url, params=params)).json()
    while True:
        ids += [item["id"] for item in page[key]]
        if "next" not in page["links"]:
            return ids
        href = page["links"]["next"]["href"]
        assert href.startswith(SANDBOX_URL) and f"{cursor}=" in href
        page = (await http.get(href)).json()


async def test_every_family_pages_by_links_next_with_its_specs_cursor(tenant: Tenant) -> None:
    reload_ids = await collect(tenant.http, "/api/v1/reload-tasks", {"limit": 5}, "data", "next")
    assert sorted(reload_ids) == sorted(tenant.sandbox.tables["reload_tasks"])
    app = next(iter(sandbox_tasks.tables(tenant.sandbox).tasks.values()))["resourceId"]
    run_ids = await collect(tenant.http, f"/api/v1/tasks/resources/{app}/runs", {"limit": 1}, "data", "page")
    runs = sandbox_tasks.tables(tenant.sandbox).runs.values()
    assert len(run_ids) > 1 and sorted(run_ids) == sorted(r["id"] for r in runs if r["resourceId"] == app)
    sharing = await collect(tenant.http, "/api/v1/sharing-tasks", {"limit": 4}, "sharingTasks", "page")
    assert len(sharing) == len(set(sharing)) > 4
    bad = await tenant.http.get("/api/v1/reload-tasks", params={"next": "x", "prev": "y"})
    assert bad.status_code == 400


async def test_the_digest_changes_with_the_tables_and_only_then(tenant: Tenant) -> None:
    before = tenant.sandbox.digest()
    assert (await tenant.http.get("/api/v1/reload-tasks")).status_code == 200
    assert tenant.sandbox.digest() == before
    body = {"appId": tenant.app_id(), "timeZone": "UTC", "recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6"]}
    assert (await tenant.http.post("/api/v1/reload-tasks", json=body)).status_code == 201
    after = tenant.sandbox.digest()
    assert after != before
    sandbox_tasks.tables(tenant.sandbox).failing_apps.add("another-app")
    assert tenant.sandbox.digest() != after


async def test_qalyptus_bodies_follow_the_reference(tenant: Tenant) -> None:
    org = tables(tenant.sandbox).org()
    task = next(iter(org.tasks.values()))
    url = f"tasks/{task['id']}"
    refused = await tenant.qalyptus.put(url, json={"name": "x", "isActive": "yes", "sendNotifications": False})
    assert refused.status_code == 400 and refused.json()["isSuccess"] is False
    assert "isActive" in refused.json()["errorDetails"]
    # endDate is "string <date-time>", not "or null"; leaving it out is how a schedule never ends.
    schedule = {"name": "n", "timeZone": "UTC", "frequency": "Daily", "atHour": 6, "atMinut": 0, "endDate": None}
    assert (await tenant.qalyptus.post(f"{url}/schedules", json=schedule)).status_code == 400
    del schedule["endDate"]
    saved = await tenant.qalyptus.post(f"{url}/schedules", json=schedule)
    assert saved.status_code == 200 and saved.json()["data"]["nextExecutionDate"]
    unknown = schedule | {"frequency": "Fortnightly"}
    assert (await tenant.qalyptus.post(f"{url}/schedules", json=unknown)).status_code == 400
