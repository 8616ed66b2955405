"""A deterministic, instant embedder for tests whose subject is not embedding (jobs, workers, pipeline).

It satisfies the product's `Embedder` protocol and is handed to `App(embedder=...)` in-process; the product
has no fake provider. Tests about ranking or the model itself use the real local model instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence

import numpy as np

from server.embeddings.base import Vectors, empty_vectors, normalize_rows

FAKE_DIMENSION = 384
_TOKEN = re.compile(r"\w+")


def token_hash_vector(text: str, dimension: int = FAKE_DIMENSION) -> Vectors:
    """Signed feature hashing of the lower-cased word tokens, L2-normalised (texts without tokens: zeros).

    Texts sharing tokens get a positive cosine, so it is a crude but honest similarity, and the same text
    always gives the same vector, in any process.
    """
    vector = np.zeros((1, dimension), dtype=np.float32)
    for token in _TOKEN.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        vector[0, digest % dimension] += 1.0 if digest >> 63 else -1.0
    return normalize_rows(vector)


class FakeEmbedder:
    """Token-hash vectors, computed at once; a test can pause it to hold a run inside its embedding phase.

    `pause()` makes every following `embed` call wait (cancellably) until `resume()`; `blocked` is set while
    a call waits, so a test can await the moment a run is provably mid-embedding instead of sleeping.
    `seconds_per_call` simulates a slower model without using any CPU.
    """

    def __init__(self, dimension: int = FAKE_DIMENSION, *, seconds_per_call: float = 0.0) -> None:
        self._dimension = dimension
        self.seconds_per_call = seconds_per_call
        self.calls = 0
        self.texts_embedded = 0
        self._running = asyncio.Event()
        self._running.set()
        self.blocked = asyncio.Event()

    @property
    def name(self) -> str:
        return f"test:token-hash-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def load(self) -> None:
        return None

    async def embed(self, texts: Sequence[str], *, urgent: bool = False) -> Vectors:
        if not texts:
            return empty_vectors(self._dimension)
        if not self._running.is_set():
            self.blocked.set()
            try:
                await self._running.wait()
            finally:
                self.blocked.clear()
        if self.seconds_per_call:
            await asyncio.sleep(self.seconds_per_call)
        self.calls += 1
        self.texts_embedded += len(texts)
        return np.vstack([token_hash_vector(text, self._dimension) for text in texts])

    async def aclose(self) -> None:
        self.resume()  # nothing may stay parked on a closed embedder
