"""Builds the MCP server: settings, guard-rails, lifespan, transports, command line."""
