"""Async HTTP clients for Qlik Cloud and Qalyptus Cloud. Knows nothing of MCP."""

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput, UnsafeLinkError
from qlik_tasks_mcp.client.paging import Page
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier

__all__ = ["ApiError", "InvalidInput", "Page", "QlikClient", "Tier", "UnsafeLinkError", "path_segment"]
