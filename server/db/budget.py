"""A per-process ceiling on PostgreSQL connections, and clear errors when a limit is hit.

Every connection this process opens (pools, LISTEN links, job slots, maintenance) goes through
`ConnectionBudget.connect`: it waits up to `wait_seconds` for a free place (idle pooled
connections are closed after POOL_IDLE_SECONDS, so places come back), then fails with
`ConnectionLimitError` rather than pushing PostgreSQL into "too many clients" for everyone. The
place is given back when the connection closes, however it closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from server.errors import UserError

log = logging.getLogger(__name__)


class ConnectionLimitError(UserError, RuntimeError):
    """A connection limit (this process's, or the server's max_connections) was reached."""


class ConnectionBudget:
    def __init__(self, limit: int, *, wait_seconds: float = 15.0) -> None:
        if limit < 1:
            raise ValueError("the connection budget must be at least 1")
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.in_use = 0
        self.peak = 0
        self.refused = 0
        self._places = asyncio.Semaphore(limit)

    async def _take(self) -> None:
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._places.acquire()
        except TimeoutError:
            self.refused += 1
            raise ConnectionLimitError(
                f"this process already holds {self.in_use} PostgreSQL connections (MAX_DB_CONNECTIONS="
                f"{self.limit}) and none came free within {self.wait_seconds:.0f}s; try again shortly, or "
                "raise MAX_DB_CONNECTIONS (mind PostgreSQL's max_connections across all processes)"
            ) from None
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def _give_back(self) -> None:
        self.in_use -= 1
        self._places.release()

    async def connect(self, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        """`asyncpg.connect` within the budget (also usable as a pool's `connect=`)."""
        await self._take()
        try:
            conn: asyncpg.Connection = await asyncpg.connect(dsn, **kwargs)
        except asyncpg.TooManyConnectionsError as exc:
            self._give_back()
            raise ConnectionLimitError(
                f"PostgreSQL refused a new connection: {exc}. Its max_connections is shared by every process; "
                "lower MAX_DB_CONNECTIONS or POOL_MAX_SIZE, run fewer processes, or raise max_connections"
            ) from exc
        except BaseException:
            self._give_back()
            raise
        released = False

        def release(_: object) -> None:
            nonlocal released
            if not released:
                released = True
                self._give_back()

        conn.add_termination_listener(release)
        return conn
