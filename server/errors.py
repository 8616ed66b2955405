"""The one base class of expected, user-facing failures.

A `UserError` is a failure the user can act on (a bad argument, an unknown project, a
repository that is too large, a provider that cannot be reached), not a bug. Its message says
what went wrong and what to do instead; every entry point shows it as is, without a traceback:
MCP tools and resources (server/mcp/middleware.py), the CLI and the web routes.

This module imports nothing, so any module can derive its errors from it without cycles.
Derive together with the built-in the error refines, so existing `except ValueError` keeps
working: ``class RepoPathError(UserError, ValueError)``.
"""

from __future__ import annotations

__all__ = ["InvalidArgumentError", "UserError"]


class UserError(Exception):
    """An expected failure whose message is shown to the user as is."""


class InvalidArgumentError(UserError, ValueError):
    """An argument that passed type validation but cannot be served; the message names it."""
