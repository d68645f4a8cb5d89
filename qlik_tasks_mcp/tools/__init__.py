"""MCP tools, one module per API family, on top of client/."""
