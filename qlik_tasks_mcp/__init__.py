"""qlik-tasks-mcp: an MCP server for the scheduled work of Qlik Cloud and Qalyptus Cloud."""

# The one place the version is written (pyproject.toml reads it from here): no metadata lookup at start.
__version__ = "0.1.0"
