"""The MCP tools, one module per concern, each with `register(mcp, app)`.

Adding a tool module: write `register(mcp: FastMCP, app: App) -> None`, describe every parameter
(`Annotated[..., Field(description=...)]`, shared ones in server/mcp/params.py), raise
`server.errors.UserError` subclasses for expected failures (the error middleware words every
other exception), and list the module in `MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastmcp import FastMCP

from server.app import App
from server.mcp.tools import health, indexing, jobs, projects, refresh, repositories, search

Register = Callable[[FastMCP, App], None]

MODULES: tuple[Register, ...] = (
    health.register,
    projects.register,
    jobs.register,
    indexing.register,
    repositories.register,
    search.register,
    refresh.register,
)

__all__ = ["MODULES", "Register"]
