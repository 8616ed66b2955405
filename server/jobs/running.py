"""One claimed job while it runs: the function call with its timeout and final write, the pushed
cancellation, the heartbeat (the fallback cancellation check) and throttled progress writes.

`Worker` (server/jobs/worker.py) claims jobs and hands each to these pieces; they know the job's
pool and row, never the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from listener import Subscription
from server.db.registry import Project
from server.indexer.pipeline import IndexResult, Progress
from server.jobs import queries
from server.jobs.models import JobKind, JobRow

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    """What a job function gets: the claimed row, its project, and a throttled progress reporter."""

    job_id: uuid.UUID
    row: JobRow
    project: Project
    pool: asyncpg.Pool
    report: Callable[[Progress], Awaitable[None]]


RunJob = Callable[[JobRun], Awaitable[IndexResult]]


@dataclass
class Running:
    """A job this process runs: its task, and why it was stopped (first reason wins)."""

    task: asyncio.Task[None]
    database: str
    kind: JobKind = "index"
    stop_reason: list[str] = field(default_factory=list)
    finishing: bool = False  # the job function has returned: its own final write must not cancel it

    def stop(self, reason: str) -> None:
        if not self.stop_reason and not self.finishing:
            self.stop_reason.append(reason)
            self.task.cancel()


async def run_guarded(run_job: RunJob, job: JobRun, run: Running, worker_id: str, *, timeout_seconds: float) -> None:
    """Run the job function and write how it ended: completed, failed, or timed out (data kept)."""
    pool, job_id = job.pool, job.job_id
    try:
        async with asyncio.timeout(timeout_seconds):
            result = await run_job(job)
    except TimeoutError:
        run.finishing = True
        await queries.fail(
            pool, job_id, worker_id,
            error_message=f"job exceeded INDEXING_JOB_TIMEOUT_SECONDS={timeout_seconds}; indexed data so far is kept",
            error_type="JobTimeout", error_traceback=None,
        )  # fmt: skip
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        run.finishing = True
        await queries.fail(
            pool, job_id, worker_id,
            error_message=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
            error_traceback=traceback.format_exc(),
        )  # fmt: skip
        log.warning("job %s failed: %s", job_id, exc)
    else:
        run.finishing = True
        await write_completion(pool, job_id, worker_id, result)


async def write_completion(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str, result: IndexResult) -> JobRow | None:
    """Mark the job completed with the run's counters; None when it was no longer ours (cancelled)."""
    return await queries.complete(
        pool, job_id, worker_id, repository_id=result.repository_id,
        message=f"Completed: {result.files_indexed} files indexed, {result.chunks_created} chunks",
        files_scanned=result.files_scanned, files_indexed=result.files_indexed,
        chunks_created=result.chunks_created,
        metadata={"files_unchanged": result.files_unchanged, "files_deleted": result.files_deleted,
                  "chunks_embedded": result.chunks_embedded, "total_chunks": result.total_chunks,
                  "duration_seconds": round(result.duration_seconds, 3)},
    )  # fmt: skip


async def watch_cancel(sub: Subscription, pool: asyncpg.Pool, job_id: uuid.UUID, run: Running) -> None:
    """Stop the run as soon as NOTIFY (or the row, after a resync) says it is no longer running."""
    async for event in sub:
        status = event.payload.get("status") if event.kind == "notify" else None
        if status is None:  # resync: read the row
            row = await queries.get(pool, job_id)
            status = row.status if row else "cancelled"
        if status != "running":
            run.stop("cancelled")
            return


async def heartbeat(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str, run: Running, *, interval: float) -> None:
    """Keep the job alive for the rescuer; a row no longer ours stops the run (missed NOTIFY)."""
    while True:
        await asyncio.sleep(interval)
        try:
            status = await queries.heartbeat(pool, job_id, worker_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("heartbeat for job %s failed", job_id, exc_info=True)
            continue
        if status != "running":
            run.stop("cancelled")
            return


class ThrottledProgress:
    """Writes progress at most every `interval` seconds, and on every phase change; `on_stored(database)`
    runs when the job leaves its storing phases (a refresh of the repository may go then)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        job_id: uuid.UUID,
        worker_id: str,
        run: Running,
        *,
        interval: float,
        on_stored: Callable[[str], Awaitable[None]],
    ) -> None:
        self.pool = pool
        self.job_id = job_id
        self.worker_id = worker_id
        self.run = run
        self.interval = interval
        self.on_stored = on_stored
        self.last_write = 0.0
        self.last_phase = ""

    async def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.phase == self.last_phase and now - self.last_write < self.interval and p.percentage < 100:
            return
        stored = self.last_phase in queries.STORE_PHASES and p.phase not in queries.STORE_PHASES
        self.last_write, self.last_phase = now, p.phase
        still_ours = await queries.update_progress(self.pool, self.job_id, self.worker_id, p)
        if not still_ours:
            self.run.stop("cancelled")
            await asyncio.sleep(0)  # let the cancellation land here
        elif stored:
            await self.on_stored(self.run.database)
