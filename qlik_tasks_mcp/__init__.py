"""qlik-tasks-mcp: an MCP server for the scheduled work of Qlik Cloud and Qalyptus Cloud."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qlik-tasks-mcp")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
