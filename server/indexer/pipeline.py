"""`index_repository`: scan → prepare (chunk, full text, static vectors; in worker processes) →
store → (re)build the static vector index → fill the transformer tier (cached vectors, (re)build
the transformer vector index, embed the rest).

A stored batch is searchable at once, by full text and (with a static model) by meaning; the
transformer tier is filled in afterwards in the same run, which ends when every chunk has a
transformer vector. Every loop awaits between batches, so an asyncio cancel stops the run within
one batch and leaves each batch either fully written or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from server.embeddings.base import Embedder
from server.errors import UserError
from server.indexer import store, vector_index
from server.indexer.fill import fill_rows, fill_transformer_tier
from server.indexer.prepare import Prepared, PrepareJob, acquire_executor, prepare, release_executor
from server.indexer.progress import CHUNK_BYTES_GUESS, Phase, Progress, ProgressCallback, Reporter, WorkModel
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, scan_repository
from server.indexer.scope import PathScope
from server.indexer.types import FileRecord
from server.indexer.vector_index import STATIC, TRANSFORMER, VectorIndex

log = logging.getLogger(__name__)

FILES_PER_BATCH = 128
# Version of what a stored chunk holds (tokens, full text, roles, vectors). Files indexed with an
# older format are chunked again; bump it whenever chunks of unchanged files would differ.
INDEX_FORMAT = 2
WRITERS = 2  # concurrent batch writes (each on its own connection)
_INLINE_LIMIT = 64  # fewer changed files than this: no worker processes needed
COVERAGE_INTERVAL_SECONDS = 2.0  # tier counts are re-read at most this often while indexing
ANALYZE_AFTER_CHUNKS = 500  # a run that wrote this many chunks refreshes the planner's statistics

__all__ = ["INDEX_FORMAT", "IndexResult", "Progress", "ProgressCallback", "RepositoryTooLargeError", "index_repository"]


# Held while files are scanned, read and stored (not while vectors are filled in).
ContentLock = Callable[[], AbstractAsyncContextManager[object]]


class RepositoryTooLargeError(UserError, ValueError):
    pass


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


class _Run:
    """One run's counters, expected work and tier coverage, turned into `Progress` reports."""

    def __init__(self, result: IndexResult, pool: asyncpg.Pool, report: Reporter) -> None:
        self.result = result
        self.pool = pool
        self.report = report
        self.work = WorkModel()
        self.coverage = store.Coverage(0, 0, 0)
        self.coverage_read = -COVERAGE_INTERVAL_SECONDS
        self.searchable_at: float | None = None
        self.semantic_at: float | None = None

    async def read_coverage(self, *, force: bool = False) -> store.Coverage:
        now = time.monotonic()
        if force or now - self.coverage_read >= COVERAGE_INTERVAL_SECONDS:
            async with self.pool.acquire() as conn:
                self.coverage = await store.coverage(conn, self.result.repository_id)
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


