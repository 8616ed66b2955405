"""What every command shares: one-line errors on stderr, and a started `App` for the command's run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rich.console import Console
from rich.text import Text

from server.app import App
from server.db.cluster import DatabaseUnavailableError
from server.errors import UserError
from server.settings import Settings

# Failures whose message is the whole story: shown as one line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
EXIT_UNAVAILABLE = 1  # the database (environment) is the problem
EXIT_USAGE = 2  # the input is the problem


def stderr_console() -> Console:
    """Never wraps: an error is one line however narrow the terminal (or a pipe's 80 columns)."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: str) -> None:
    stderr_console().print(Text.assemble(("error: ", "bold red"), message))


def print_warning(message: str) -> None:
    stderr_console().print(Text.assemble(("warning: ", "bold yellow"), message))


def user_error_in(exc: BaseException) -> BaseException | None:
    """The user-facing error in `exc`, also inside exception groups (task groups, anyio) and causes."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, USER_ERRORS):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        if current.__cause__ is not None:
            stack.append(current.__cause__)
    return None


def exit_code_for(exc: BaseException) -> int:
    return EXIT_UNAVAILABLE if isinstance(exc, DatabaseUnavailableError) else EXIT_USAGE


@asynccontextmanager
async def started_app(settings: Settings) -> AsyncIterator[App]:
    """An `App` without workers for one command (the database is reached or a clear error raised)."""
    app = App(settings)
    try:
        await app.start(workers=False)
        yield app
    finally:
        await app.close()
