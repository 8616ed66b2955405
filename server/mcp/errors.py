"""What every tool shares: expected failures become clear tool errors; the session key."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastmcp import Context
from fastmcp.exceptions import ToolError
from pydantic import ValidationError

from server.db.names import InvalidNameError
from server.db.registry import EmbedderMismatchError, UnknownProjectError
from server.indexer.pipeline import RepositoryTooLargeError
from server.jobs.paths import RepoPathError
from server.projects import ProjectConfigError
from server.search.request import SearchError

T = TypeVar("T")

CLEAR_ERRORS = (
    InvalidNameError, UnknownProjectError, ProjectConfigError, RepoPathError, EmbedderMismatchError,
    RepositoryTooLargeError, SearchError,
)  # fmt: skip


async def guard(call: Awaitable[T]) -> T:
    """Turn expected failures into clear tool errors (other errors are masked)."""
    try:
        return await call
    except ToolError:
        raise
    except CLEAR_ERRORS as exc:
        raise ToolError(str(exc)) from exc
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise ToolError(details) from exc


def session_key(ctx: Context | None) -> str | None:
    if ctx is None:
        return None
    try:
        return ctx.session_id
    except RuntimeError:
        return None
