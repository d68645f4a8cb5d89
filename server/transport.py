"""Streamable HTTP serving."""

from __future__ import annotations

from mcp.server import MCPServer

from server.settings import Settings


def run_http(mcp: MCPServer, settings: Settings) -> None:
    mcp.run("streamable-http", host=settings.host, port=settings.port)
