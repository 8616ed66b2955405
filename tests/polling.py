"""The one way tests wait for something to become true: poll a check until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    interval: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...


@overload
async def wait_for(
    check: Callable[[], T | None],
    *,
    within: float,
    interval: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...


async def wait_for(
    check: Callable[[], Any],
    *,
    within: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "condition",
) -> Any:
    """Call `check` (sync or async) until it returns something other than None or False; return that.

    The check runs once more after the deadline, so a stalled event loop cannot turn a condition that
    became true into a failure. On timeout raises TimeoutError naming `what` (a string, or a function
    called only then, e.g. to show the last state seen). Exceptions from `check` propagate at once.
    """
    deadline = time.monotonic() + within
    while True:
        expired = time.monotonic() > deadline
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value is not None and value is not False:
            return value
        if expired:
            description = what() if callable(what) else what
            raise TimeoutError(f"{description} not met within {within}s")
        await asyncio.sleep(interval)
