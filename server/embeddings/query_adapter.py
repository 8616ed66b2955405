"""The transformer tier's query adapter: a learned 384×384 map applied to query vectors only.

``normalize(W·q)`` retrieves docstring-like queries' code better than ``q`` (figures in
``data/query-adapter-minilm.json`` and bench/README.md; derived by ``python -m
server.embeddings.adapt``). Chunk vectors are untouched, so indexes stay valid and turning it off
(``QUERY_ADAPTER=false``) needs no re-index. It was learned for the local MiniLM's vectors and
applies to those only; search applies it to code-seeking queries (``CodeSearch.query_vectors``).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from server.embeddings.base import EmbeddingError, Vectors, normalize_rows, read_pinned

DIM = 384
ADAPTER_PATH = Path(__file__).parent / "data" / "query-adapter-minilm.npy"
# Pinned, so that a replaced file cannot slip in another map.
ADAPTER_SHA256 = "17ec43221bb82c05d7eb839d96143013fe5e943ff1aeb1c56d88a3aa1669ea29"


class QueryAdapter:
    """Loads the map once (sha256-checked) and applies it to query vectors."""

    def __init__(self, path: Path = ADAPTER_PATH, sha256: str = ADAPTER_SHA256) -> None:
        self.path = path
        self.sha256 = sha256
        self._matrix: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def matrix(self) -> np.ndarray:
        with self._lock:
            if self._matrix is None:
                self._matrix = self._load()
            return self._matrix

    def _load(self) -> np.ndarray:
        data = read_pinned(self.path, self.sha256, what="query adapter", remedy="Reinstall codebase-mcp.")
        matrix = np.load(io.BytesIO(data), allow_pickle=False)  # the bytes checked, not a second read
        if matrix.shape != (DIM, DIM) or matrix.dtype != np.float32:
            raise EmbeddingError(
                f"The query adapter {self.path} is {matrix.dtype} {matrix.shape}, not float32 {(DIM, DIM)}"
            )
        return np.ascontiguousarray(matrix)

    def apply(self, vectors: Vectors) -> Vectors:
        """``normalize(W·v)`` for each row of ``vectors`` (n, 384)."""
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != DIM:
            raise ValueError(f"query vectors must have shape (n, {DIM}), got {rows.shape}")
        return normalize_rows(rows @ self.matrix.T)


def adapter_for(embedder_name: str, enabled: bool) -> QueryAdapter | None:
    """The adapter when it is switched on and the queries come from the model it was learned for (the
    plain MiniLM, s8 or shipped; the code-tuned model learned what the adapter did, and more)."""
    from server.embeddings.local import PLAIN_EMBEDDER_NAMES

    return QueryAdapter() if enabled and embedder_name in PLAIN_EMBEDDER_NAMES else None
