"""JSON-RPC error codes the MCP spec requires where the SDK (mcp 2.3) answers otherwise.

The SDK's MCPServer answers an unknown tool with an isError result, and turns every prompts/get failure (unknown
prompt, missing argument) into a plain exception that its dispatcher sends with code 0. The spec wants -32602
(invalid params) for both. An unknown tool is refused by server/dispatch.py, which knows the catalogue; prompts/get
is checked here, by one server middleware that checks the name and arguments before the SDK's handler runs;
everything else passes through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError

from qlik_tasks_mcp.server.dispatch import echo


def _caused_by_validation(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ValidationError):
            return True
        cause = cause.__cause__
    return False


class SpecErrors:
    """Server middleware: prompts/get failures the client caused carry -32602."""

    def __init__(self, mcp: MCPServer) -> None:
        self._mcp = mcp

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params: Mapping[str, Any] = ctx.params if isinstance(ctx.params, Mapping) else {}
        if ctx.method == "prompts/get":
            await self._check_prompt(params.get("name"), params.get("arguments"))
            return await self._prompt(ctx, call_next)
        return await call_next(ctx)

    async def _check_prompt(self, name: object, arguments: object) -> None:
        if not isinstance(name, str):
            return
        prompt = next((p for p in await self._mcp.list_prompts() if p.name == name), None)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {echo(name)}")
        given = arguments if isinstance(arguments, Mapping) else {}
        missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in given]
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"Missing required arguments: {', '.join(missing)}")

    @staticmethod
    async def _prompt(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        except (MCPError, ValidationError):
            raise
        except Exception as exc:
            # The SDK wraps a bad argument value (pydantic) in a plain ValueError; anything else is our fault.
            code = INVALID_PARAMS if _caused_by_validation(exc) else INTERNAL_ERROR
            raise MCPError(code=code, message=str(exc)) from exc


def follow_spec_errors(mcp: MCPServer) -> None:
    mcp.middleware.append(SpecErrors(mcp))
