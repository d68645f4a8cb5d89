"""The server uses the SDK's public API only, and the behaviours of it that the design leans on hold: if an SDK
release changes one, these fail by name rather than the server misbehaving quietly."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
# Where a private touch would have to live if an SDK gap ever forced one (none does today), saying why.
COMPAT_MODULE = ROOT / "qlik_tasks_mcp" / "tools" / "sdk_compat.py"
# The SDK's internals this server once used, by name, and any private attribute reached through a name like `mcp`.
PRIVATE = re.compile(
    r"\bmcp\w*(?:\.\w+)*\._\w"
    r"|\b_(?:tool_manager|prompt_manager|resource_manager|lowlevel_server|tool_input_schema)\b"
    r"|\b(?:func_metadata|FuncMetadata|ArgModelBase|StrictJsonSchema|ToolManager)\b"
    r"|mcp\.server\.mcpserver\.(?:utilities|tools)\b"
)


def sources() -> list[Path]:
    files = [*(ROOT / "qlik_tasks_mcp").rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    return sorted(f for f in files if f != Path(__file__).resolve() and f != COMPAT_MODULE)


def private_imports(path: Path) -> list[str]:
    """`from mcp... import _x`, or a module path with a private part (`mcp.server._streamable_http_modern`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("mcp", "mcp_types"):
            module = node.module or ""
            if any(part.startswith("_") for part in module.split(".")) or any(
                a.name.startswith("_") for a in node.names
            ):
                found.append(f"from {module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.split(".")[0] in ("mcp", "mcp_types") and any(p.startswith("_") for p in a.name.split("."))
            ]
    return found


def test_no_module_touches_a_private_name_of_the_sdk() -> None:
    found = []
    for path in sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        found += [f"{rel}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}" for m in PRIVATE.finditer(text)]
        found += [f"{rel}: {imported}" for imported in private_imports(path)]
    assert not found, "private SDK names outside tools/sdk_compat.py:\n" + "\n".join(found)


def test_the_sdk_and_what_the_package_imports_are_declared_as_ranges() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    assert declared["mcp"].replace(" ", "") == "mcp>=2.3,<3"
    imported: set[str] = set()
    for path in (ROOT / "qlik_tasks_mcp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
    # Distribution names where they differ from the module's; tzdata is data zoneinfo reads, never imported.
    distribution: dict[str, str] = {
        "dateutil": "python-dateutil",
        "re2": "google-re2",
        "pydantic_core": "pydantic-core",
    }
    third_party: set[str] = imported - set(sys.stdlib_module_names) - {"qlik_tasks_mcp", "__future__"}
    missing = sorted(distribution.get(m, m) for m in third_party if distribution.get(m, m) not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def plain_server() -> MCPServer[Any]:
    mcp: MCPServer[Any] = MCPServer("probe")

    async def made(word: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text='{"w":1}')], structured_content={"w": 1})

    mcp.add_tool(made, name="made")
    return mcp


async def test_a_tool_that_returns_its_call_tool_result_is_passed_through_and_derives_no_schema() -> None:
    """tools/registrar.py's compact_result relies on it: the text block stays compact, nothing is re-derived."""
    mcp = plain_server()
    assert [t.output_schema for t in await mcp.list_tools()] == [None]
    async with Client(mcp) as client:
        result = await client.call_tool("made", {"word": "x"})
    assert result.structured_content == {"w": 1} and [c.text for c in result.content] == ['{"w":1}']  # type: ignore[union-attr]


async def test_middleware_sees_the_raw_request_and_its_rewrite_reaches_the_handler() -> None:
    """server/dispatch.py relies on it: the method, raw params and protocol version, and a rewritten request."""
    mcp = plain_server()
    seen: list[tuple[str, str]] = []

    async def rewrite(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        seen.append((ctx.method, ctx.protocol_version))
        if ctx.method == "tools/call":
            ctx = replace(ctx, params={**(ctx.params or {}), "arguments": {"word": "rewritten"}})
        return await call_next(ctx)

    mcp.middleware.append(rewrite)
    async with Client(mcp) as client:
        listed = await client.list_tools()
        result = await client.call_tool("made", {"nonsense": 1})
    assert [t.name for t in listed.tools] == ["made"] and not result.is_error
    assert [method for method, _ in seen if method.startswith("tools/")] == ["tools/list", "tools/call"]
    assert all(version for _, version in seen)
