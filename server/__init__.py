"""codebase-mcp: semantic code search over PostgreSQL + pgvector, served over MCP."""

__version__ = "0.1.0"
