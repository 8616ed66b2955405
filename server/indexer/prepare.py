"""The CPU side of indexing, run in worker processes: read, hash, chunk, and build each chunk's row.

A row carries everything the store COPYs: the chunk, its role, its full-text document as a binary
tsvector, the hashes that key the embedding cache, its place in the transformer queue and, when a
static model is given, its static-tier vector — so a stored chunk is searchable by full text and
by meaning at once.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

from server.embeddings.static import StaticEmbedder, static_text
from server.embeddings.text import embedding_text
from server.indexer.chunker import chunk_file
from server.indexer.fulltext import tsvector_binary
from server.indexer.roles import Role, classify
from server.indexer.scanner import load_file
from server.indexer.tokens import code_tokens
from server.indexer.types import ChunkKey, ChunkKind, ChunkRow, FileRecord, ScannedFile, key_of
from server.lifeline import die_with

_NON_DEFINITIONS: frozenset[ChunkKind] = frozenset({"module", "section", "window"})
_ROLE_PRIORITY: dict[Role, int] = {"code": 0, "test": 2, "docs": 3}

Prepared = FileRecord | tuple[str, str]  # a file's record, or (reason, rel_path): "same", "binary", ...


@dataclass(frozen=True, slots=True)
class PrepareJob:
    file: ScannedFile
    known_hash: str | None  # the stored content hash: equal content is reported "same", not chunked
    # The keys of the file's stored chunks (`store.stored_chunk_keys`): a chunk among them keeps its row,
    # so its full text and static vector are not computed (an edit or a branch switch changes few chunks).
    stored: tuple[ChunkKey, ...] = ()


def embed_priority(role: Role, kind: ChunkKind) -> int:
    """Transformer queue order: implementation definitions, other code, tests, docs."""
    return _ROLE_PRIORITY[role] + (1 if role == "code" and kind in _NON_DEFINITIONS else 0)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _path_tokens(rel_path: str) -> str:
    return code_tokens(rel_path.replace("/", " ").replace(".", " "))


def chunk_rows(rel_path: str, text: str, language: str, role: Role, stored: Sequence[ChunkKey] = ()) -> list[ChunkRow]:
    """The file's chunk rows; those among `stored` (counted: a repeated text keeps as many rows as it
    had) come back `unchanged`, without full text."""
    path_tokens = _path_tokens(rel_path)
    keep = Counter(stored)
    rows: list[ChunkRow] = []
    for c in chunk_file(text, language):
        content_hash = _sha256(c.content)
        embed_hash = _sha256(embedding_text(rel_path, c.symbol, c.content))
        priority = embed_priority(role, c.kind)
        key = key_of(embed_hash, content_hash, c.symbol, c.kind, role, c.language, priority)
        unchanged = keep[key] > 0
        if unchanged:
            keep[key] -= 1
            tsv = b""
        else:
            tsv = tsvector_binary(code_tokens(c.symbol) if c.symbol else "", path_tokens, code_tokens(c.content))
        rows.append(
            ChunkRow(
                start_line=c.start_line,
                end_line=c.end_line,
                symbol=c.symbol,
                kind=c.kind,
                language=c.language,
                content="" if unchanged else c.content,
                content_hash=content_hash,
                role=role,
                tsv=tsv,
                embed_hash=embed_hash,
                embed_priority=priority,
                unchanged=unchanged,
            )
        )
    return rows


_static: StaticEmbedder | None = None
_static_lock = threading.Lock()


def _static_model() -> StaticEmbedder:
    """This process's static model (memory-mapped once, shared by threads)."""
    global _static
    with _static_lock:
        if _static is None:
            _static = StaticEmbedder()
        return _static


def prepare(jobs: Sequence[PrepareJob], max_size: int, static_tier: bool = False) -> list[Prepared]:
    """Read, hash and chunk files; with `static_tier` every chunk also gets its static vector."""
    out: list[Prepared] = []
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
                chunks=chunk_rows(job.file.rel_path, loaded.text, loaded.language or "text", role, job.stored),
            )
        )
    if static_tier:
        records = [r for r in out if isinstance(r, FileRecord)]
        rows = [(r.rel_path, c) for r in records for c in r.chunks if not c.unchanged]
        if rows:
            vectors = _static_model().embed([static_text(path, c.symbol, c.content) for path, c in rows])
            for (_, chunk), vector in zip(rows, vectors, strict=True):
                object.__setattr__(chunk, "static_embedding", vector)  # frozen row, filled once here
    return out


# --- the shared process pool --------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_users = 0  # runs between acquire_executor() and release_executor()


def _noop(delay: float) -> None:
    time.sleep(delay)


def _init_worker(parent_pid: int) -> None:
    die_with(parent_pid)  # workers (and so the forkserver and resource_tracker) end with this process
    # One worker per core already: the tokenizer's own thread pool only adds contention (measured:
    # the static tier's tokenising took a third less CPU time without it).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def executor() -> Executor:
    """A process pool shared by every run in this process, started once and warmed up.

    Blocking (process start-up takes a second): call it through `asyncio.to_thread`.
    """
    with _pool_lock:
        return _started_pool()


def _started_pool() -> Executor:
    """The shared pool, started if need be; the caller holds `_pool_lock`."""
    global _pool
    if _pool is None:
        workers = max(1, min(os.cpu_count() or 1, 8))
        ctx = multiprocessing.get_context("forkserver")
        # Children fork from a server that already imported the parsers. The forkserver starts with a
        # fresh sys.path (Python 3.11 ignores the one it is handed), so `codebase_mcp` goes first: it
        # puts the folder holding `server` on the path, as in every process of ours.
        ctx.set_forkserver_preload(["codebase_mcp", "server.indexer.prepare"])
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
        for fut in [pool.submit(_noop, 0.05) for _ in range(workers)]:
            fut.result()
        _pool = pool
    return _pool


def acquire_executor() -> Executor:
    """`executor()` for one run's store phase; pair it with `release_executor()`. Blocking.

    Taken and counted under one lock: a run releasing meanwhile cannot stop the pool just handed out."""
    global _users
    with _pool_lock:
        pool = _started_pool()
        _users += 1
        return pool


def release_executor() -> None:
    """One run is done with the pool: the last one out stops the workers, so they do not hold their
    memory (a worker's parsers and token caches, ~250 MB on the standard corpus) while the
    transformer tier fills or the process idles. The next big run starts them again (~1 s).
    Blocking: the workers are waited for."""
    global _pool, _users
    with _pool_lock:
        _users = max(0, _users - 1)
        if _users or _pool is None:
            return
        pool, _pool = _pool, None
        pool.shutdown(cancel_futures=True)


def shutdown_executor() -> None:
    global _pool, _users
    with _pool_lock:
        _users = 0
        if _pool is not None:
            _pool.shutdown(cancel_futures=True)
            _pool = None
