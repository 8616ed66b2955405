"""Query-time re-rank: the best first-stage candidates get their transformer cosine.

Candidates found through the static tier or full text may have no transformer vector yet (the
background fill has not reached them). Those among the top `RERANK_CANDIDATES` are embedded now,
with the transformer's priority over background batches, and the vectors are stored, so the work
is never done twice and the background fill skips them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from server.db.cluster import Conn
from server.embeddings import Embedder
from server.embeddings.text import embedding_text
from server.indexer import store
from server.search.ranking import Candidate

RERANK_CANDIDATES = 20

_TEXTS_SQL = """
SELECT c.id, c.symbol, c.content, c.embed_hash, f.rel_path
FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id = ANY($1::bigint[])
"""


async def embed_missing(
    conn: Conn, candidates: Sequence[Candidate], query_vector: npt.NDArray[np.float32], embedder: Embedder
) -> int:
    """Give every candidate without a transformer cosine one; returns how many were embedded."""
    missing = {c.id: c for c in candidates if c.cosine is None}
    if not missing:
        return 0
    rows = [r for r in await conn.fetch(_TEXTS_SQL, list(missing)) if r["embed_hash"] is not None]
    if not rows:
        return 0
    texts = [embedding_text(r["rel_path"], r["symbol"], r["content"]) for r in rows]
    vectors = np.asarray(await embedder.embed(texts, urgent=True), dtype=np.float32)
    for r, cosine in zip(rows, vectors @ query_vector, strict=True):
        missing[r["id"]].cosine = float(cosine)
    await store.store_embeddings(conn, [r["id"] for r in rows], [r["embed_hash"] for r in rows], vectors)
    return len(rows)
