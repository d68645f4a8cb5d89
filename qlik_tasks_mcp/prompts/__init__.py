"""MCP prompts for common operations conversations."""
