"""A cluster-wide limit on running jobs: N advisory-lock slots in the registry database.

Each held slot is a session-level advisory lock on a dedicated (never pooled)
connection, so a worker that dies frees its slot the moment its connection drops.
One idle connection is kept for reuse (opening one costs far more than locking); others close.
Releasing a slot sends a hint on the registry's `codebase_jobs` channel: another worker may claim.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from server.jobs.channels import HINT_CHANNEL
from server.jobs.models import JobKind

Connect = Callable[[str], Awaitable[asyncpg.Connection]]
SLOT_FREED = json.dumps({"event": "slot"})

INDEX_SLOTS = 0x636A6F62  # "cjob": advisory lock namespace for index-job slots
REFRESH_SLOTS = 0x63726566  # "cref": a separate budget for refresh jobs
_APP_NAME = "codebase-mcp-slot"


class Slot:
    def __init__(self, owner: GlobalSlots, conn: asyncpg.Connection, number: int) -> None:
        self.owner = owner
        self.conn = conn
        self.number = number

    async def release(self) -> None:
        await self.owner._release(self)


async def _plain_connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"application_name": _APP_NAME})


class GlobalSlots:
    def __init__(self, dsn: str, limit: int, namespace: int = INDEX_SLOTS, *, connect: Connect | None = None) -> None:
        self.dsn = dsn
        self.limit = limit
        self.namespace = namespace
        self._connect = connect or _plain_connect
        self._idle: list[asyncpg.Connection] = []  # the spare (shared with `sibling`s)

    def sibling(self, limit: int, namespace: int) -> GlobalSlots:
        """Slots of another budget sharing this one's spare connection (one spare for all lanes)."""
        other = GlobalSlots(self.dsn, limit, namespace, connect=self._connect)
        other._idle = self._idle
        return other

    async def _connection(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        return await self._connect(self.dsn)

    async def _keep(self, conn: asyncpg.Connection) -> None:
        if self._idle:
            await conn.close()  # one spare is enough
        else:
            self._idle.append(conn)

    async def try_acquire(self) -> Slot | None:
        conn = await self._connection()
        try:
            for number in range(self.limit):
                if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", self.namespace, number):
                    return Slot(self, conn, number)
        except BaseException:
            await conn.close()
            raise
        await self._keep(conn)
        return None

    async def _release(self, slot: Slot) -> None:
        conn = slot.conn
        try:
            if not conn.is_closed():
                await conn.execute(
                    "SELECT pg_advisory_unlock($1, $2), pg_notify($3, $4)",
                    self.namespace, slot.number, HINT_CHANNEL, SLOT_FREED,
                )  # fmt: skip
                await self._keep(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.close()  # closing frees the lock too

    async def close(self) -> None:
        idle = list(self._idle)
        self._idle.clear()  # in place: siblings share it
        for conn in idle:
            await conn.close()

    async def in_use(self) -> int:
        conn = await self._connection()
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND granted",
                self.namespace,
            )
            return n
        finally:
            await self._keep(conn)


@dataclass
class Lane:
    """Jobs of one kind and their own budget: `slots.limit` cluster-wide, as many per process at most."""

    kind: JobKind
    slots: GlobalSlots

    @property
    def limit(self) -> int:
        return self.slots.limit
