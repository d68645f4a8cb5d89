"""Validates every request the client sends and every answer the sandbox gives against Qlik's OpenAPI specs."""

from __future__ import annotations

import copy
import json
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


@cache
def openapi(name: str) -> OpenAPI:
    spec = copy.deepcopy(raw_spec(name))
    # The servers entry is a per-tenant template; validate paths against whatever host answered.
    spec["servers"] = [{"url": "/"}]
    for schema in PATCH_VALUE_SCHEMAS:
        if schema in spec["components"]["schemas"]:
            spec["components"]["schemas"][schema]["properties"]["value"] = {}
    return OpenAPI.from_dict(spec)


def patch_value_problems(name: str, method: str, template: str, body: Any) -> list[str]:
    """Each JSON Patch op's value against the schema of the field its path names."""
    if method != "PATCH" or not isinstance(body, list):
        return []
    spec = raw_spec(name)
    schemas = spec["components"]["schemas"]
    op = spec["paths"][template]["patch"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    item = schemas[ref]["items"]["$ref"].rsplit("/", 1)[-1]
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
        declared = op.get("responses", {})
        if str(response.status_code) not in declared and "default" not in declared:
            # 429 belongs to every operation through its x-qlik-tier, even where the operation does not list it.
            if response.status_code == 429 and isinstance(response_body, dict) and response_body.get("errors"):
                return
            self.problems.append(f"response {request.method} {path}: status {response.status_code} not in spec")
            return
        try:
            api.validate_response(_Req(request), _Resp(response, content))
        except Exception as exc:
            self.problems.append(f"response {response.status_code} {request.method} {path}: {_why(exc)}")


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
