"""The FastMCP server: the tool modules (server/mcp/tools/) over one `App`, behind one error boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import FastMCP

from server import __version__
from server.app import App
from server.mcp.middleware import ErrorMiddleware
from server.mcp.tools import MODULES

INSTRUCTIONS = """\
Semantic code search over local repositories. Call set_working_directory first so the right
project is used; list_repositories shows what is indexed. Index a repository once
(start_indexing_background for large ones, then watch_indexing or get_indexing_status),
then use search_code. remove_repository forgets one.
Indexed repositories are watched: edits are searchable within about a second. To be sure
search sees your latest edits, call refresh_index (it returns once they are indexed)."""


def build_server(app: App, *, manage_app: bool = True) -> FastMCP:
    """Build the MCP server; with `manage_app` its lifespan starts and closes `app`."""

    @asynccontextmanager
    async def lifespan(_: FastMCP) -> AsyncIterator[dict[str, Any]]:
        if manage_app:
            await app.start(watch=app.settings.watch_repositories)
        try:
            yield {"app": app}
        finally:
            if manage_app:
                await app.close()

    mcp = FastMCP(
        "codebase-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        mask_error_details=True,  # nothing unworded escapes: ErrorMiddleware words every failure
        middleware=[ErrorMiddleware(app.settings)],
    )
    for register in MODULES:
        register(mcp, app)
    return mcp
