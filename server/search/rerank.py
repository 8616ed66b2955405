"""Query-time re-rank: the best first-stage candidates get their transformer cosine.

Candidates found through the static tier or full text may have no transformer vector yet (the
background fill has not reached them). Those among the top `RERANK_CANDIDATES` are embedded now,
with the transformer's priority over background batches, and the vectors are stored, so the work
is never done twice and the background fill skips them.

Embedding them takes time a search does not always have: while the background fill runs, twenty
chunks cost about a second on two busy cores. The search waits for them at most
`RERANK_BUDGET_SECONDS`; when they take longer it ranks without them, and the vectors are still
stored once computed (on a connection of their own), so the next search finds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
import numpy as np
import numpy.typing as npt

from server.db.cluster import Conn
from server.embeddings import Embedder
from server.embeddings.base import Vectors
from server.embeddings.text import embedding_text
from server.indexer import store
from server.search.ranking import Candidate

RERANK_CANDIDATES = 20
RERANK_BUDGET_SECONDS = 0.12

log = logging.getLogger(__name__)

_TEXTS_SQL = """
SELECT c.id, c.symbol, c.content, c.embed_hash, f.rel_path
FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id = ANY($1::bigint[])
"""


class Reranker:
    """Embeds candidates without a transformer vector, within a time budget per search."""

    def __init__(self, embedder: Embedder, budget: float | None = RERANK_BUDGET_SECONDS) -> None:
        self.embedder = embedder
        self.budget = budget  # seconds a search waits for the vectors; None: as long as they take
        self._late: set[asyncio.Task[None]] = set()

    async def embed_missing(
        self, conn: Conn, pool: asyncpg.Pool, candidates: Sequence[Candidate], query_vector: npt.NDArray[np.float32]
    ) -> int:
        """Give every candidate without a transformer cosine one, if that fits the budget; returns
        how many got one. Vectors that miss the budget are stored through `pool` when ready."""
        missing = {c.id: c for c in candidates if c.cosine is None}
        if not missing:
            return 0
        rows = [r for r in await conn.fetch(_TEXTS_SQL, list(missing)) if r["embed_hash"] is not None]
        if not rows:
            return 0
        texts = [embedding_text(r["rel_path"], r["symbol"], r["content"]) for r in rows]
        job = asyncio.ensure_future(self.embedder.embed(texts, urgent=True))
        try:
            vectors = np.asarray(await asyncio.wait_for(asyncio.shield(job), self.budget), dtype=np.float32)
        except TimeoutError:
            late = asyncio.create_task(self._store_late(pool, job, rows))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            return 0
        for r, cosine in zip(rows, vectors @ query_vector, strict=True):
            missing[r["id"]].cosine = float(cosine)
        await store.store_embeddings(conn, [r["id"] for r in rows], [r["embed_hash"] for r in rows], vectors)
        return len(rows)

    async def _store_late(self, pool: asyncpg.Pool, job: asyncio.Future[Vectors], rows: list[asyncpg.Record]) -> None:
        try:
            vectors = np.asarray(await job, dtype=np.float32)
            async with pool.acquire() as conn:
                await store.store_embeddings(conn, [r["id"] for r in rows], [r["embed_hash"] for r in rows], vectors)
        except Exception as exc:  # the background fill embeds them anyway
            log.info("re-rank vectors computed after the search were not stored: %s", exc)

    async def drain(self) -> None:
        """Wait until the vectors that missed their search's budget are stored."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)
