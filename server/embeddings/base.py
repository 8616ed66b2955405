"""The embedder interface shared by the local model and the remote providers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from server.errors import UserError

Vectors = NDArray[np.float32]


class EmbeddingError(UserError):
    """Embedding failed; the message says what went wrong and what to check."""


def read_pinned(path: Path, sha256: str, *, what: str, remedy: str) -> bytes:
    """The bytes of a shipped or derived file, refused unless their sha256 is the pinned one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbeddingError(f"Cannot read the {what} {path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise EmbeddingError(f"Refusing to load the {what} {path}: its sha256 is {actual}, expected {sha256}. {remedy}")
    return data


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    ``name`` is a stable id stored with each project (``local:all-MiniLM-L6-v2-s8``,
    ``ollama:nomic-embed-text``, ``openai:text-embedding-3-small``) so that vectors from
    different models are never mixed.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int:
        """Vector length; raises EmbeddingError if a remote one is not known yet (see ``load``)."""
        ...

    async def load(self) -> None:
        """Load the model or probe the server once, so ``dimension`` is known. Idempotent."""

    async def embed(self, texts: Sequence[str], *, urgent: bool = False) -> Vectors:
        """Shape (len(texts), dimension), rows L2-normalised, in input order.

        ``urgent`` marks query-time work: it must not wait behind background (indexing) batches.
        Providers that serve one call at a time let it go first; remote ones have nothing to wait on.
        """
        ...

    async def aclose(self) -> None: ...


def normalize_rows(vectors: NDArray[np.floating]) -> Vectors:
    """L2-normalise each row; all-zero rows stay zero rather than becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    normalized: Vectors = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return normalized


def empty_vectors(dimension: int) -> Vectors:
    return np.zeros((0, dimension), dtype=np.float32)
