"""Workers: claim pending jobs when told there may be one, run them, stop them when NOTIFY says so.

One `Worker` per process serves every project database, yet holds connections only for the
databases it works on: it LISTENs on the registry database alone, where whoever enqueues or
re-queues a job, and whoever frees a job slot, sends a hint (`codebase_jobs`); new projects
arrive on `codebase_projects`. A running job LISTENs on its own database for its cancellation.
A sweep over every project (one short-lived connection at a time, one process at a time thanks
to an advisory lock) is the safety net: it finds pending jobs whose hint was missed, rescues the
jobs of dead workers, fails overdue ones and deletes expired history. Claims use
`FOR UPDATE SKIP LOCKED`; the cluster-wide concurrency limit is held by advisory-lock slots.
A running job heartbeats; the heartbeat doubles as the fallback cancellation check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from typing import Any

import asyncpg

from listener import Notifier, Subscription
from server.db.budget import ConnectionLimitError
from server.db.cluster import Cluster, database_of
from server.db.registry import Project, Registry
from server.jobs import queries, refresh, sweeps
from server.jobs.channels import HINT_CHANNEL, JOBS_CHANNEL, PROJECTS_CHANNEL
from server.jobs.models import JobRow
from server.jobs.running import JobRun, RunJob, Running, ThrottledProgress, heartbeat, run_guarded, watch_cancel
from server.jobs.slots import REFRESH_SLOTS, GlobalSlots, Lane, Slot
from server.lifeline import pid_alive
from server.settings import Settings
from server.stacks import task_stack

log = logging.getLogger(__name__)

# How long a stopping worker waits for its cancelled jobs' tasks (each hands its job back to the
# queue), then for a second cancel; a task that still runs is left behind, with its stack logged.
STOP_GRACE_SECONDS = 30.0
STOP_CANCEL_SECONDS = 5.0

MAX_ATTEMPTS = 3
DISPATCH_STOP_SECONDS = 5.0  # how long stop() waits for a claim in flight
_SWEEP_LOCK = 0x63737770  # advisory lock key ("cswp"): one process sweeps all projects at a time
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionLimitError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_local_workers(worker_ids: list[str]) -> list[str]:
    """Workers that ran on this host in a process that no longer exists (e.g. killed with SIGKILL)."""
    host = socket.gethostname()
    dead = []
    for wid in worker_ids:
        parts = wid.split(":")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not pid_alive(int(parts[1])):
            dead.append(wid)
    return dead


class Worker:
    def __init__(
        self,
        *,
        cluster: Cluster,
        registry: Registry,
        notifier: Notifier,
        settings: Settings,
        run_job: RunJob,
        worker_id: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.notifier = notifier
        self.settings = settings
        self.run_job = run_job
        self.worker_id = worker_id or new_worker_id()

        async def slot_connect(dsn: str) -> asyncpg.Connection:  # within the process's connection budget
            return await cluster.connect_dsn(dsn, application_name="codebase-mcp-slot")

        self.slots = GlobalSlots(cluster.registry_dsn, settings.max_concurrent_indexing_jobs, connect=slot_connect)
        refresh_slots = self.slots.sibling(settings.max_concurrent_refresh_jobs, REFRESH_SLOTS)
        # Refreshes first: they take seconds, and have slots of their own so they never wait for a
        # long index job's slot nor take one from it.
        self.lanes = (Lane("refresh", refresh_slots), Lane("index", self.slots))
        self.running: dict[uuid.UUID, Running] = {}
        self._projects: dict[str, Project] = {}  # database name → project
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._dispatch: asyncio.Task[None] | None = None
        self._task_numbers = itertools.count(1)  # names the asyncio task of each job: job-1, job-2, ...
        self._sweep_now = asyncio.Event()
        self.sweeps = 0  # completed sweeps (tests and benchmarks read it)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.registry.ensure_ready()
        # subscribe first, then list and sweep: a project or job created in between is not missed
        projects_sub = await self.notifier.subscribe(self.cluster.registry_dsn, PROJECTS_CHANNEL)
        hints_sub = await self.notifier.subscribe(self.cluster.registry_dsn, HINT_CHANNEL, maxsize=256)
        self._subs += [projects_sub, hints_sub]
        self._track(asyncio.create_task(self._watch_projects(projects_sub), name="worker-projects"))
        self._track(asyncio.create_task(self._watch_hints(hints_sub), name="worker-hints"))
        await self._discover_projects()
        await self.maintain()
        self._dispatch = asyncio.create_task(self._dispatch_loop(), name="worker-dispatch")
        self._track(self._dispatch)
        self._track(asyncio.create_task(self._maintenance_loop(), name="worker-maintenance"))
        log.info("worker %s started", self.worker_id)

    async def stop(self) -> None:
        """Stop claiming; give running jobs back to the queue for another worker."""
        self._stopping = True
        self._wake.set()
        if self._dispatch is not None:
            # A claim in flight has committed in the table: let it finish and its job start, so
            # the job is handed back below instead of staying 'running' until the stale rescue.
            await asyncio.wait({self._dispatch}, timeout=DISPATCH_STOP_SECONDS)
            await asyncio.sleep(0)  # the started jobs' tasks reach their first await
        for run in list(self.running.values()):
            run.stop("shutdown")
        if self.running:
            await _wait_for_runs([r.task for r in self.running.values()])
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in self._subs:
            await sub.close()
        for lane in self.lanes:
            await lane.slots.close()

    @property
    def databases(self) -> frozenset[str]:
        """The project databases this worker serves."""
        return frozenset(self._projects)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)  # strong reference: never lose a task to garbage collection
        task.add_done_callback(self._tasks.discard)

    def wake(self, database: str | None = None) -> None:
        """`database` may have a job to claim; without one: retry the databases still marked."""
        if database:
            self._dirty.add(database)
        self._wake.set()

    # -- discovery ------------------------------------------------------------------------
    async def _add_project(self, project: Project) -> None:
        self._projects.setdefault(project.database_name, project)  # no connection: hints and sweeps cover it

    async def _watch_projects(self, sub: Subscription) -> None:
        async for _event in sub:
            await self._discover_projects()

    async def _discover_projects(self) -> None:
        projects = await self.registry.list_projects()
        listed = {p.database_name for p in projects}
        for db in [db for db in self._projects if db not in listed]:
            await self._forget_project(db)
        for project in projects:
            await self._add_project(project)

    async def _forget_project(self, db: str) -> None:
        """A removed project: forget it and its (dropped) database's pool."""
        project = self._projects.pop(db)
        self.registry.forget(project.id)
        self._dirty.discard(db)
        await self.cluster.drop_pool(db)
        log.info("project %s was removed; no longer serving %s", project.id, db)

    async def _watch_hints(self, sub: Subscription) -> None:
        async for event in sub:
            database = event.payload.get("database")
            if event.kind == "resync":  # hints may have been lost: look everywhere
                self._sweep_now.set()
                self.wake()
            elif isinstance(database, str):
                self.wake(database)  # a job was queued there
            else:
                self.wake()  # a slot came free: retry what waits for one

    # -- dispatch ---------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):  # the sweep is the safety net, not this timeout
                async with asyncio.timeout(self.settings.worker_poll_interval_seconds):
                    await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self._fill()
            except _DB_ERRORS:
                log.exception("dispatch failed; retrying shortly")
                await asyncio.sleep(1)
                self.wake()

    async def _fill(self) -> None:
        full: set[str] = set()  # lanes whose cluster-wide slots are all taken
        for db in list(self._dirty):
            if db not in self._projects:  # woken by a start call before the new project's NOTIFY came
                await self._discover_projects()
                if db not in self._projects:
                    self._dirty.discard(db)
                    continue
            pool = await self.cluster.pool(db)
            self._dirty.discard(db)  # before looking: a wake landing meanwhile marks db again
            for lane in self.lanes:
                if lane.kind not in full and await self._fill_lane(db, pool, lane) == "full":
                    full.add(lane.kind)

    async def _fill_lane(self, db: str, pool: asyncpg.Pool, lane: Lane) -> str:
        while sum(1 for r in self.running.values() if r.kind == lane.kind) < lane.limit and not self._stopping:
            if not await queries.has_pending(pool, lane.kind):  # cheap, pooled: no slot taken for nothing
                return "empty"
            slot = await lane.slots.try_acquire()
            if slot is None:
                self._dirty.add(db)
                return "full"  # cluster-wide limit reached; a finishing job wakes us
            task_name = f"job-{next(self._task_numbers)}"
            try:
                row = await queries.claim_next(pool, self.worker_id, task_name, lane.kind)
            except BaseException:
                await slot.release()
                raise
            if row is None:  # another worker was faster, or the refresh must wait for a store phase
                await slot.release()
                if lane.kind == "refresh":  # retried when a job there has stored its files (a hint)
                    self._dirty.add(db)
                return "empty"
            self._dirty.add(db)  # there may be more pending
            self._start_job(db, row, slot, task_name)
        return "busy"

    def _start_job(self, db: str, row: JobRow, slot: Slot, task_name: str) -> None:
        task = asyncio.create_task(self._execute(db, row, slot), name=task_name)  # the row's worker_task_id
        self.running[row.id] = Running(task=task, database=db, kind=row.kind)

    # -- running one job --------------------------------------------------------------------
    async def _execute(self, db: str, row: JobRow, slot: Slot) -> None:
        job_id = row.id
        run = self.running[job_id]
        pool = await self.cluster.pool(db)
        watchers: list[asyncio.Task[None]] = []
        sub: Subscription | None = None
        heartbeat_every = min(
            self.settings.heartbeat_interval_seconds, self.settings.cancellation_check_interval_seconds
        )
        try:
            sub = await self.notifier.subscribe(self.cluster.dsn_for(db), JOBS_CHANNEL, str(job_id), maxsize=8)
            watchers = [
                asyncio.create_task(watch_cancel(sub, pool, job_id, run)),
                asyncio.create_task(heartbeat(pool, job_id, self.worker_id, run, interval=heartbeat_every)),
            ]
            # The table is the truth: a cancel may have landed before we subscribed.
            if await queries.heartbeat(pool, job_id, self.worker_id) != "running":
                run.stop("cancelled")
            job = JobRun(job_id, row, self._projects[db], pool, ThrottledProgress(
                pool, job_id, self.worker_id, run, interval=self.settings.progress_update_interval_seconds,
                on_stored=self.files_stored,
            ))  # fmt: skip
            await run_guarded(
                self.run_job, job, run, self.worker_id, timeout_seconds=self.settings.indexing_job_timeout_seconds
            )
        except asyncio.CancelledError:
            reason = run.stop_reason[0] if run.stop_reason else "shutdown"
            if reason == "cancelled":
                await queries.mark_worker_stopped(pool, job_id, self.worker_id)
                log.info("job %s cancelled; worker stopped", job_id)
                return
            reason = f"Re-queued: worker {self.worker_id} shut down"
            if run.kind == "refresh":
                await refresh.supersede(
                    pool, job_id, self.worker_id, status="cancelled", error_type=None, message=reason,
                    max_paths=self.settings.watch_mass_change_files,
                )  # fmt: skip
            else:
                await queries.requeue(pool, job_id, self.worker_id, reason)
            with contextlib.suppress(*_DB_ERRORS):  # another worker may take it at once (else: the sweep)
                await queries.hint_claimable(await self.cluster.registry_pool(), db)
            raise
        finally:
            for w in watchers:
                w.cancel()
            if sub is not None:
                await sub.close()
            await slot.release()
            self.running.pop(job_id, None)
            self.wake()

    async def files_stored(self, db: str) -> None:
        """A job in `db` has stored its files: a refresh of its repository deferred meanwhile may be claimed."""
        self.wake(db)
        with contextlib.suppress(*_DB_ERRORS):  # other workers too (else: the sweep)
            await queries.hint_claimable(await self.cluster.registry_pool(), db)

    # -- housekeeping -----------------------------------------------------------------------
    async def maintain(self) -> None:
        """Sweep every project now: find pending jobs, rescue dead workers' jobs, expire history."""
        await self._discover_projects()
        for db in list(self._projects):
            if self._stopping:
                return
            try:
                await self._sweep_one(db)
            except asyncpg.InvalidCatalogNameError:  # dropped: the project was removed meanwhile
                await self._discover_projects()
            except _DB_ERRORS as exc:
                log.warning("sweep of %s failed: %r", db, exc)
        self.sweeps += 1

    async def _sweep_one(self, db: str) -> None:
        running_here = {r.kind for r in self.running.values() if r.database == db}
        async with self.cluster.probe(db) as conn:  # one short-lived connection, no pool left behind
            dead = dead_local_workers(await sweeps.running_worker_ids(conn))
            rescued = await sweeps.rescue_stale(
                conn, stale_seconds=self.settings.stale_job_seconds, dead_workers=dead, max_attempts=MAX_ATTEMPTS
            )
            rescued += await refresh.rescue_stale(
                conn, stale_seconds=self.settings.stale_job_seconds, dead_workers=dead,
                max_paths=self.settings.watch_mass_change_files,
            )  # fmt: skip
            for r in rescued:
                log.warning("rescued job %s: %s", r.id, r.progress_message)
            await sweeps.fail_overdue(conn, self.settings.indexing_job_timeout_seconds)
            await sweeps.delete_expired(conn, self.settings.job_status_retention_days)
            # a kind this process runs there is looked at again when that job ends
            pending = [lane.kind for lane in self.lanes if lane.kind not in running_here]
            pending = [kind for kind in pending if await queries.has_pending(conn, kind)]
        if pending:
            self.wake(db)
            # other workers with a free slot may be faster: tell them too
            await queries.hint_claimable(await self.cluster.registry_pool(), db)

    async def _sweep_if_first(self) -> None:
        """Sweep, unless another process is sweeping right now (then it covers us too)."""
        async with self.cluster.probe(database_of(self.cluster.registry_dsn)) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SWEEP_LOCK):
                return
            try:
                await self.maintain()
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SWEEP_LOCK)

    async def _maintenance_loop(self) -> None:
        interval = min(self.settings.worker_poll_interval_seconds, max(1.0, self.settings.stale_job_seconds / 2))
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._sweep_now.wait()
            self._sweep_now.clear()
            try:
                await self._sweep_if_first()
            except _DB_ERRORS:
                log.exception("maintenance failed")


async def _wait_for_runs(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for stopped jobs' tasks, bounded: a task stuck past its cancel must not hang shutdown.

    Its job stays 'running' under this worker's id; `mark_worker_stopped` and the stale-job rescue
    hand it back, as after a crash."""
    done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
    if pending:
        for task in pending:
            task.cancel()
        more, pending = await asyncio.wait(pending, timeout=STOP_CANCEL_SECONDS)
        done |= more
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("job task %s ended with an error", task.get_name(), exc_info=task.exception())
    for task in pending:
        log.error(
            "job task %s did not end within %.0f s of its stop; leaving it behind. Its stack:\n%s",
            task.get_name(), STOP_GRACE_SECONDS + STOP_CANCEL_SECONDS, task_stack(task),
        )  # fmt: skip
