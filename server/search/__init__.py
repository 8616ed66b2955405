"""Hybrid code search (vectors + full text) behind the `search_code` tool and `codebase-mcp search`."""
