"""Validates every request the client sends and every answer the sandbox gives against Qlik's OpenAPI specs."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from jsonschema import Draft4Validator
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from qlik_tasks_mcp.specs import QLIK

SPECS = QLIK
SHARED_SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs" / "qlik"

QALYPTUS_HOSTS = (".qalyptus.invalid", ".qalyptus.net")
# Longest prefix first: /api/v1/tasks must not swallow /api/v1/sharing-tasks or reload-tasks.
FAMILIES = [
    ("/api/v1/sharing-tasks", "sharing-tasks.json"),
    ("/api/v1/reload-tasks", "reload-tasks.json"),
    ("/api/v1/tasks", "tasks.json"),
    ("/api/scheduling/tasks", "scheduling-tasks.json"),
    ("/api/v1/users", "users.json"),
    ("/api/v1/items", "items.json"),
    ("/api/v1/spaces", "spaces.json"),
    ("/api/v1/reloads", "reloads.json"),
    ("/api/v1/apps", "apps.json"),
]


@cache
def raw_spec(name: str) -> dict[str, Any]:
    return json.loads((SPECS / name).read_text())


# The sharing-tasks spec types every JSON Patch `value` as an object, yet its own examples (and the
# reference pages) send strings, booleans and lists: `{"op":"replace","path":"/name","value":"new name"}`.
# So `value` is checked against the schema of the field its `path` names instead (see patch_value_problems).
PATCH_VALUE_SCHEMAS = {
    "SharingTaskRecurringPatchRequestCompliant": "SharingTaskRecurringCreateRequest",
    "SharingSettingsPatchCompliant": "SharingSettings",
}
# Patch paths that name no field of the create/settings schema, with the type the service takes; and `/tags`,
# which the spec's example also patches with a single tag string.
EXTRA_PATCH_FIELDS: dict[str, dict[str, Any]] = {
    "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
    "ownerId": {"type": "string", "minLength": 1},
    "bookmarkId": {"type": "string"},
    "recipient": {"$ref": "#/components/schemas/SharingTaskRecurringRecipients"},
}


# The one-call reload creators (changelog 262) are not in the July spec: they are checked against the table in
# NOTES-2026-11.md 1.1 (body fields, statuses, CHO codes), written out here by hand; a 201 carries a Task.
NOTES_CREATOR = re.compile(
    r"^/api/scheduling/tasks/resources/[^/]+/actions/reload/(on-time-schedule|on-task-event|on-dataset-updated)$"
)
_CREATOR_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "description": {"type": "string", "maxLength": 1024},
    "enabled": {"type": "boolean"},
}
NOTES_BODIES: dict[str, dict[str, Any]] = {
    "on-time-schedule": {
        "required": ["name", "recurrence"],
        "properties": _CREATOR_FIELDS
        | {k: {"type": "string", "minLength": 1} for k in ("recurrence", "timezone", "startDateTime", "endDateTime")},
    },
    "on-task-event": {
        "required": ["name", "onTaskId"],
        "properties": _CREATOR_FIELDS
        | {"onTaskId": {"type": "string"}, "onTaskStatus": {"enum": ["succeeded", "failed", "any"]}},
    },
    "on-dataset-updated": {"required": ["name"], "properties": _CREATOR_FIELDS},
}
NOTES_STATUSES = {
    "on-time-schedule": {
        201: None,
        400: "CHO-0(01|17)",
        403: "CHO-003",
        422: "CHO-01[48]",
        424: "CHO-013",
        503: "CHO-024",
    },
    "on-task-event": {
        201: None,
        400: "CHO-0(01|16)",
        403: "CHO-0(03|15)",
        404: "CHO-004",
        422: "CHO-01[48]",
        424: "CHO-013",
    },
    "on-dataset-updated": {201: None, 400: "CHO-001", 403: "CHO-003", 409: "CHO-031", 422: "CHO-0(14|30)"},
}


def notes_creator_problems(kind: str, status: int, tier: str | None, body: Any, answer: Any) -> list[str]:
    """A creator exchange against NOTES-2026-11.md 1.1: body fields, tier 2, status, CHO code, Task on 201."""
    where = f"POST .../actions/reload/{kind}"
    schema = {"type": "object", "additionalProperties": False} | NOTES_BODIES[kind]
    problems = [f"request {where}: {e.message}" for e in Draft4Validator(schema).iter_errors(body)]
    if tier != "2":
        problems.append(f"{where}: paced as tier {tier}, NOTES says tier 2")
    expected = NOTES_STATUSES[kind]
    if status not in expected:
        return [*problems, f"response {where}: status {status} not in NOTES-2026-11.md 1.1"]
    schemas = raw_spec("scheduling-tasks.json")["components"]["schemas"]
    target = "Task" if status == 201 else "ErrorResponse"
    problems += [
        f"response {status} {where}: {e.message}"
        for e in Draft4Validator(
            {"$ref": f"#/components/schemas/{target}", "components": {"schemas": schemas}}
        ).iter_errors(answer)
    ]
    code = expected[status]
    if code and not re.search(code, json.dumps(answer)):
        problems.append(f"response {status} {where}: no {code} code as NOTES lists")
    return problems


@cache
def openapi(name: str) -> OpenAPI:
    spec = copy.deepcopy(raw_spec(name))
    # The servers entry is a per-tenant template; validate paths against whatever host answered.
    spec["servers"] = [{"url": "/"}]
    _declare_path_params(spec)
    _migration_notes(name, spec)
    _app_answers(name, spec)
    for schema in PATCH_VALUE_SCHEMAS:
        if schema in spec["components"]["schemas"]:
            spec["components"]["schemas"][schema]["properties"]["value"] = {}
    return OpenAPI.from_dict(spec)


# NOTES-2026-11.md section 2: a tenant that removed /api/v1/reload-tasks answers 404 or 410 (in the Errors shape).
# GET /api/v1/apps/{appId}: 403 and 404 (see _app_answers).
NOTED_RESPONSES: dict[str, dict[str, Any]] = {"reload-tasks.json": {"410": {}}, "apps.json": {"403": {}, "404": {}}}


def _app_answers(name: str, spec: dict[str, Any]) -> None:
    """apps.json lists only 200 for GET /api/v1/apps/{appId}; Qlik answers 404 for an app that is gone and 403 for
    one the caller may not read, in the apps API's `Errors` shape (the one way to ask whether an app exists)."""
    if name == "apps.json":
        errors = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}
        responses = spec["paths"]["/api/v1/apps/{appId}"]["get"]["responses"]
        responses |= {"403": errors | {"description": "Forbidden"}, "404": errors | {"description": "Not found"}}