async def index_repository(
    repo_path: Path,
    name: str,
    pool: asyncpg.Pool,
    embedder: Embedder | None,
    *,
    force_reindex: bool = False,
    progress_callback: ProgressCallback | None = None,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    max_repo_bytes: int | None = None,
    static_tier: bool = False,
    paths: Sequence[str] | None = None,
    content_lock: ContentLock | None = None,
    embed_stored_only: bool = False,
    bulk_load_chunks: int = vector_index.BULK_LOAD_MIN_CHUNKS,
) -> IndexResult:
    """Index `repo_path` into the project database behind `pool`.

    With `static_tier` every stored chunk gets its static vector at once. `embedder=None` stores
    full text (and static vectors) only; a later run fills in the transformer tier.
    `paths` (relative, escaped like `rel_path`; a folder stands for everything below it) restricts
    the run to those files: each is read again and indexed if present and not ignored, marked
    deleted if not. `content_lock` is held from the scan until the files are stored.
    `embed_stored_only`: fill in only the chunks of the files this run stored (other runs fill in theirs).
    Writing about `bulk_load_chunks` rows or more (and at least half the table) into a vector index
    drops it first and builds it after (server/indexer/vector_index.py): the static index for new
    chunks while storing, either index for cached transformer vectors.
    """
    started = time.monotonic()
    root = Path(os.path.abspath(repo_path))  # not resolve(): that would follow a symlink swapped in
    report = Reporter(progress_callback)
    async with content_lock() if content_lock is not None else contextlib.nullcontext():
        run, stored_format = await _scan_and_store(
            root, name, pool, report, force_reindex, max_file_size, max_repo_bytes, paths, static_tier,
            bulk_load_chunks,
        )  # fmt: skip
    result = run.result
    repo_id = result.repository_id
    result.searchable_seconds = time.monotonic() - started
    run.searchable_at = time.time()
    await run.read_coverage(force=True)  # sets semantic_at when every chunk has its static vector
    await _ensure_index(run, STATIC)

    if embedder is None:
        await _ensure_index(run, TRANSFORMER)
    else:
        # Said at once, not after the cache lookup: the files are searchable, and a refresh waiting
        # for this phase may go.
        await run.read_coverage(force=True)
        await run("Searchable; taking transformer vectors of unchanged texts from the cache", "embedding")
        own: list[asyncpg.Record] = []
        async with pool.acquire() as conn:
            # Every row given a cached vector is a new row version in both vector indexes.
            hits = await store.cache_hits(conn, repo_id, result.stored_paths if embed_stored_only else None)
            existing = await vector_index.table_chunks(conn)
            if vector_index.worth_dropping(hits, existing, bulk_load_chunks):
                for index in vector_index.INDEXES:
                    await vector_index.drop(conn, index)
            if embed_stored_only:  # this run's chunks only: cached texts first, then the rest
                result.embedding_cache_hits, own = await store.unembedded_of_files(conn, repo_id, result.stored_paths)
            else:
                result.embedding_cache_hits = await store.fill_from_cache(conn, repo_id)
        for index in vector_index.INDEXES:
            await _ensure_index(run, index)
        todo = len(own) if embed_stored_only else (await run.read_coverage(force=True)).unembedded
        run.work.start_embed(todo)
        await run(f"Searchable; embedding {todo} chunks with the transformer", "embedding")

        async def embedded(n: int) -> None:
            result.chunks_embedded += n
            run.work.embedded(n)
            await run(f"Embedding with the transformer: {run.work.embed_done}/{todo} chunks", "embedding")

        if embed_stored_only:
            await fill_rows(pool, embedder, own, embedded)
        else:
            await fill_transformer_tier(pool, repo_id, embedder, embedded)

    await run("Finalizing", "finalizing")
    async with pool.acquire() as conn:
        # a restricted run leaves the other files in the format they were stored in
        fmt = INDEX_FORMAT if paths is None else stored_format
        result.total_files, result.total_chunks = await store.finish_repository(conn, repo_id, fmt)
    await run.read_coverage(force=True)
    result.duration_seconds = time.monotonic() - started
    await run(summary(result), "done", percentage=100)
    return result


