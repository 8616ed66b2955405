"""`index_repository`: scan → chunk (in worker processes) → store → embed.

The repository is searchable by full text as soon as the chunks are stored;
vectors are filled in afterwards in the same run. Every loop awaits between
batches, so an asyncio cancel stops the run within one batch and leaves each
batch either fully written or not at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np

from server.embeddings.base import Embedder
from server.indexer import store
from server.indexer.chunker import chunk_file
from server.indexer.fulltext import tsvector_binary
from server.indexer.roles import Role, classify
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, load_file, scan_repository
from server.indexer.store import ChunkRow, FileRecord
from server.indexer.tokens import code_tokens
from server.indexer.types import ScannedFile

log = logging.getLogger(__name__)

FILES_PER_BATCH = 128
EMBED_BATCH = 128
# Version of what a stored chunk holds (tokens, full text, roles, vectors). Files indexed with an
# older format are chunked again; bump it whenever chunks of unchanged files would differ.
INDEX_FORMAT = 2
WRITERS = 2  # concurrent batch writes (each on its own connection)
_INLINE_LIMIT = 64  # fewer changed files than this: no worker processes needed


class RepositoryTooLargeError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Progress:
    percentage: int
    message: str
    phase: str  # scanning, chunking, embedding, finalizing, done
    files_scanned: int = 0
    files_indexed: int = 0
    chunks_created: int = 0


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass
class IndexResult:
    repository_id: uuid.UUID
    files_scanned: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)
    chunks_created: int = 0
    chunks_embedded: int = 0
    embedding_cache_hits: int = 0
    total_files: int = 0
    total_chunks: int = 0
    searchable_seconds: float = 0.0
    duration_seconds: float = 0.0

    def progress(self, percentage: int, message: str, phase: str) -> Progress:
        return Progress(percentage, message, phase, self.files_scanned, self.files_indexed, self.chunks_created)


# --- work done in worker processes -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    file: ScannedFile
    known_hash: str | None


def _path_tokens(rel_path: str) -> str:
    return code_tokens(rel_path.replace("/", " ").replace(".", " "))


def embedding_text(rel_path: str, symbol: str | None, content: str) -> str:
    """What the transformer reads for a chunk: a path + qualified-symbol header, then the code."""
    return f"{rel_path} {symbol}\n{content}" if symbol else f"{rel_path}\n{content}"


_NON_DEFINITIONS = frozenset({"module", "section", "window"})
_ROLE_PRIORITY = {"code": 0, "test": 2, "docs": 3}


def embed_priority(role: Role, kind: str) -> int:
    """Transformer queue order: implementation definitions, other code, tests, docs."""
    return _ROLE_PRIORITY[role] + (1 if role == "code" and kind in _NON_DEFINITIONS else 0)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _chunk_rows(rel_path: str, text: str, language: str, role: Role) -> list[ChunkRow]:
    path_tokens = _path_tokens(rel_path)
    rows = []
    for c in chunk_file(text, language):
        rows.append(
            ChunkRow(
                start_line=c.start_line,
                end_line=c.end_line,
                symbol=c.symbol,
                kind=c.kind,
                language=c.language,
                content=c.content,
                content_hash=_sha256(c.content),
                role=role,
                tsv=tsvector_binary(code_tokens(c.symbol) if c.symbol else "", path_tokens, code_tokens(c.content)),
                embed_hash=_sha256(embedding_text(rel_path, c.symbol, c.content)),
                embed_priority=embed_priority(role, c.kind),
            )
        )
    return rows


def _prepare(jobs: Sequence[_Job], max_size: int) -> list[FileRecord | tuple[str, str]]:
    """Read, hash and chunk files. Unchanged content → ("same", rel_path); unreadable → (reason, rel)."""
    out: list[FileRecord | tuple[str, str]] = []
    for job in jobs:
        loaded = load_file(job.file, max_size)
        if isinstance(loaded, str):
            out.append((loaded, job.file.rel_path))
            continue
        if loaded.content_hash == job.known_hash:
            out.append(("same", job.file.rel_path))
            continue
        role = classify(job.file.rel_path, loaded.language)
        out.append(
            FileRecord(
                rel_path=job.file.rel_path,
                content_hash=loaded.content_hash,
                size=job.file.size,
                mtime_ns=job.file.mtime_ns,
                language=loaded.language,
                line_count=loaded.line_count,
                role=role,
                chunks=_chunk_rows(job.file.rel_path, loaded.text, loaded.language or "text", role),
            )
        )
    return out


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _noop(delay: float) -> None:
    time.sleep(delay)


def _executor() -> Executor:
    """A process pool shared by every run in this process, started once and warmed up.

    Blocking (process start-up takes a second): call it through `asyncio.to_thread`.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(os.cpu_count() or 1, 8))
            ctx = multiprocessing.get_context("forkserver")
            # children fork from a server that already imported the parsers
            ctx.set_forkserver_preload(["server.indexer.chunker", "server.indexer.tokens"])
            pool = ProcessPoolExecutor(workers, mp_context=ctx)
            for fut in [pool.submit(_noop, 0.05) for _ in range(workers)]:
                fut.result()
            _pool = pool
        return _pool


