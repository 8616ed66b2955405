"""Per-repository session advisory locks.

Each lock is a session-level advisory lock `(namespace, key(root path))` on a dedicated (never
pooled) connection, so a process that dies frees its locks the moment its connection drops.

- `CONTENT_LOCK` (in the project database): held by a run while it scans, reads and stores a repository's files (not
  while it fills in vectors), so two runs never interleave their reads and writes of the same
  files: a refresh stores a file's newer content only after a full run stored its older read.
- `WATCH_LEASE` (in the registry database, server/watch/lease.py): which process's watcher
  enqueues for the repository.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

CONTENT_LOCK = 0x63636E74  # "ccnt"
WATCH_LEASE = 0x63776174  # "cwat"
_APP_NAME = "codebase-mcp-content-lock"

Connect = Callable[[str], Awaitable[asyncpg.Connection]]


async def _plain_connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"application_name": _APP_NAME})


def repository_key(root_path: str) -> int:
    """A stable signed 32-bit key for a repository root (the second half of a two-key lock)."""
    return int.from_bytes(hashlib.blake2b(root_path.encode(), digest_size=4).digest(), "big", signed=True)


class ContentLocks:
    """Hands out content locks, each on a connection of its own, closed after use: a spare per
    database would count against the connection budget for every project (opening one costs ~10 ms,
    a run of a few files' ~100 ms). `connect` opens it (the cluster's, within the budget)."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect or _plain_connect

    @asynccontextmanager
    async def hold(self, dsn: str, root_path: str) -> AsyncIterator[None]:
        """Wait for the repository's content lock in the database at `dsn`, hold it inside the block."""
        key = repository_key(root_path)
        conn = await self._connect(dsn)
        try:
            try:
                await conn.execute("SELECT pg_advisory_lock($1, $2)", CONTENT_LOCK, key)
            except BaseException:  # cancelled while waiting: the lock may have been granted meanwhile
                conn.terminate()
                raise
            yield
        finally:
            try:
                async with asyncio.timeout(5):  # closing frees the lock
                    await conn.close()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()  # so does terminating
            except BaseException:
                conn.terminate()
                raise

    async def close(self) -> None:
        """Nothing is kept between runs (kept for symmetry with the app's other resources)."""
