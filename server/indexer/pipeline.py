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
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg

from server.embeddings.base import Embedder
from server.errors import UserError
from server.indexer import store, vector_index, vectorstore
from server.indexer.fill import fill_rows, fill_transformer_tier
from server.indexer.prepare import PrepareJob
from server.indexer.progress import CHUNK_BYTES_GUESS, Progress, ProgressCallback, Reporter
from server.indexer.run import IndexResult, Run
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, scan_repository
from server.indexer.scope import PathScope
from server.indexer.storing import new_file, prepare_and_store
from server.indexer.vector_index import STATIC, TRANSFORMER, VectorIndex

log = logging.getLogger(__name__)

# Version of what a stored chunk holds (tokens, full text, roles, vectors). Files indexed with an
# older format are chunked again; bump it whenever chunks of unchanged files would differ.
INDEX_FORMAT = 2
ANALYZE_AFTER_CHUNKS = 500  # a run that wrote this many chunks refreshes the planner's statistics

__all__ = ["INDEX_FORMAT", "IndexResult", "Progress", "ProgressCallback", "RepositoryTooLargeError", "index_repository"]


# Held while files are scanned, read and stored (not while vectors are filled in).
ContentLock = Callable[[], AbstractAsyncContextManager[object]]


class RepositoryTooLargeError(UserError, ValueError):
    pass


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
            hits = await vectorstore.cache_hits(conn, repo_id, result.stored_paths if embed_stored_only else None)
            existing = await vector_index.table_chunks(conn)
            if vector_index.worth_dropping(hits, existing, bulk_load_chunks):
                for index in vector_index.INDEXES:
                    await vector_index.drop(conn, index)
            if embed_stored_only:  # this run's chunks only: cached texts first, then the rest
                hits_and_rows = await vectorstore.unembedded_of_files(conn, repo_id, result.stored_paths)
                result.embedding_cache_hits, own = hits_and_rows
            else:
                result.embedding_cache_hits = await vectorstore.fill_from_cache(conn, repo_id)
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
) -> tuple[Run, int]:
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
    run = Run(result, pool, report)

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
    new_bytes = sum(j.file.size for j in jobs if new_file(known.get(j.file.rel_path), not rechunk))
    await guard.wrote(pool, int(new_bytes / CHUNK_BYTES_GUESS))
    if guard.dropped:
        run.work.expect_index(guard.existing)
    await prepare_and_store(jobs, run, known, max_file_size, static_tier, not rechunk, (guard, moves))

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


async def _ensure_index(run: Run, index: VectorIndex) -> None:
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