async def _scan_and_store(
    root: Path,
    name: str,
    pool: asyncpg.Pool,
    report: Reporter,
    force_reindex: bool,
    max_file_size: int,
    max_repo_bytes: int | None,
    paths: Sequence[str] | None,
    static_tier: bool,
    bulk_load_chunks: int,
) -> tuple[_Run, int]:
    await report(Progress(1, f"Scanning {root}", "scanning"))
    scope = PathScope(paths) if paths is not None else None
    scan = await asyncio.to_thread(scan_repository, root, max_file_size=max_file_size, paths=paths)
    total_bytes = sum(f.size for f in scan.files)
    if max_repo_bytes is not None and paths is None and total_bytes > max_repo_bytes:
        raise RepositoryTooLargeError(
            f"repository {root} holds {total_bytes / 1e9:.2f} GB of indexable files, above the "
            f"MAX_REPO_SIZE_GB limit of {max_repo_bytes / 1e9:.2f} GB; raise the limit or ignore folders "
            "in .codebase-mcp/ignore"
        )
    async with pool.acquire() as conn:
        repo_id, stored_format = await store.ensure_repository(conn, str(root), name, INDEX_FORMAT)
        under = None if scope is None or "" in scope.requested else sorted(scope.requested)
        known = await store.known_files(conn, repo_id, under)
    rechunk = force_reindex or stored_format < INDEX_FORMAT
    result = IndexResult(repository_id=repo_id, files_scanned=len(scan.files), files_skipped=dict(scan.skipped))
    run = _Run(result, pool, report)

    # Change detection: same size and mtime → unchanged without reading; else hash decides.
    # Named paths were reported changed: always read (a rewrite within the clock's tick keeps both).
    jobs: list[PrepareJob] = []
    for f in scan.files:
        k = known.get(f.rel_path)
        if (
            k is not None and paths is None and not rechunk and not k.is_deleted
            and k.size == f.size and k.mtime_ns == f.mtime_ns
        ):  # fmt: skip
            result.files_unchanged += 1
            continue
        jobs.append(PrepareJob(f, None if (k is None or rechunk or k.is_deleted) else k.content_hash))
    result.files_to_index = len(jobs)
    run.work.unembedded_before = (await run.read_coverage(force=True)).unembedded
    job_bytes = sum(j.file.size for j in jobs)
    run.work.start_store(job_bytes)
    await run(f"Scanned {len(scan.files)} files: {len(jobs)} to index", "scanning")

    guard = vector_index.BulkGuard(STATIC, bulk_load_chunks, active=static_tier)
    moves = vector_index.BulkGuard(TRANSFORMER, bulk_load_chunks)  # kept rows that move (have vectors)
    async with pool.acquire() as conn:
        guard.existing = moves.existing = await vector_index.table_chunks(conn)
    # Files not stored before (or stored in an older format) bring only new rows; changed files
    # keep the rows of their unchanged chunks, so theirs are counted as they are written.
    new_bytes = sum(j.file.size for j in jobs if _new_file(known.get(j.file.rel_path), not rechunk))
    await guard.wrote(pool, int(new_bytes / CHUNK_BYTES_GUESS))
    if guard.dropped:
        run.work.expect_index(guard.existing)
    await _prepare_and_store(jobs, run, known, max_file_size, static_tier, not rechunk, (guard, moves))

    present = {f.rel_path for f in scan.files}
    gone = [p for p, k in known.items() if p not in present and not k.is_deleted and (not scope or scope.covers(p))]
    async with pool.acquire() as conn:
        result.files_deleted = await store.mark_deleted(conn, repo_id, gone)
    if result.chunks_created + result.files_deleted * 10 >= ANALYZE_AFTER_CHUNKS:
        # Full-text ranking weighs terms by PostgreSQL's statistics: refresh them now, not whenever
        # autovacuum gets to it (until then new terms would all look rare).
        async with pool.acquire() as conn:
            await store.analyze_chunks(conn)
    run.work.finish_store()
    return run, stored_format


async def _ensure_index(run: _Run, index: VectorIndex) -> None:
    """Build a vector index if it is missing (dropped for a bulk write, or by a run that never
    finished); search over its tier is an exact scan until then, correct but slower."""
    async with run.pool.acquire() as conn:
        if await vector_index.state(conn, index) in ("valid", "building"):
            return
        rows = await vector_index.table_chunks(conn)
        run.work.start_index(rows)
        await run(f"Searchable; building the {index.tier} vector index over {rows} chunks", "vector_index")
        await vector_index.build(conn, index)
    run.work.finish_index()
    await run(f"{index.tier.capitalize()} vector index built", "vector_index")


