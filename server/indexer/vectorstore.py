"""All SQL of the transformer tier behind the store phase: the embedding cache, per-tier coverage,
the chunks left to embed in priority order, and writing their vectors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
import numpy.typing as npt
from pgvector import Vector

from server.db.cluster import Conn
from server.indexer.vector_index import TRANSFORMER


async def cache_hits(conn: Conn, repo_id: uuid.UUID, rel_paths: Sequence[str] | None = None) -> int:
    """How many chunks still without a transformer vector have a cached one (of these files, or all)."""
    n: int = await conn.fetchval(
        """
        SELECT count(*) FROM chunks c JOIN embedding_cache e ON e.text_hash = c.embed_hash
        WHERE c.repository_id = $1 AND c.embedding IS NULL
          AND ($2::text[] IS NULL
               OR c.file_id IN (SELECT id FROM files WHERE repository_id = $1 AND rel_path = ANY($2)))
        """,
        repo_id,
        None if rel_paths is None else list(rel_paths),
    )
    return n


async def fill_from_cache(conn: Conn, repo_id: uuid.UUID) -> int:
    """Give unembedded chunks the cached vector of an identical text."""
    status: str = await conn.execute(
        """
        UPDATE chunks c SET embedding = e.embedding
        FROM embedding_cache e
        WHERE c.repository_id = $1 AND c.embedding IS NULL AND e.text_hash = c.embed_hash
        """,
        repo_id,
    )
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class Coverage:
    chunks: int
    unembedded: int  # without a transformer vector
    unstatic: int  # without a static vector

    @property
    def transformer(self) -> float:
        return 1.0 - self.unembedded / self.chunks if self.chunks else 1.0

    @property
    def static(self) -> float:
        return 1.0 - self.unstatic / self.chunks if self.chunks else 1.0


async def coverage(conn: Conn, repo_id: uuid.UUID) -> Coverage:
    """The repository's chunk counts per tier (index-only scans)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM chunks WHERE repository_id = $1) AS chunks,
               (SELECT count(*) FROM chunks WHERE repository_id = $1 AND embedding IS NULL) AS unembedded,
               (SELECT count(*) FROM chunks WHERE repository_id = $1 AND static_embedding IS NULL) AS unstatic
        """,
        repo_id,
    )
    assert row is not None
    return Coverage(int(row["chunks"]), int(row["unembedded"]), int(row["unstatic"]))


async def next_unembedded(
    conn: Conn, repo_id: uuid.UUID, priority: int, below_id: int, limit: int
) -> list[asyncpg.Record]:
    """Chunks still without a transformer vector at `priority`, newest first (below `below_id`)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT c.id, c.embed_hash, c.symbol, c.content, f.rel_path
        FROM chunks c JOIN files f ON f.id = c.file_id
        WHERE c.repository_id = $1 AND c.embedding IS NULL AND c.embed_priority = $2 AND c.id < $3
        ORDER BY c.id DESC LIMIT $4
        """,
        repo_id,
        priority,
        below_id,
        limit,
    )
    return rows


async def unembedded_of_files(
    conn: Conn, repo_id: uuid.UUID, rel_paths: Sequence[str]
) -> tuple[int, list[asyncpg.Record]]:
    """Chunks of these files still without a transformer vector, after giving them cached ones;
    returns (cache hits, rows) with the rows in `next_unembedded`'s shape."""
    async with conn.transaction():
        status: str = await conn.execute(
            """
            UPDATE chunks c SET embedding = e.embedding
            FROM embedding_cache e, files f
            WHERE f.repository_id = $1 AND f.rel_path = ANY($2::text[]) AND c.file_id = f.id
              AND c.embedding IS NULL AND e.text_hash = c.embed_hash
            """,
            repo_id,
            list(rel_paths),
        )
        rows: list[asyncpg.Record] = await conn.fetch(
            """
            SELECT c.id, c.embed_hash, c.symbol, c.content, f.rel_path
            FROM chunks c JOIN files f ON f.id = c.file_id
            WHERE f.repository_id = $1 AND f.rel_path = ANY($2::text[]) AND c.embedding IS NULL
            ORDER BY c.embed_priority, c.id
            """,
            repo_id,
            list(rel_paths),
        )
    return int(status.split()[-1]), rows


async def unembedded_priorities(conn: Conn, repo_id: uuid.UUID) -> list[int]:
    rows = await conn.fetch(
        """
        WITH RECURSIVE p(v) AS (
            (SELECT embed_priority FROM chunks WHERE repository_id = $1 AND embedding IS NULL
             ORDER BY embed_priority LIMIT 1)
            UNION ALL
            SELECT (SELECT embed_priority FROM chunks WHERE repository_id = $1 AND embedding IS NULL
                    AND embed_priority > p.v ORDER BY embed_priority LIMIT 1) FROM p WHERE p.v IS NOT NULL
        )
        SELECT v FROM p WHERE v IS NOT NULL
        """,
        repo_id,
    )
    return [int(r["v"]) for r in rows]


async def store_embeddings(
    conn: Conn,
    chunk_ids: Sequence[int],
    hashes: Sequence[str],
    vectors: npt.NDArray[np.float32],
) -> None:
    vecs = [Vector(v) for v in vectors]
    async with conn.transaction():
        # Only chunks still without one: search may have embedded a chunk meanwhile (and vice versa).
        await conn.execute(
            """
            UPDATE chunks SET embedding = u.v
            FROM unnest($1::bigint[], $2::vector[]) AS u(i, v) WHERE chunks.id = u.i AND chunks.embedding IS NULL
            """,
            list(chunk_ids),
            vecs,
        )
        await conn.execute(
            """
            INSERT INTO embedding_cache (text_hash, embedding)
            SELECT DISTINCT ON (h) h, v FROM unnest($1::text[], $2::vector[]) AS u(h, v)
            ON CONFLICT (text_hash) DO NOTHING
            """,
            list(hashes),
            vecs,
        )


async def drop_transformer_vectors(conn: Conn) -> None:
    """Every chunk's transformer vector and the embedding cache, gone (in the caller's transaction;
    another model's vectors replace them). The rows are emptied with their HNSW index out of the way:
    maintaining it would cost more than building it again over no vectors."""
    await conn.execute(f"DROP INDEX IF EXISTS {TRANSFORMER.name}")
    await conn.execute("UPDATE chunks SET embedding = NULL WHERE embedding IS NOT NULL")
    await conn.execute("TRUNCATE embedding_cache")
    await conn.execute(f"CREATE INDEX {TRANSFORMER.name} ON chunks {TRANSFORMER.definition}")
