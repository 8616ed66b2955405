"""Honest progress for one indexing run: percentages weighted by the expected work, an ETA, and
per-tier coverage.

A run stores files (full text and static vectors, in proportion to their bytes), builds the static
vector index when a bulk load dropped it (in proportion to the table's chunks), and then fills in
transformer vectors (in proportion to chunks). Each phase's remaining work is turned into seconds
with the rate measured so far in this run (a prior guess until there is one), so the percentage is
the share of the expected time already spent and the ETA is the expected time left. The reporter
keeps percentages monotonic when a rate estimate moves, and shields indexing from a failing
callback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

# vector_index: the static tier's HNSW index is being built after a bulk load (search works meanwhile)
Phase = Literal["scanning", "storing", "vector_index", "embedding", "finalizing", "done"]

STORE_BYTES_PER_SECOND_GUESS = 1_500_000.0
EMBED_CHUNKS_PER_SECOND_GUESS = 100.0
CHUNK_BYTES_GUESS = 600.0  # bytes of source per chunk, until measured
INDEX_ROWS_PER_SECOND_GUESS = 2_500.0  # static HNSW build on 2 cores (bench/index_bench.py)
OVERHEAD_SECONDS = 1.0  # scan and finalize


@dataclass(frozen=True, slots=True)
class Progress:
    percentage: int
    message: str
    phase: Phase
    files_scanned: int = 0
    files_indexed: int = 0
    chunks_created: int = 0
    chunks_embedded: int = 0  # transformer vectors computed or taken from the cache in this run
    files_to_index: int = 0  # files this run reads (changed or new)
    total_chunks: int = 0  # the repository's chunks (as far as known)
    static_coverage: float = 0.0  # share of the repository's chunks with a static vector
    transformer_coverage: float = 0.0  # ... with a transformer vector
    eta_seconds: float | None = None
    searchable_at: float | None = None  # epoch seconds: full text and static vectors stored
    semantic_at: float | None = None  # epoch seconds: every chunk has a vector (static tier)


ProgressCallback = Callable[[Progress], Awaitable[None]]


class WorkModel:
    """Expected seconds left, from the work left per phase and the rates measured in this run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.store_bytes_total = 0
        self.store_bytes_done = 0
        self.store_chunks_done = 0
        self.store_started: float | None = None
        self.store_finished: float | None = None
        self.embed_total: int | None = None  # unknown until the store phase ends
        self.embed_done = 0
        self.embed_started: float | None = None
        self.unembedded_before = 0  # chunks already waiting for a transformer vector
        self.index_rows = 0  # rows the static vector index will be built over (0: no build expected)
        self.index_started: float | None = None
        self.index_finished = False

    def start_store(self, total_bytes: int) -> None:
        self.store_bytes_total = total_bytes
        self.store_started = self.clock()

    def stored(self, file_bytes: int, chunks: int) -> None:
        self.store_bytes_done += file_bytes
        self.store_chunks_done += chunks

    def finish_store(self) -> None:
        self.store_finished = self.clock()

    def expect_index(self, rows: int) -> None:
        """A build of the static vector index over about `rows` rows lies ahead."""
        self.index_rows = rows

    def start_index(self, rows: int) -> None:
        self.index_rows = rows
        self.index_started = self.clock()

    def finish_index(self) -> None:
        self.index_finished = True

    def _index_left(self) -> float:
        if self.index_finished or not self.index_rows:
            return 0.0
        expected = self.index_rows / INDEX_ROWS_PER_SECOND_GUESS
        if self.index_started is None:
            return expected
        # No progress inside one CREATE INDEX: count down, never quite to zero.
        return max(expected - (self.clock() - self.index_started), 0.1 * expected)

    def start_embed(self, total: int) -> None:
        self.embed_total = total
        self.embed_started = self.clock()

    def embedded(self, chunks: int) -> None:
        self.embed_done += chunks

    def _store_rate(self) -> float:
        if self.store_started is None or self.store_bytes_done == 0:
            return STORE_BYTES_PER_SECOND_GUESS
        return max(self.store_bytes_done / max(self.clock() - self.store_started, 1e-3), 1.0)

    def _embed_rate(self) -> float:
        if self.embed_started is None or self.embed_done == 0:
            return EMBED_CHUNKS_PER_SECOND_GUESS
        return max(self.embed_done / max(self.clock() - self.embed_started, 1e-3), 0.1)

    def _embed_left(self) -> float:
        if self.embed_total is not None:
            return max(self.embed_total - self.embed_done, 0)
        bytes_per_chunk = (
            self.store_bytes_done / self.store_chunks_done if self.store_chunks_done else CHUNK_BYTES_GUESS
        )
        return (
            self.unembedded_before
            + (self.store_bytes_total - self.store_bytes_done) / bytes_per_chunk
            + (self.store_chunks_done)
        )

    def seconds_left(self) -> float:
        store_left = (
            0.0 if self.store_finished else (self.store_bytes_total - self.store_bytes_done) / self._store_rate()
        )
        embed_left = self._embed_left() / self._embed_rate()
        return max(store_left, 0.0) + self._index_left() + embed_left + OVERHEAD_SECONDS

    def percentage(self) -> int:
        spent = self.clock() - self.started
        left = self.seconds_left()
        return int(100 * spent / (spent + left)) if spent + left > 0 else 0


class Reporter:
    """Keeps percentages monotonic (below 100 until done) and shields indexing from a failing callback."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last = 0

    async def __call__(self, progress: Progress) -> None:
        if self.callback is None:
            return
        ceiling = 100 if progress.phase == "done" else 99
        pct = max(self.last, min(ceiling, progress.percentage))
        self.last = pct
        try:
            await self.callback(dataclasses.replace(progress, percentage=pct))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("progress callback failed; indexing continues")
