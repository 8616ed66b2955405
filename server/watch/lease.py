"""Only one watcher per repository enqueues, however many processes run: a lease in PostgreSQL.

A lease is a session advisory lock `(WATCH_LEASE, lease_key(database, root path))` taken with
`pg_try_advisory_lock` in the *registry* database, on one dedicated connection per process for
all its leases (not one per project database: a process watching hundreds of projects holds one
connection for it). Why a lock and not a lease row with an expiry: PostgreSQL frees it the moment
the holder's connection ends (a crash, a kill -9, a closed laptop lid once TCP keepalives give
up), with no heartbeat to write and no expiry to wait out or to tune against clock skew; the
other processes simply retry `pg_try_advisory_lock` every `WATCH_LEASE_RETRY_SECONDS` and one of
them takes over.

Before each enqueue the watcher makes a round trip on the lease connection (`Leases.probe`): a
process that lost its connection (and its leases with it) stops enqueueing. A job enqueued by a
process whose lease dropped a moment later is harmless: a refresh merges into the pending one, and
a repository has one active index job at most.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import asyncpg

from server.db.cluster import Conn
from server.db.locks import WATCH_LEASE, repository_key

log = logging.getLogger(__name__)

T = TypeVar("T")
# Opens a dedicated connection: (dsn, server_settings) -> connection (the cluster's budget's, in the app).
Connect = Callable[..., Awaitable[asyncpg.Connection]]
APP_NAME_PREFIX = "codebase-mcp-watch-lease:"  # + the holder's pid: pg_stat_activity tells who watches
# A dead client's session (and so its leases) is closed by the server within ~30 s over TCP.
_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def lease_key(database: str, root_path: str) -> int:
    """The lock key of a repository's lease (leases of every project live in the registry database)."""
    return repository_key(f"{database}\x00{root_path}")


Key = tuple[str, str]  # (project database, repository root path)

_TAKEN_SQL = """
SELECT objid::bigint AS key, pid FROM pg_locks
WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objsubid = 2 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND objid::bigint = ANY($2::bigint[])
"""


class LeaseLostError(RuntimeError):
    """The lease connection dropped: every lease it held is gone."""


class Leases:
    """This process's watch leases, on one connection to the registry database at `dsn`."""

    def __init__(self, dsn: str, connect: Connect = asyncpg.connect) -> None:
        self.dsn = dsn
        self._connect = connect
        self.held: set[Key] = set()
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

    async def taken(self, registry: Conn | asyncpg.Pool, keys: list[Key]) -> set[Key]:
        """Those of `keys` whose lease another session holds: a look at pg_locks through any
        registry connection, so a process holding no lease needs no lease connection to find out
        (a key collision with one of our own leases is no obstacle: the lock is re-entrant)."""
        wanted = {lease_key(*k) & 0xFFFFFFFF: k for k in keys}  # pg_locks.objid is unsigned
        ours = self._conn.get_server_pid() if self._conn is not None and not self._conn.is_closed() else None
        rows = await registry.fetch(_TAKEN_SQL, WATCH_LEASE, list(wanted))
        return {wanted[r["key"]] for r in rows if r["pid"] != ours}

    async def try_acquire(self, key: Key) -> bool:
        if key in self.held:
            return True
        got: bool = await self.run(
            lambda c: c.fetchval("SELECT pg_try_advisory_lock($1, $2)", WATCH_LEASE, lease_key(*key))
        )
        if got:
            self.held.add(key)
        return got

    async def release(self, key: Key) -> None:
        if key not in self.held:
            return
        self.held.discard(key)
        await self.run(lambda c: c.execute("SELECT pg_advisory_unlock($1, $2)", WATCH_LEASE, lease_key(*key)))

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def probe(self) -> None:
        """A round trip: raises `LeaseLostError` when the connection died since the last statement."""
        await self.run(lambda c: c.execute("SELECT 1"))

    async def close(self) -> None:
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(5):
                    await conn.close()
            except (TimeoutError, *_CONNECTION_ERRORS):
                conn.terminate()