def shutdown_executor() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(cancel_futures=True)
            _pool = None


# --- the run ---------------------------------------------------------------------------


class _Reporter:
    """Keeps percentages monotonic and shields indexing from a failing callback."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last = 0

    async def __call__(self, progress: Progress) -> None:
        if self.callback is None:
            return
        pct = max(self.last, min(100, progress.percentage))
        self.last = pct
        try:
            await self.callback(dataclasses.replace(progress, percentage=pct))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("progress callback failed; indexing continues")


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
) -> IndexResult:
    """Index `repo_path` into the project database behind `pool`.

    `embedder=None` stores full text only (vectors can be filled by a later run).
    """
    started = time.monotonic()
    report = _Reporter(progress_callback)
    root = repo_path.resolve()

    await report(Progress(1, f"Scanning {root}", "scanning"))
    scan = await asyncio.to_thread(scan_repository, root, max_file_size=max_file_size)
    total_bytes = sum(f.size for f in scan.files)
    if max_repo_bytes is not None and total_bytes > max_repo_bytes:
        raise RepositoryTooLargeError(
            f"repository {root} holds {total_bytes / 1e9:.2f} GB of indexable files, above the "
            f"MAX_REPO_SIZE_GB limit of {max_repo_bytes / 1e9:.2f} GB; raise the limit or ignore folders "
            "in .codebase-mcp/ignore"
        )
    async with pool.acquire() as conn:
        repo_id, stored_format = await store.ensure_repository(conn, str(root), name, INDEX_FORMAT)
        known = await store.known_files(conn, repo_id)
    rechunk = force_reindex or stored_format < INDEX_FORMAT
    result = IndexResult(repository_id=repo_id, files_scanned=len(scan.files), files_skipped=dict(scan.skipped))
    await report(result.progress(10, f"Scanned {len(scan.files)} files", "scanning"))

    # Change detection: same size and mtime → unchanged without reading; else hash decides.
    jobs: list[_Job] = []
    for f in scan.files:
        k = known.get(f.rel_path)
        if k is not None and not rechunk and not k.is_deleted and k.size == f.size and k.mtime_ns == f.mtime_ns:
            result.files_unchanged += 1
            continue
        jobs.append(_Job(f, None if (k is None or rechunk or k.is_deleted) else k.content_hash))

    await _chunk_and_store(jobs, pool, repo_id, known, result, report, max_file_size)

    present = {f.rel_path for f in scan.files}
    gone = [p for p, k in known.items() if p not in present and not k.is_deleted]
    async with pool.acquire() as conn:
        result.files_deleted = await store.mark_deleted(conn, repo_id, gone)
    result.searchable_seconds = time.monotonic() - started

    if embedder is not None:
        await _embed_missing(pool, repo_id, embedder, result, report)

    await report(result.progress(95, "Finalizing", "finalizing"))
    async with pool.acquire() as conn:
        result.total_files, result.total_chunks = await store.finish_repository(conn, repo_id, INDEX_FORMAT)
    result.duration_seconds = time.monotonic() - started
    await report(result.progress(100, f"Indexed {result.files_indexed} files, {result.chunks_created} chunks", "done"))
    return result


async def _chunk_and_store(
    jobs: list[_Job],
    pool: asyncpg.Pool,
    repo_id: uuid.UUID,
    known: dict[str, store.KnownFile],
    result: IndexResult,
    report: _Reporter,
    max_file_size: int,
) -> None:
    total = len(jobs)
    batches = [jobs[i : i + FILES_PER_BATCH] for i in range(0, total, FILES_PER_BATCH)]
    loop = asyncio.get_running_loop()
    executor = await asyncio.to_thread(_executor) if total > _INLINE_LIMIT else None
    # Keep at most a few batches in flight so memory stays bounded and cancel is prompt.
    in_flight = max(2, (os.cpu_count() or 1) * 2)
    futures: list[asyncio.Future[list[FileRecord | tuple[str, str]]]] = []
    writes: set[asyncio.Task[None]] = set()
    next_batch = 0
    done_files = 0
    mtimes = {j.file.rel_path: j.file.mtime_ns for j in jobs}

    async def write(prepared: list[FileRecord | tuple[str, str]]) -> None:
        nonlocal done_files
        records = [r for r in prepared if isinstance(r, FileRecord)]
        same = [r[1] for r in prepared if isinstance(r, tuple) and r[0] == "same"]
        for r in prepared:
            if isinstance(r, tuple) and r[0] != "same":
                result.files_skipped[r[0]] = result.files_skipped.get(r[0], 0) + 1
        async with pool.acquire() as conn:
            written = await store.replace_files(conn, repo_id, records)  # not `+= await`: writers interleave
            await store.touch_files(conn, [known[p].id for p in same], [mtimes[p] for p in same])
        result.chunks_created += written
        result.files_indexed += len(records)
        result.files_unchanged += len(same)
        done_files += len(prepared)
        pct = 10 + int(40 * done_files / max(total, 1))
        await report(result.progress(pct, f"Chunked {done_files}/{total} files", "chunking"))

    try:
        while next_batch < len(batches) or futures:
            while next_batch < len(batches) and len(futures) < in_flight:
                futures.append(loop.run_in_executor(executor, _prepare, batches[next_batch], max_file_size))
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


async def _embed_missing(
    pool: asyncpg.Pool, repo_id: uuid.UUID, embedder: Embedder, result: IndexResult, report: _Reporter
) -> None:
    """Transformer vectors for every chunk still without one: cached texts first, then by priority
    (implementation before tests and docs) and newest first within a priority."""
    async with pool.acquire() as conn:
        result.embedding_cache_hits = await store.fill_from_cache(conn, repo_id)
        todo = await store.count_unembedded(conn, repo_id)
        priorities = await store.unembedded_priorities(conn, repo_id)
    await report(result.progress(50, f"Embedding {todo} chunks", "embedding"))
    done = 0
    for priority in priorities:
        below = 2**63 - 1
        while True:
            async with pool.acquire() as conn:
                rows = await store.next_unembedded(conn, repo_id, priority, below, EMBED_BATCH)
            if not rows:
                break
            below = rows[-1]["id"]
            # Identical texts inside the batch are embedded once (the cache key is their hash).
            unique: dict[str, str] = {}
            for r in rows:
                unique.setdefault(r["embed_hash"], embedding_text(r["rel_path"], r["symbol"], r["content"]))
            hashes = list(unique)
            vectors = await embedder.embed([unique[h] for h in hashes])
            by_hash = dict(zip(hashes, vectors, strict=True))
            async with pool.acquire() as conn:
                await store.store_embeddings(
                    conn,
                    [r["id"] for r in rows],
                    [r["embed_hash"] for r in rows],
                    np.vstack([by_hash[r["embed_hash"]] for r in rows]).astype(np.float32),
                )
            done += len(rows)
            result.chunks_embedded += len(rows)
            pct = 50 + int(40 * done / max(todo, 1))
            await report(result.progress(pct, f"Embedded {done}/{todo} chunks", "embedding"))
