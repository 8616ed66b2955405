"""The watcher's SQL: which repositories a project database holds, and whose watch leases are taken."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.db.cluster import Conn
from server.db.locks import WATCH_LEASE, repository_key


@dataclass(frozen=True, slots=True)
class WatchedRepository:
    root_path: str
    name: str


async def list_repositories(conn: Conn | asyncpg.Pool) -> list[WatchedRepository]:
    rows = await conn.fetch("SELECT root_path, name FROM repositories ORDER BY root_path")
    return [WatchedRepository(r["root_path"], r["name"]) for r in rows]


async def taken_leases(conn: Conn | asyncpg.Pool, root_paths: list[str]) -> set[str]:
    """Those of `root_paths` whose watch lease some session holds (a cheap look at pg_locks, so a
    process holding no lease needs no connection of its own to find out)."""
    keys = {repository_key(p) & 0xFFFFFFFF: p for p in root_paths}  # pg_locks.objid is unsigned
    rows = await conn.fetch(
        """
        SELECT objid::bigint AS key FROM pg_locks
        WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objsubid = 2 AND granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND objid::bigint = ANY($2::bigint[])
        """,
        WATCH_LEASE,
        list(keys),
    )
    return {keys[r["key"]] for r in rows}
