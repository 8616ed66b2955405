"""Shared HTTP machinery for embedding servers: pipelined batches, retries, validation.

A call's batches go out concurrently, at most ``max_concurrency`` requests in flight, so a
server's round-trip latency overlaps instead of adding up; results are put back in input
order. Cancelling the call (or one batch failing) cancels the requests still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from server.embeddings.base import EmbeddingError, Vectors, empty_vectors, normalize_rows

_PROBE_TEXT = "dimension probe"
_BODY_PREVIEW = 300


class RemoteEmbedder(ABC):
    """Posts batches of texts to an embedding server and validates what comes back."""

    provider: str  # "ollama", "openai": used in the name and in messages
    endpoint: str  # path appended to base_url

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None = None,
        batch_size: int = 32,
        dimension: int | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_concurrency: int = 4,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if dimension is not None and dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {dimension}")
        self.model = model
        self.base_url = self._clean_base_url(base_url)
        self.url = self.base_url + self.endpoint
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_concurrency = max_concurrency
        self._dimension = dimension
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout))

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise EmbeddingError(f"The dimension of {self.name} is not known yet: await load() or embed() first.")
        return self._dimension

    async def load(self) -> None:
        if self._dimension is None:
            await self._embed_batch([_PROBE_TEXT])

    async def embed(self, texts: Sequence[str], *, urgent: bool = False) -> Vectors:
        # ``urgent`` needs nothing here: requests do not queue behind one another on our side.
        if not texts:
            await self.load()
            return empty_vectors(self.dimension)
        starts = range(0, len(texts), self.batch_size)
        if len(starts) == 1:
            return await self._embed_batch(list(texts))
        slots = asyncio.Semaphore(self.max_concurrency)

        async def batch(start: int) -> Vectors:
            async with slots:
                return await self._embed_batch(list(texts[start : start + self.batch_size]))

        tasks = [asyncio.ensure_future(batch(start)) for start in starts]
        try:
            return np.vstack(await asyncio.gather(*tasks))
        finally:
            # On a failed batch gather returns at once: stop the others and collect their outcome.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _clean_base_url(base_url: str) -> str:
        return base_url.rstrip("/")

    @abstractmethod
    def _payload(self, texts: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def _vectors(self, body: Any) -> list[Any]:
        """The list of vectors from a response body, in input order; KeyError/TypeError if malformed."""

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        response = await self._post(self._payload(texts))
        try:
            body = response.json()
        except ValueError as exc:
            raise EmbeddingError(
                f"{self.url} returned a body that is not JSON: {response.text[:_BODY_PREVIEW]!r}"
            ) from exc
        try:
            rows = self._vectors(body)
        except (KeyError, TypeError, IndexError) as exc:
            raise EmbeddingError(
                f"{self.url} returned JSON of an unexpected shape ({exc!r}): {response.text[:_BODY_PREVIEW]!r}"
            ) from exc
        return normalize_rows(self._check(rows, len(texts)))

    def _check(self, rows: list[Any], expected: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        if len(rows) != expected:
            raise EmbeddingError(f"{self.url} returned {len(rows)} vectors for {expected} texts")
        lengths = {len(row) if isinstance(row, list) else -1 for row in rows}
        if len(lengths) != 1 or -1 in lengths:
            raise EmbeddingError(f"{self.url} returned vectors of inconsistent dimensions {sorted(lengths)}")
        (dimension,) = lengths
        if self._dimension is None:
            self._dimension = dimension
        elif dimension != self._dimension:
            raise EmbeddingError(
                f"{self.url} returned {dimension}-dimensional vectors for model {self.model!r}, "
                f"expected {self._dimension}"
            )
        try:
            array = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.url} returned vectors with non-numeric values") from exc
        if not np.isfinite(array).all():
            raise EmbeddingError(f"{self.url} returned vectors with NaN or infinite values")
        return array

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = await self._client.post(self.url, json=payload)
            except httpx.TimeoutException as exc:
                if last:
                    raise EmbeddingError(
                        f"{self.provider} at {self.url} timed out after {self.max_attempts} attempts "
                        f"({type(exc).__name__}); check the server's load or raise the timeout"
                    ) from exc
                await self._sleep(attempt, None)
                continue
            except httpx.TransportError as exc:
                if last:
                    raise EmbeddingError(
                        f"Cannot reach {self.provider} at {self.url} after {self.max_attempts} attempts "
                        f"({exc!r}); check that the server is running and base_url is right"
                    ) from exc
                await self._sleep(attempt, None)
                continue
            status = response.status_code
            if status < 400:
                return response
            if status == 429 or status >= 500:
                if last:
                    raise EmbeddingError(
                        f"{self.provider} at {self.url} answered HTTP {status} {self._reason(status)} "
                        f"{self.max_attempts} times; last body: {response.text[:_BODY_PREVIEW]!r}"
                    )
                await self._sleep(attempt, response.headers.get("retry-after"))
                continue
            raise EmbeddingError(
                f"{self.provider} at {self.url} rejected the request with HTTP {status} "
                f"({self._hint(status)}): {response.text[:_BODY_PREVIEW]!r}"
            )
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter so many clients do not retry in step
        if retry_after is not None:
            # Retry-After may also be an HTTP date; then the exponential delay will do.
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.backoff_max, float(retry_after)))
        await asyncio.sleep(delay)

    @staticmethod
    def _reason(status: int) -> str:
        return "Too Many Requests" if status == 429 else "server error"

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            return "check the API key"
        if status == 404:
            return f"check base_url and that model {self.model!r} exists on the server"
        return f"check model {self.model!r} and the server's expectations"
