"""A cluster-wide limit on running jobs: N advisory-lock slots in the registry database.

Each held slot is a session-level advisory lock on a dedicated (never pooled)
connection, so a worker that dies frees its slot the moment its connection drops.
"""

from __future__ import annotations

import asyncpg

_SLOT_CLASS = 0x636A6F62  # "cjob": advisory lock namespace for job slots


class Slot:
    def __init__(self, conn: asyncpg.Connection, number: int) -> None:
        self.conn = conn
        self.number = number

    async def release(self) -> None:
        try:
            if not self.conn.is_closed():
                await self.conn.execute("SELECT pg_advisory_unlock($1, $2)", _SLOT_CLASS, self.number)
        finally:
            await self.conn.close()


class GlobalSlots:
    def __init__(self, dsn: str, limit: int) -> None:
        self.dsn = dsn
        self.limit = limit

    async def try_acquire(self) -> Slot | None:
        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": "codebase-mcp-slot"})
        try:
            for number in range(self.limit):
                if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _SLOT_CLASS, number):
                    return Slot(conn, number)
        except BaseException:
            await conn.close()
            raise
        await conn.close()
        return None

    async def in_use(self) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND granted",
                _SLOT_CLASS,
            )
            return n
        finally:
            await conn.close()
