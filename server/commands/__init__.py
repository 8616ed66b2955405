"""The `codebase-mcp` sub-commands, one module per concern (`server/cli.py` parses and dispatches)."""
