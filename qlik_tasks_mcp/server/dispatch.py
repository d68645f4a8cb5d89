"""The server middleware (the SDK's public `ServerMiddleware`: it sees each request's method and raw params) that
keeps a start cheap and answers mistakes in one line:

- tools/list: the SDK answers with the tools registered so far, and the tools are swapped for the shipped
  catalogue's (tools/served.py), so listing builds no tool; everything else of the answer (its envelope for the
  client's protocol version) stays the SDK's.
- tools/call: an unknown tool is refused with -32602, as the spec asks; the called tool's toolset is built on its
  first call; then its arguments are checked (tools/arguments.py) before the SDK validates and runs the tool.
- prompts/list, prompts/get: the prompts are registered on first use.

A call refused here (its toolset could not be built, its arguments are wrong) is answered by the tool `REFUSED`,
registered for that alone and never listed: the request is rewritten to call it, so the SDK shapes the refusal like
any tool's error result (an `isError` result the model reads and corrects, in the envelope of the client's
protocol version) rather than this module building a response of its own.

Nothing else is overridden. The SDK checks a streamable-HTTP call's Mcp-Param headers against the tool's registered
input schema before any middleware runs: a tool not built yet has none, so there is nothing to check, as there is
for a built one (no schema here declares `x-mcp-header`; tests/test_arguments.py keeps schemas to known keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent
from mcp.types.methods import serialize_server_result
from pydantic import BaseModel

from qlik_tasks_mcp.tools.served import ServedTools

REFUSED = "qlik_tasks_mcp.refused"
# Names come from the client; an echo of one stays short.
MAX_ECHOED_NAME = 100
log = logging.getLogger(__name__)


def echo(name: object) -> str:
    return repr(name)[:MAX_ECHOED_NAME] if not isinstance(name, str) else name[:MAX_ECHOED_NAME]


def refused(line: str) -> CallToolResult:
    """A call the server refused before running it, and why (one line)."""
    return CallToolResult(content=[TextContent(type="text", text=line)], is_error=True)


class Dispatch:
    """The server middleware described above, over the tools `served` and the prompts `register_prompts` adds."""

    def __init__(self, mcp: MCPServer[Any], served: ServedTools, register_prompts: Callable[[], None]) -> None:
        self._mcp = mcp
        self._served = served
        self._register_prompts = register_prompts
        self._refusal_registered = False
        self._listed: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            return self._catalogue(ctx.protocol_version, await call_next(ctx))
        if ctx.method == "tools/call":
            return await self._call(ctx, call_next)
        if ctx.method in ("prompts/list", "prompts/get"):
            self._register_prompts()
        return await call_next(ctx)

    def _catalogue(self, version: str, answer: HandlerResult) -> HandlerResult:
        if answer is None:
            return answer
        result = (
            answer.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(answer, BaseModel)
            else answer
        )
        tools = self._listed.get(version)
        if tools is None:
            entries = [item.entry()["tool"] for item in self._served.listed]
            try:
                # Shaped as the SDK shapes its own answer for this protocol version.
                tools = serialize_server_result("tools/list", version, {**result, "tools": entries})["tools"]
            except (KeyError, ValueError):
                log.warning("the catalogue could not be shaped for protocol version %s; sent as written", version)
                tools = entries
            self._listed[version] = tools
        return {**result, "tools": tools}

    async def _call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params: Mapping[str, Any] = ctx.params if isinstance(ctx.params, Mapping) else {}
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str):
            return await call_next(ctx)  # the SDK's params validation answers -32602
        if name not in self._served.by_name:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {echo(name)}")
        try:
            await self._served.build(name)
        except ToolError as exc:
            return await self._refuse(ctx, call_next, name, str(exc))
        # Absent arguments are none; arguments that are not an object are the SDK's params validation's to refuse.
        given = {} if arguments is None else arguments
        check = self._served.registrar.checks.get(name)
        line = check.refusal(dict(given)) if check is not None and isinstance(given, Mapping) else None
        if line is not None:
            return await self._refuse(ctx, call_next, name, line)
        return await call_next(ctx)

    async def _refuse(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, name: str, line: str
    ) -> HandlerResult:
        log.info("Tool %r refused: %r", name, line)
        if not self._refusal_registered:
            self._mcp.add_tool(refused, name=REFUSED, description="Internal: answers a refused call.")
            self._refusal_registered = True
        params = {**(ctx.params or {}), "name": REFUSED, "arguments": {"line": line}}
        return await call_next(replace(ctx, params=params))