def summary(result: IndexResult) -> str:
    """What the run did, then what the repository holds (both, so a resumed run is not "0 files")."""
    did = f"Indexed {result.files_indexed} changed files ({result.files_unchanged} unchanged"
    did += f", {result.files_deleted} removed)" if result.files_deleted else ")"
    vectors = result.chunks_embedded + result.embedding_cache_hits
    did += f", {result.chunks_created} new chunks, {vectors} transformer vectors"
    return f"{did}; repository: {result.total_files} files, {result.total_chunks} chunks"


async def _prepare_and_store(
    jobs: list[PrepareJob],
    run: _Run,
    known: dict[str, store.KnownFile],
    max_size: int,
    static_tier: bool,
    keep_unchanged: bool,
    guards: tuple[vector_index.BulkGuard, vector_index.BulkGuard],
) -> None:
    result = run.result
    total = len(jobs)
    batches = [jobs[i : i + FILES_PER_BATCH] for i in range(0, total, FILES_PER_BATCH)]
    loop = asyncio.get_running_loop()
    pool_executor = await asyncio.to_thread(acquire_executor) if total > _INLINE_LIMIT else None
    # Keep at most a few batches in flight so memory stays bounded and cancel is prompt.
    in_flight = max(2, (os.cpu_count() or 1) * 2)
    futures: list[asyncio.Future[list[Prepared]]] = []
    writes: set[asyncio.Task[None]] = set()
    next_batch = 0
    done_files = 0
    sizes = {j.file.rel_path: (j.file.size, j.file.mtime_ns) for j in jobs}

    async def write(prepared: list[Prepared]) -> None:
        nonlocal done_files
        records = [r for r in prepared if isinstance(r, FileRecord)]
        same = [r[1] for r in prepared if isinstance(r, tuple) and r[0] == "same"]
        for r in prepared:
            if isinstance(r, tuple) and r[0] != "same":
                result.files_skipped[r[0]] = result.files_skipped.get(r[0], 0) + 1
        async with run.pool.acquire() as conn:
            replaced = await store.replace_files(conn, result.repository_id, records, keep_unchanged=keep_unchanged)
            await store.touch_files(conn, [known[p].id for p in same], [sizes[p][1] for p in same])
        written = replaced.inserted
        # The estimate for files new to the index gives way to what was written (moved rows are new
        # row versions in the index too).
        estimated = sum(sizes[r.rel_path][0] for r in records if _new_file(known.get(r.rel_path), keep_unchanged))
        await guards[0].wrote(run.pool, replaced.inserted + replaced.moved - int(estimated / CHUNK_BYTES_GUESS))
        await guards[1].wrote(run.pool, replaced.moved)
        result.chunks_created += written
        result.chunks_kept += replaced.kept
        result.files_indexed += len(records)
        result.stored_paths.extend(r.rel_path for r in records)
        result.files_unchanged += len(same)
        done_files += len(prepared)
        run.work.stored(sum(sizes[p][0] for p in _paths(prepared)), written)
        await run(f"Stored {done_files}/{total} files (searchable as they are stored)", "storing")

    try:
        while next_batch < len(batches) or futures:
            while next_batch < len(batches) and len(futures) < in_flight:
                futures.append(loop.run_in_executor(pool_executor, prepare, batches[next_batch], max_size, static_tier))
                next_batch += 1
            prepared = await futures.pop(0)
            # Two writers: while one batch's COPY runs, the next one is already on its way.
            if len(writes) >= WRITERS:
                done, _ = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                writes -= done
                for task in done:
                    task.result()
            writes.add(asyncio.create_task(write(prepared)))
        if writes:
            await asyncio.gather(*writes)
    finally:
        for fut in futures:
            fut.cancel()
        for task in writes:
            task.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        if pool_executor is not None:
            await asyncio.shield(asyncio.to_thread(release_executor))  # a cancel must not leak the count


def _new_file(known: store.KnownFile | None, keep_unchanged: bool) -> bool:
    """Whether every chunk of the file is written anew (it has no rows to keep)."""
    return known is None or known.is_deleted or not keep_unchanged


def _paths(prepared: list[Prepared]) -> list[str]:
    return [r.rel_path if isinstance(r, FileRecord) else r[1] for r in prepared]
