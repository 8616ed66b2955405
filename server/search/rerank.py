"""Query-time re-rank: the best first-stage candidates get their transformer cosine.

Candidates found through the static tier or full text may have no transformer vector yet (the
background fill has not reached them). Those among the top `RERANK_CANDIDATES` are embedded now,
with the transformer's priority over background batches, and the vectors are stored, so the work
is never done twice and the background fill skips them.

Embedding them takes time a search does not always have: while the background fill runs, twenty
chunks cost about a second on two busy cores. They are embedded best first, `RERANK_BATCH` at a
time, until `RERANK_BUDGET_SECONDS` are spent; the rest keep their static-tier score and are left
to the background fill. (Computing them after the search returned does not help: the next search's
query then waits behind them.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from server.db.cluster import Conn
from server.embeddings import Embedder
from server.embeddings.text import embedding_text
from server.indexer import vectorstore
from server.search.ranking import Candidate

RERANK_CANDIDATES = 20
RERANK_BUDGET_SECONDS = 0.12
RERANK_BATCH = 4

_TEXTS_SQL = """
SELECT c.id, c.symbol, c.content, c.embed_hash, f.rel_path
FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id = ANY($1::bigint[])
"""


class Reranker:
    """Embeds candidates without a transformer vector, best first, within a time budget per search."""

    def __init__(self, embedder: Embedder, budget: float | None = RERANK_BUDGET_SECONDS) -> None:
        self.embedder = embedder
        self.budget = budget  # seconds of embedding per search; None: every missing candidate

    async def embed_missing(
        self, conn: Conn, candidates: Sequence[Candidate], query_vector: npt.NDArray[np.float32]
    ) -> int:
        """Give candidates without a transformer cosine one, best first, while the budget lasts;
        returns how many got one (and have their vector stored)."""
        missing = {c.id: c for c in candidates if c.cosine is None}
        if not missing:
            return 0
        found = {r["id"]: r for r in await conn.fetch(_TEXTS_SQL, list(missing)) if r["embed_hash"] is not None}
        rows = [found[i] for i in missing if i in found]  # in rank order
        loop = asyncio.get_running_loop()
        deadline = None if self.budget is None else loop.time() + self.budget
        done = 0
        for start in range(0, len(rows), RERANK_BATCH):
            if deadline is not None and start and loop.time() >= deadline:
                break
            batch = rows[start : start + RERANK_BATCH]
            texts = [embedding_text(r["rel_path"], r["symbol"], r["content"]) for r in batch]
            vectors = np.asarray(await self.embedder.embed(texts, urgent=True), dtype=np.float32)
            for r, cosine in zip(batch, vectors @ query_vector, strict=True):
                missing[r["id"]].cosine = float(cosine)
            ids, hashes = [r["id"] for r in batch], [r["embed_hash"] for r in batch]
            await vectorstore.store_embeddings(conn, ids, hashes, vectors)
            done += len(batch)
        return done
