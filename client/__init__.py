"""Async HTTP clients for Qlik Cloud and Qalyptus Cloud. Knows nothing of MCP."""

from client.errors import ApiError, InvalidInput, UnsafeLinkError
from client.paging import Page
from client.paths import path_segment
from client.qlik import QlikClient
from client.ratelimit import Tier

__all__ = ["ApiError", "InvalidInput", "Page", "QlikClient", "Tier", "UnsafeLinkError", "path_segment"]