def _migration_notes(name: str, spec: dict[str, Any]) -> None:
    """What NOTES-2026-11.md section 2 shows beyond the July specs. reload-tasks: a migrated task as the migration
    guide prints it (no state, no jobId, disabledCode ""), and 410 for a retired API. tasks: the guide's migrated
    task has an RRULE `recurrence` schedule (zone, start, end), the scheduling spec's schedule: one service
    describing one Task document (the sandbox contract reads the two specs the same way)."""
    schemas = spec["components"]["schemas"]
    if name == "reload-tasks.json":
        migrated = copy.deepcopy(schemas["Task"])
        extra = migrated["allOf"][1]
        extra["required"] = [f for f in extra["required"] if f not in ("state", "jobId")]
        extra["properties"] |= {"migrated": {"type": "boolean", "enum": [True]}, "disabledCode": {"enum": [""]}}
        schemas["Task"] = {"anyOf": [schemas["Task"], migrated]}
        for ops in spec["paths"].values():
            for op in ops.values():
                if isinstance(op, dict) and "404" in op.get("responses", {}):
                    op["responses"]["410"] = op["responses"]["404"]
    if name == "tasks.json":
        schemas["schedule"] = copy.deepcopy(raw_spec("scheduling-tasks.json")["components"]["schemas"]["schedule"])


def _declare_path_params(spec: dict[str, Any]) -> None:
    """Three places where the spec's own words say more than its schema (NOTES-2026-11 3.1-3.3): apps.json
    declares the metadata endpoint's `{reloadId}` as a query parameter (read as the path parameter it is);
    reloads.json marks `appId` required while saying a TenantAdmin may omit it; and a body declared `*/*`
    (validatescript) is JSON when sent as JSON."""
    for template, ops in spec["paths"].items():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if param.get("in") == "query" and "{" + str(param.get("name")) + "}" in template:
                    param["in"], param["required"] = "path", True
                if "may omit this parameter" in str(param.get("description")):
                    param["required"] = False
            content = op.get("requestBody", {}).get("content", {})
            if "*/*" in content and "application/json" not in content:
                content["application/json"] = content["*/*"]


def patch_value_problems(name: str, method: str, template: str, body: Any) -> list[str]:
    """Each JSON Patch op's value against the schema of the field its path names."""
    if method != "PATCH" or not isinstance(body, list):
        return []
    spec = raw_spec(name)
    schemas = spec["components"]["schemas"]
    op = spec["paths"][template]["patch"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    # Scheduling tasks' JSONPatch items are inline (their value is PatchValue, any JSON): nothing to map.
    item = str(schemas[ref]["items"].get("$ref", "")).rsplit("/", 1)[-1]
    target = PATCH_VALUE_SCHEMAS.get(item)
    if target is None:
        return []
    fields = schemas[target]["properties"]
    problems = []
    for index, entry in enumerate(body):
        if not isinstance(entry, dict) or entry.get("op") == "remove":
            continue
        field_name = str(entry.get("path", "")).lstrip("/")
        schema = EXTRA_PATCH_FIELDS.get(field_name) or fields.get(field_name)
        if schema is None:
            problems.append(f"patch op {index}: no schema for path {entry.get('path')}")
            continue
        for error in Draft4Validator(_inline(schema, schemas)).iter_errors(entry.get("value")):
            problems.append(f"patch op {index} ({entry.get('path')}): {error.message}")
    return problems


def family_of(path: str) -> str | None:
    for prefix, name in FAMILIES:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


def operation_of(name: str, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The spec's template and operation for a concrete path (literal segments win over {params})."""
    spec = raw_spec(name)
    parts = path.strip("/").split("/")
    best: tuple[int, str, dict[str, Any]] | None = None
    for template, ops in spec["paths"].items():
        tparts = template.strip("/").split("/")
        if len(tparts) != len(parts) or method.lower() not in ops:
            continue
        literal = 0
        for t, p in zip(tparts, parts, strict=True):
            if t.startswith("{"):
                continue
            if t != p:
                break
            literal += 1
        else:
            if best is None or literal > best[0]:
                best = (literal, template, ops[method.lower()])
    return (best[1], best[2]) if best else None


class _Req:
    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "application/json")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query, keep_blank_values=True)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )


class _Resp:
    def __init__(self, response: httpx.Response, content: bytes) -> None:
        self.data = content
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    status: int
    tier: str | None
    request_body: Any
    response_body: Any
    host: str


@dataclass
class SpecRecorder:
    """Records every exchange; validation failures are kept and asserted at teardown."""

    exchanges: list[Exchange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unvalidated: list[str] = field(default_factory=list)

    def check(self, request: httpx.Request, response: httpx.Response, content: bytes) -> None:
        path = request.url.path
        try:
            request_body = json.loads(request.content) if request.content else None
        except ValueError:
            request_body = request.content
        try:
            response_body = json.loads(content) if content else None
        except ValueError:
            response_body = content
        self.exchanges.append(
            Exchange(
                request.method,
                path,
                request.url.query.decode(),
                response.status_code,
                request.extensions.get("qtm_tier"),
                request_body,
                response_body,
                request.url.host,
            )
        )
        # Qalyptus publishes no OpenAPI spec, and its paths collide with Qlik's: its hosts are never validated.
        name = None if request.url.host.endswith(QALYPTUS_HOSTS) else family_of(path)
        if response.headers.get("x-sandbox-fault"):
            return
        if name is None:
            self.unvalidated.append(f"{request.method} {path}")
            return
        creator = NOTES_CREATOR.match(path) if request.method == "POST" else None
        if creator:
            tier = request.extensions.get("qtm_tier")
            found_problems = notes_creator_problems(
                creator.group(1), response.status_code, tier, request_body, response_body
            )
            self.problems.extend(found_problems)
            return
        found = operation_of(name, request.method, path)
        if found is None:
            self.problems.append(f"{request.method} {path}: no such operation in {name}")
            return
        template, op = found
        declared_tier = op.get("x-qlik-tier", {}).get("tier")
        sent_tier = request.extensions.get("qtm_tier")
        if declared_tier and sent_tier != declared_tier:
            self.problems.append(
                f"{request.method} {template}: client paced as tier {sent_tier}, spec says {declared_tier}"
            )
        api = openapi(name)
        try:
            api.validate_request(_Req(request))
        except Exception as exc:
            self.problems.append(f"request {request.method} {path}: {_why(exc)}")
        for problem in patch_value_problems(name, request.method, template, request_body):
            self.problems.append(f"request {request.method} {path}: {problem}")
        declared = op.get("responses", {}) | NOTED_RESPONSES.get(name, {})
        if str(response.status_code) not in declared and "default" not in declared:
            # 429 belongs to every operation through its x-qlik-tier, even where the operation does not list it.
            if response.status_code == 429 and isinstance(response_body, dict) and response_body.get("errors"):
                return
            self.problems.append(f"response {request.method} {path}: status {response.status_code} not in spec")
            return
        if _plain_log(template, response):
            # The log's text/plain answer is declared with the JSON answer's object schema ({logContent}); a text
            # body cannot be an object, so it is checked for being text.
            if not isinstance(response_body, (bytes, str)) and response_body is not None:
                self.problems.append(f"response {request.method} {path}: text/plain log is not text")
            return
        try:
            api.validate_response(_Req(request), _Resp(response, content))
        except Exception as exc:
            self.problems.append(f"response {response.status_code} {request.method} {path}: {_why(exc)}")


def _plain_log(template: str, response: httpx.Response) -> bool:
    return template.endswith("/runs/{runId}/log") and response.headers.get("content-type", "").startswith("text/plain")


def _inline(schema: Any, schemas: dict[str, Any]) -> Any:
    """The schema with its component $refs replaced by their targets (these schemas are not recursive)."""
    if isinstance(schema, list):
        return [_inline(item, schemas) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    return {key: _inline(value, schemas) for key, value in schema.items()}


def _why(exc: Exception) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__ or exc.__context__
    seen = 0
    while cause is not None and seen < 3:
        parts.append(f"{type(cause).__name__}: {cause}")
        inner = getattr(cause, "schema_errors", None)
        if inner:
            parts.extend(str(e.message) for e in list(inner)[:3])
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return " | ".join(parts)[:1500]


class ValidatingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, recorder: SpecRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.recorder.check(request, response, content)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
