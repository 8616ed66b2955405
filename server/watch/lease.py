"""Only one watcher per repository enqueues, however many processes run: a lease in PostgreSQL.

A lease is a session advisory lock `(WATCH_LEASE, key(root path))` taken with
`pg_try_advisory_lock` on one dedicated connection per project database and process. Why a lock
and not a lease row with an expiry: PostgreSQL frees it the moment the holder's connection ends
(a crash, a kill -9, a closed laptop lid once TCP keepalives give up), with no heartbeat to
write and no expiry to wait out or to tune against clock skew; the other processes simply retry
`pg_try_advisory_lock` every `WATCH_LEASE_RETRY_SECONDS` and one of them takes over.

Jobs are enqueued *through the lease connection* (`Leases.run`): a statement that succeeds on it
proves the connection, and so the lease, is alive, so a process that lost its connection (and
its leases) cannot enqueue as if it still held them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import asyncpg

from server.db.locks import WATCH_LEASE, repository_key

log = logging.getLogger(__name__)

T = TypeVar("T")
# Opens a dedicated connection: (dsn, server_settings) -> connection (the cluster's budget's, in the app).
Connect = Callable[..., Awaitable[asyncpg.Connection]]
APP_NAME_PREFIX = "codebase-mcp-watch-lease:"  # + the holder's pid: pg_stat_activity tells who watches
# A dead client's session (and so its leases) is closed by the server within ~30 s over TCP.
_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class LeaseLostError(RuntimeError):
    """The lease connection dropped: every lease it held is gone."""


class Leases:
    """This process's watch leases in one project database."""

    def __init__(self, dsn: str, connect: Connect = asyncpg.connect) -> None:
        self.dsn = dsn
        self._connect = connect
        self.held: set[str] = set()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            if self.held:
                self._lost()
            name = f"{APP_NAME_PREFIX}{os.getpid()}"
            settings: dict[str, Any] = {"application_name": name, **_KEEPALIVES}
            self._conn = await self._connect(self.dsn, server_settings=settings)
        return self._conn

    def _lost(self) -> NoReturn:
        if self.held:
            log.warning("watch lease connection to %s lost; %d leases released", self.dsn, len(self.held))
        self.held.clear()
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        raise LeaseLostError(self.dsn)

    async def run(self, statement: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `statement` on the lease connection; `LeaseLostError` when the connection (and the
        leases with it) is gone."""
        async with self._lock:
            conn = await self._connection()
            try:
                return await statement(conn)
            except (*_CONNECTION_ERRORS, asyncpg.OperatorInterventionError):
                self._lost()
                raise
            except Exception:
                if conn.is_closed():
                    self._lost()
                raise

    async def try_acquire(self, root_path: str) -> bool:
        if root_path in self.held:
            return True
        got: bool = await self.run(
            lambda c: c.fetchval("SELECT pg_try_advisory_lock($1, $2)", WATCH_LEASE, repository_key(root_path))
        )
        if got:
            self.held.add(root_path)
        return got

    async def release(self, root_path: str) -> None:
        if root_path not in self.held:
            return
        self.held.discard(root_path)
        await self.run(lambda c: c.execute("SELECT pg_advisory_unlock($1, $2)", WATCH_LEASE, repository_key(root_path)))

    async def probe(self) -> None:
        """A round trip: raises `LeaseLostError` when the connection died since the last statement."""
        await self.run(lambda c: c.execute("SELECT 1"))

    async def close(self) -> None:
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except (TimeoutError, *_CONNECTION_ERRORS):
                conn.terminate()
