"""The watcher's SQL in a project database: which repositories it holds (leases: server/watch/lease.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.db.cluster import Conn


@dataclass(frozen=True, slots=True)
class WatchedRepository:
    root_path: str
    name: str


async def list_repositories(conn: Conn | asyncpg.Pool) -> list[WatchedRepository]:
    rows = await conn.fetch("SELECT root_path, name FROM repositories ORDER BY root_path")
    return [WatchedRepository(r["root_path"], r["name"]) for r in rows]
