"""The transformer tier, filled in behind the store: every chunk still without a transformer vector
gets one, cached texts first, then by priority (implementation before tests and docs) and newest
first within a priority, so recently changed files are covered soonest."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import numpy as np

from server.embeddings.base import Embedder
from server.embeddings.text import embedding_text
from server.indexer import vectorstore

EMBED_BATCH = 128  # chunks read and written per round trip (the embedder batches within)

Embedded = Callable[[int], Awaitable[None]]  # told how many chunks got a vector, after each batch


async def fill_transformer_tier(pool: asyncpg.Pool, repo_id: uuid.UUID, embedder: Embedder, embedded: Embedded) -> int:
    """Embed every chunk of the repository still without a transformer vector; returns how many."""
    done = 0
    async with pool.acquire() as conn:
        priorities = await vectorstore.unembedded_priorities(conn, repo_id)
    for priority in priorities:
        below = 2**63 - 1
        while True:
            async with pool.acquire() as conn:
                rows = await vectorstore.next_unembedded(conn, repo_id, priority, below, EMBED_BATCH)
            if not rows:
                break
            below = rows[-1]["id"]
            await _embed_rows(pool, embedder, rows)
            done += len(rows)
            await embedded(len(rows))
    return done


async def fill_rows(pool: asyncpg.Pool, embedder: Embedder, rows: Sequence[asyncpg.Record], embedded: Embedded) -> int:
    """Embed these chunks (rows shaped like `vectorstore.next_unembedded`'s: a restricted run's own, the few
    chunks of files just edited) as urgent work: they go before a long background fill's batches."""
    for i in range(0, len(rows), EMBED_BATCH):
        await _embed_rows(pool, embedder, rows[i : i + EMBED_BATCH], urgent=True)
        await embedded(len(rows[i : i + EMBED_BATCH]))
    return len(rows)


async def _embed_rows(
    pool: asyncpg.Pool, embedder: Embedder, rows: Sequence[asyncpg.Record], *, urgent: bool = False
) -> None:
    # Identical texts inside the batch are embedded once (the cache key is their hash).
    unique: dict[str, str] = {}
    for r in rows:
        unique.setdefault(r["embed_hash"], embedding_text(r["rel_path"], r["symbol"], r["content"]))
    hashes = list(unique)
    vectors = await embedder.embed([unique[h] for h in hashes], urgent=urgent)
    by_hash = dict(zip(hashes, vectors, strict=True))
    async with pool.acquire() as conn:
        await vectorstore.store_embeddings(
            conn,
            [r["id"] for r in rows],
            [r["embed_hash"] for r in rows],
            np.vstack([by_hash[r["embed_hash"]] for r in rows]).astype(np.float32),
        )
