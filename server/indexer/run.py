"""One indexing run's result counters, expected work and tier coverage, turned into `Progress` reports."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import asyncpg

from server.indexer import vectorstore
from server.indexer.progress import Phase, Progress, Reporter, WorkModel

COVERAGE_INTERVAL_SECONDS = 2.0  # tier counts are re-read at most this often while indexing


@dataclass
class IndexResult:
    repository_id: uuid.UUID
    files_scanned: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)
    files_to_index: int = 0
    chunks_created: int = 0
    chunks_kept: int = 0  # unchanged chunks of changed files: rows and vectors kept
    chunks_embedded: int = 0
    embedding_cache_hits: int = 0
    total_files: int = 0
    total_chunks: int = 0
    static_coverage: float = 0.0
    transformer_coverage: float = 0.0
    searchable_seconds: float = 0.0
    duration_seconds: float = 0.0
    stored_paths: list[str] = field(default_factory=list)  # files (re)chunked by this run


class Run:
    """One run's counters, expected work and tier coverage, turned into `Progress` reports."""

    def __init__(self, result: IndexResult, pool: asyncpg.Pool, report: Reporter) -> None:
        self.result = result
        self.pool = pool
        self.report = report
        self.work = WorkModel()
        self.coverage = vectorstore.Coverage(0, 0, 0)
        self.coverage_read = -COVERAGE_INTERVAL_SECONDS
        self.searchable_at: float | None = None
        self.semantic_at: float | None = None

    async def read_coverage(self, *, force: bool = False) -> vectorstore.Coverage:
        now = time.monotonic()
        if force or now - self.coverage_read >= COVERAGE_INTERVAL_SECONDS:
            async with self.pool.acquire() as conn:
                self.coverage = await vectorstore.coverage(conn, self.result.repository_id)
            self.coverage_read = now
            self.result.total_chunks = self.coverage.chunks
            self.result.static_coverage = self.coverage.static
            self.result.transformer_coverage = self.coverage.transformer
            if self.semantic_at is None and self.searchable_at is not None and self.coverage.unstatic == 0:
                self.semantic_at = time.time()
        return self.coverage

    async def __call__(self, message: str, phase: Phase, *, percentage: int | None = None) -> None:
        if phase in ("storing", "vector_index", "embedding"):
            await self.read_coverage()
        r = self.result
        await self.report(
            Progress(
                percentage=self.work.percentage() if percentage is None else percentage,
                message=message,
                phase=phase,
                files_scanned=r.files_scanned,
                files_indexed=r.files_indexed,
                chunks_created=r.chunks_created,
                chunks_embedded=r.chunks_embedded,
                files_to_index=r.files_to_index,
                total_chunks=r.total_chunks,
                static_coverage=round(r.static_coverage, 4),
                transformer_coverage=round(r.transformer_coverage, 4),
                eta_seconds=None if phase == "done" else round(self.work.seconds_left(), 1),
                searchable_at=self.searchable_at,
                semantic_at=self.semantic_at,
            )
        )
