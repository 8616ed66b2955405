"""`set_working_directory`: which project a session works in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import AfterValidator, Field

from server.app import App
from server.jobs.paths import validate_directory
from server.mcp.context import resolve_project, session_key
from server.mcp.models import WorkingDirectoryResult
from server.mcp.params import Text


def _absolute(directory: str) -> str:
    if not Path(directory).is_absolute():
        raise ValueError("must be absolute, e.g. /home/alice/src/app ('~' is not expanded)")
    return directory


Directory = Annotated[
    Text,
    AfterValidator(_absolute),
    Field(
        description="Absolute path of the directory the client works in; the nearest .codebase-mcp/config.json "
        "at or above it names the session's project"
    ),
]


def register(mcp: FastMCP, app: App) -> None:
    @mcp.tool
    async def set_working_directory(directory: Directory, ctx: Context) -> WorkingDirectoryResult:
        """Tell the server where this session works; its .codebase-mcp/config.json picks the project."""
        # the same rules as repo_path: absolute, no '..', no control characters, inside ALLOWED_ROOTS
        path = validate_directory(directory, allowed_roots=app.settings.allowed_roots)
        key = session_key(ctx) or "process"
        resolved_dir = app.resolver.set_working_directory(key, path, process_wide=app.single_client)
        res = await resolve_project(app, ctx, None, create=True)
        return WorkingDirectoryResult(
            directory=str(resolved_dir),
            project_id=res.project.id,
            source=res.source,
            config_path=str(res.config_path) if res.config_path else None,
        )
