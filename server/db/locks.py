"""Per-repository session advisory locks in a project database.

Each lock is a session-level advisory lock `(namespace, key(root path))` on a dedicated (never
pooled) connection, so a process that dies frees its locks the moment its connection drops.

- `CONTENT_LOCK`: held by a run while it scans, reads and stores a repository's files (not
  while it fills in vectors), so two runs never interleave their reads and writes of the same
  files: a refresh stores a file's newer content only after a full run stored its older read.
- `WATCH_LEASE` (server/watch/lease.py): which process's watcher enqueues for the repository.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

CONTENT_LOCK = 0x63636E74  # "ccnt"
WATCH_LEASE = 0x63776174  # "cwat"
_APP_NAME = "codebase-mcp-content-lock"

MAX_IDLE = 4  # spare lock connections kept in all
Connect = Callable[[str], Awaitable[asyncpg.Connection]]


async def _plain_connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"application_name": _APP_NAME})


def repository_key(root_path: str) -> int:
    """A stable signed 32-bit key for a repository root (the second half of a two-key lock)."""
    return int.from_bytes(hashlib.blake2b(root_path.encode(), digest_size=4).digest(), "big", signed=True)


class ContentLocks:
    """Hands out content locks; keeps idle connections per database (opening one costs ~10 ms).

    `connect` opens a dedicated connection (the cluster's, within the process's connection budget).
    """

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect or _plain_connect
        self._idle: dict[str, list[asyncpg.Connection]] = {}

    async def _connection(self, dsn: str) -> asyncpg.Connection:
        idle = self._idle.setdefault(dsn, [])
        while idle:
            conn = idle.pop()
            if not conn.is_closed():
                return conn
        return await self._connect(dsn)

    @asynccontextmanager
    async def hold(self, dsn: str, root_path: str) -> AsyncIterator[None]:
        """Wait for the repository's content lock in the database at `dsn`, hold it inside the block."""
        key = repository_key(root_path)
        conn = await self._connection(dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", CONTENT_LOCK, key)
        except BaseException:  # cancelled while waiting: the lock may have been granted meanwhile
            conn.terminate()
            raise
        try:
            yield
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", CONTENT_LOCK, key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.close()  # closing frees the lock too
            except BaseException:
                conn.terminate()
                raise
            else:
                await self._keep(dsn, conn)

    async def _keep(self, dsn: str, conn: asyncpg.Connection) -> None:
        """One spare per database, a few in all: the others are closed (they count against the budget)."""
        idle = self._idle.setdefault(dsn, [])
        if idle or sum(len(c) for c in self._idle.values()) >= MAX_IDLE:
            await conn.close()
        else:
            idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.close()
