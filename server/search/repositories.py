"""The repositories of a project and their chunk counts, which tell search what it may use."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from server.db.cluster import Conn
from server.search.request import SearchError

COUNTS_TTL_SECONDS = 60.0
COUNTS_MIN_INTERVAL_SECONDS = 2.0


# Cheap: the repositories plus the chunks table's write counters, which tell whether counts moved.
_REPOSITORIES_SQL = """
SELECT r.id, r.name, r.root_path,
       (SELECT ARRAY[n_tup_ins, n_tup_upd, n_tup_del] FROM pg_stat_user_tables
        WHERE relid = 'chunks'::regclass) AS writes
FROM repositories r ORDER BY r.name, r.id
"""

# Index-only scans, but proportional to the chunk count: run only when the write counters moved.
_COUNTS_SQL = """
SELECT r.id,
       (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id) AS chunks,
       (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id AND c.embedding IS NULL) AS unembedded,
       (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id AND c.static_embedding IS NULL) AS unstatic
FROM repositories r
"""


@dataclass(frozen=True, slots=True)
class Repository:
    id: uuid.UUID
    name: str
    root_path: str
    chunks: int
    unembedded: int  # without a transformer vector
    unstatic: int  # without a static-tier vector


@dataclass(frozen=True, slots=True)
class _Counts:
    checked_at: float
    writes: tuple[int, ...]
    by_repository: dict[uuid.UUID, tuple[int, int, int]]  # id -> (chunks, unembedded, unstatic)


class RepositoryCounts:
    """Chunk counts per repository (all, without a transformer vector, without a static vector),
    recounted only after writes to `chunks`
    (PostgreSQL's cumulative statistics report them within about a second), at most every
    `min_interval` seconds (while indexing writes never stop), and at least every `ttl` seconds."""

    def __init__(self, ttl: float = COUNTS_TTL_SECONDS, min_interval: float = COUNTS_MIN_INTERVAL_SECONDS) -> None:
        self.ttl = ttl
        self.min_interval = min_interval
        self._cache: dict[str, _Counts] = {}

    async def repositories(self, conn: Conn, key: str) -> list[Repository]:
        rows = await conn.fetch(_REPOSITORIES_SQL)
        writes = tuple(rows[0]["writes"] or ()) if rows else ()
        now = time.monotonic()
        cached = self._cache.get(key)
        age = now - cached.checked_at if cached else 0.0
        if (
            cached is None
            or (cached.writes != writes and age >= self.min_interval)
            or age > self.ttl
            or any(r["id"] not in cached.by_repository for r in rows)
        ):
            counted = await conn.fetch(_COUNTS_SQL)
            cached = _Counts(now, writes, {r["id"]: (r["chunks"], r["unembedded"], r["unstatic"]) for r in counted})
            self._cache[key] = cached
        return [
            Repository(r["id"], r["name"], r["root_path"], *cached.by_repository.get(r["id"], (0, 0, 0))) for r in rows
        ]


def select_repositories(repositories: Sequence[Repository], wanted: str | None, project_id: str) -> list[Repository]:
    if wanted is None:
        return list(repositories)
    chosen = [r for r in repositories if str(r.id) == wanted.lower() or r.name == wanted or r.root_path == wanted]
    if not chosen:
        known = ", ".join(f"{r.name} ({r.id})" for r in repositories) or "none"
        raise SearchError(f"unknown repository {wanted!r} in project {project_id!r}; known repositories: {known}")
    return chosen
