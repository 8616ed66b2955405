"""The store phase of a run: changed files are prepared in worker processes (a few batches in flight)
and written by two concurrent writers, each batch in one transaction, searchable once written.

A changed file's worker is told the keys of its stored chunks, so the chunks an edit or a branch
switch left as they were keep their rows without their full text or static vector being computed
again; should those rows change meanwhile, the batch is prepared again in full."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace

from server.indexer import store, vector_index
from server.indexer.prepare import Prepared, PrepareJob, acquire_executor, prepare, release_executor
from server.indexer.progress import CHUNK_BYTES_GUESS
from server.indexer.run import Run
from server.indexer.types import FileRecord

log = logging.getLogger(__name__)

FILES_PER_BATCH = 128
WRITERS = 2  # concurrent batch writes (each on its own connection)
_INLINE_LIMIT = 64  # fewer changed files than this: no worker processes needed


async def prepare_and_store(
    jobs: list[PrepareJob],
    run: Run,
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
    futures: list[tuple[list[PrepareJob], asyncio.Future[list[Prepared]]]] = []
    writes: set[asyncio.Task[None]] = set()
    next_batch = 0
    done_files = 0
    sizes = {j.file.rel_path: (j.file.size, j.file.mtime_ns) for j in jobs}

    async def with_stored_keys(batch: list[PrepareJob]) -> list[PrepareJob]:
        """The batch, each changed file told the keys of its stored chunks (kept, not prepared again)."""
        ids = {j.file.rel_path: known[j.file.rel_path].id for j in batch if j.known_hash is not None}
        if not keep_unchanged or not ids:
            return batch
        async with run.pool.acquire() as conn:
            keys = await store.stored_chunk_keys(conn, list(ids.values()), with_static=static_tier)
        return [
            replace(j, stored=tuple(keys.get(ids[j.file.rel_path], ()))) if j.file.rel_path in ids else j for j in batch
        ]

    async def write(batch: list[PrepareJob], prepared: list[Prepared]) -> None:
        nonlocal done_files
        async with run.pool.acquire() as conn:
            records = _records(prepared)
            try:
                replaced = await store.replace_files(conn, result.repository_id, records, keep_unchanged=keep_unchanged)
            except store.StaleChunkKeysError as stale:
                log.info("%s: preparing the batch of %d files again in full", stale, len(batch))
                full = [replace(j, stored=()) for j in batch]
                prepared = await loop.run_in_executor(pool_executor, prepare, full, max_size, static_tier)
                records = _records(prepared)
                replaced = await store.replace_files(conn, result.repository_id, records, keep_unchanged=keep_unchanged)
            same = [r[1] for r in prepared if isinstance(r, tuple) and r[0] == "same"]
            await store.touch_files(conn, [known[p].id for p in same], [sizes[p][1] for p in same])
        for r in prepared:
            if isinstance(r, tuple) and r[0] != "same":
                result.files_skipped[r[0]] = result.files_skipped.get(r[0], 0) + 1
        written = replaced.inserted
        # The estimate for files new to the index gives way to what was written (moved rows are new
        # row versions in the index too).
        estimated = sum(sizes[r.rel_path][0] for r in records if new_file(known.get(r.rel_path), keep_unchanged))
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
                batch = await with_stored_keys(batches[next_batch])
                futures.append((batch, loop.run_in_executor(pool_executor, prepare, batch, max_size, static_tier)))
                next_batch += 1
            batch, future = futures.pop(0)
            prepared = await future
            # Two writers: while one batch's COPY runs, the next one is already on its way.
            if len(writes) >= WRITERS:
                done, _ = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                writes -= done
                for task in done:
                    task.result()
            writes.add(asyncio.create_task(write(batch, prepared)))
        if writes:
            await asyncio.gather(*writes)
    finally:
        for _, fut in futures:
            fut.cancel()
        for task in writes:
            task.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        if pool_executor is not None:
            await asyncio.shield(asyncio.to_thread(release_executor))  # a cancel must not leak the count


def _records(prepared: list[Prepared]) -> list[FileRecord]:
    return [r for r in prepared if isinstance(r, FileRecord)]


def new_file(known: store.KnownFile | None, keep_unchanged: bool) -> bool:
    """Whether every chunk of the file is written anew (it has no rows to keep)."""
    return known is None or known.is_deleted or not keep_unchanged


def _paths(prepared: list[Prepared]) -> list[str]:
    return [r.rel_path if isinstance(r, FileRecord) else r[1] for r in prepared]
