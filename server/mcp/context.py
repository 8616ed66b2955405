"""Per-request helpers every tool shares: the session key and the project of a request."""

from __future__ import annotations

from fastmcp import Context

from server.app import App
from server.projects import Resolved

__all__ = ["resolve_project", "session_key"]


def session_key(ctx: Context | None) -> str | None:
    """The MCP session of a request (None outside a session, e.g. a stateless HTTP request)."""
    if ctx is None:
        return None
    try:
        return ctx.session_id
    except RuntimeError:
        return None


async def resolve_project(app: App, ctx: Context | None, project_id: str | None, *, create: bool = False) -> Resolved:
    """The request's project: `project_id`, else the session's working directory, else the default.

    `create` provisions an unknown project (only for writing operations such as indexing).
    """
    return await app.resolver.resolve(project_id, session_key(ctx), create=create)
