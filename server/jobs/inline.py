"""Runs this process does itself (`codebase-mcp index`, the `index_repository` tool), recorded as jobs.

The row is inserted as `running` with `metadata.origin` 'cli' or 'tool' and this process's worker
id, so no worker ever claims it, and every watcher (the jobs page, `watch_indexing`) sees it like
any other job. The run heartbeats, writes throttled progress, and stops when the row is cancelled
(the page's cancel button; pushed by NOTIFY through the hub, with the heartbeat as fallback). If
the process dies, the workers' rescue fails the row (`WorkerLost`) instead of re-queueing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from server.db.registry import Project
from server.errors import UserError
from server.indexer.pipeline import IndexResult, ProgressCallback
from server.indexer.progress import Progress
from server.jobs import queries
from server.jobs.hub import DB_ERRORS, JobHub
from server.jobs.models import IndexingJobCreate, JobRow
from server.jobs.running import write_completion
from server.jobs.worker import new_worker_id

__all__ = ["InlineJob", "Origin", "RepositoryBusyError", "RunCancelledError", "run_inline"]

log = logging.getLogger(__name__)

Origin = Literal["cli", "tool"]
Index = Callable[[ProgressCallback], Coroutine[Any, Any, IndexResult]]


class RepositoryBusyError(UserError, RuntimeError):
    """The repository already has a pending or running job."""


class RunCancelledError(UserError, RuntimeError):
    """Somebody cancelled the job while this process ran it."""


@dataclass(frozen=True)
class Timing:
    progress_interval: float
    heartbeat_interval: float


@dataclass(frozen=True)
class InlineJob:
    row: JobRow  # the final row
    result: IndexResult


async def run_inline(
    hub: JobHub,
    pool: asyncpg.Pool,
    project: Project,
    job: IndexingJobCreate,
    index: Index,
    *,
    origin: Origin,
    timing: Timing,
    progress: ProgressCallback | None = None,
) -> InlineJob:
    """Record `job` as running here, run `index` with a progress reporter, record how it ended."""
    worker_id = new_worker_id()
    row, created = await queries.create_running(
        pool, job, worker_id=worker_id, task_name=f"{origin}-{uuid.uuid4().hex[:6]}", origin=origin
    )
    if not created:
        raise RepositoryBusyError(
            f"{job.repo_path} already has an active indexing job {row.id} ({row.status}); wait for it "
            "(watch_indexing, or the jobs page) or cancel it first"
        )
    runner = _Runner(hub, pool, project, row, worker_id, timing, progress)
    return await runner.run(index)


class _Runner:
    def __init__(
        self,
        hub: JobHub,
        pool: asyncpg.Pool,
        project: Project,
        row: JobRow,
        worker_id: str,
        timing: Timing,
        relay: ProgressCallback | None,
    ) -> None:
        self.hub, self.pool, self.project, self.row = hub, pool, project, row
        self.worker_id, self.timing, self.relay = worker_id, timing, relay
        self.cancelled_by: str | None = None
        self.last_write, self.last_phase = 0.0, ""
        self.work: asyncio.Task[IndexResult] | None = None

    async def run(self, index: Index) -> InlineJob:
        self.work = work = asyncio.create_task(index(self.report), name=f"inline-{self.row.id}")
        guards = [asyncio.create_task(self._watch_cancel()), asyncio.create_task(self._heartbeat())]
        try:
            result = await work
        except asyncio.CancelledError:
            if self.cancelled_by is None:  # our caller was cancelled (Ctrl-C, the MCP request)
                await _shielded(queries.interrupt(self.pool, self.row.id, self.worker_id, "Interrupted"))
                raise
            await queries.mark_worker_stopped(self.pool, self.row.id, self.worker_id)
            raise RunCancelledError(f"indexing job {self.row.id} was cancelled ({self.cancelled_by})") from None
        except BaseException as exc:
            await _shielded(
                queries.fail(
                    self.pool, self.row.id, self.worker_id, error_message=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__, error_traceback=traceback.format_exc(),
                )
            )  # fmt: skip
            raise
        finally:
            for guard in guards:
                guard.cancel()
            await asyncio.gather(*guards, return_exceptions=True)
        final = await write_completion(self.pool, self.row.id, self.worker_id, result)
        if final is None:  # cancelled in the last moment: the table says so, and the table is the truth
            now = await queries.get(self.pool, self.row.id)
            raise RunCancelledError(f"indexing job {self.row.id} was {now.status if now else 'deleted'} as it ended")
        return InlineJob(final, result)

    async def report(self, p: Progress) -> None:
        if self.relay is not None:
            await self.relay(p)
        now = time.monotonic()
        if p.phase == self.last_phase and now - self.last_write < self.timing.progress_interval and p.percentage < 100:
            return
        self.last_write, self.last_phase = now, p.phase
        if not await queries.update_progress(self.pool, self.row.id, self.worker_id, p):
            self._stop("the job is no longer running")
            await asyncio.sleep(0)  # let the cancellation land here

    def _stop(self, why: str) -> None:
        if self.cancelled_by is None and self.work is not None and not self.work.done():
            self.cancelled_by = why
            self.work.cancel()

    async def _watch_cancel(self) -> None:
        try:
            async with await self.hub.watch_job(self.project, self.row.id) as watch:
                async for change in watch:
                    if change.row.status != "running":
                        self._stop(f"it became {change.row.status}")
                        return
        except UserError:  # the row is gone: the heartbeat says so too
            return

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_interval)
            try:
                status = await queries.heartbeat(self.pool, self.row.id, self.worker_id)
            except DB_ERRORS:
                log.warning("heartbeat of job %s failed", self.row.id, exc_info=True)
                continue
            if status != "running":
                self._stop(f"it became {status or 'deleted'}")
                return


async def _shielded(write: Awaitable[object]) -> None:
    """A final write that must land even while we are being cancelled."""
    with contextlib.suppress(*DB_ERRORS):
        await asyncio.shield(write)
