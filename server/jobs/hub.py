"""`JobHub`: per project database one feed that reads each changed job once and fans it out.

A feed holds one listener subscription on JOBS_CHANNEL (every job of its database) and one
reader task. A burst of notifications is coalesced by the listener (newest version per job) and
read in one statement; the client's view and its JSON are built once per row, and the same
`JobChange` is offered to every interested `JobWatch` (that job's, the project's, every
project's) without awaiting anything, so one slow watch holds up no one. After the listener
says notifications may have been lost (reconnect, overflow) and every `resync_seconds`, the feed
re-reads its watched jobs, the active ones and the recently changed ones, in one statement.

Feeds exist while someone watches; the all-projects watches keep one feed per project and
follow the registry's PROJECTS_CHANNEL to add feeds for new projects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from listener import Event, Notifier, Subscription, SubscriptionClosed
from server.db.cluster import Cluster
from server.db.registry import Project, Registry
from server.jobs import queries
from server.jobs.channels import JOBS_CHANNEL, PROJECTS_CHANNEL
from server.jobs.models import IndexingJobProgress, JobRow
from server.jobs.watch import RESUME_MARGIN, Cursor, JobChange, JobWatch, Scope, event_for, missing_job

__all__ = ["HubStats", "JobHub"]

log = logging.getLogger(__name__)

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass
class HubStats:
    feeds_opened: int = 0
    feed_reads: int = 0  # statements run by feeds (one per burst of changes, or per re-read)
    rows_read: int = 0  # rows those statements returned
    watch_reads: int = 0  # rows read by watches themselves (when subscribed, after an overflow)
    changes: int = 0  # JobChanges built (view + JSON) by feeds
    deliveries: int = 0  # changes offered to watches


class _Feed:
    """One project database: its subscription, its reader, and the watches of its jobs and itself."""

    def __init__(self, hub: JobHub, project: Project, pool: asyncpg.Pool, sub: Subscription) -> None:
        self.hub = hub
        self.project = project
        self.pool = pool
        self.sub = sub
        self.jobs: dict[uuid.UUID, set[JobWatch]] = {}
        self.projects: set[JobWatch] = set()
        self.cursor: datetime | None = None  # newest updated_at seen in this database
        self.task = asyncio.create_task(self._run(), name=f"job-feed {project.database_name}")

    def add(self, watch: JobWatch) -> None:
        if watch.scope.job_id is not None:
            self.jobs.setdefault(watch.scope.job_id, set()).add(watch)
        elif watch.scope.project is not None:
            self.projects.add(watch)

    def remove(self, watch: JobWatch) -> None:
        job_id = watch.scope.job_id
        if job_id is not None:
            group = self.jobs.get(job_id)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self.jobs[job_id]
        else:
            self.projects.discard(watch)

    @property
    def idle(self) -> bool:
        return not self.jobs and not self.projects and not self.hub.all_watches

    def _wants(self, job_id: uuid.UUID) -> bool:
        return bool(self.projects or self.hub.all_watches or job_id in self.jobs)

    def saw(self, row: JobRow) -> None:
        if self.cursor is None or row.updated_at > self.cursor:
            self.cursor = row.updated_at

    # -- the reader --------------------------------------------------------------------------
    async def _run(self) -> None:
        reread = False
        while True:
            try:
                if reread:
                    await self._reread()
                    reread = False
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that meets an arriving notification, and close() would wait forever
                    async with asyncio.timeout(self.hub.resync_seconds):
                        first = await self.sub.get()
                except TimeoutError:  # the safety net: the table is the truth
                    reread = True
                    continue
                batch = [first]
                while (more := self.sub.get_nowait()) is not None:
                    batch.append(more)
                if any(e.kind == "resync" for e in batch):
                    reread = True
                    continue
                await self._read(batch)
            except SubscriptionClosed:
                return
            except DB_ERRORS as exc:
                log.warning("job feed of %s: read failed (%r); re-reading shortly", self.project.database_name, exc)
                reread = True
                await asyncio.sleep(0.5)

    async def _read(self, batch: list[Event]) -> None:
        received: dict[uuid.UUID, float] = {}
        for event in batch:
            try:
                job_id = uuid.UUID(str(event.topic))
            except ValueError:
                continue
            if self._wants(job_id):
                received.setdefault(job_id, event.received_at)
        if not received:
            return
        rows = await queries.get_many(self.pool, list(received))
        self.hub.stats.feed_reads += 1
        self.hub.stats.rows_read += len(rows)
        self.fan_out(rows, received)

    async def _reread(self) -> None:
        wide = bool(self.projects or self.hub.all_watches)
        if not self.jobs and not wide:
            return
        since = Cursor.resume_from(self.cursor)
        rows = await queries.watched(
            self.pool, list(self.jobs), wide=wide, since=since, margin_seconds=RESUME_MARGIN.total_seconds()
        )
        self.hub.stats.feed_reads += 1
        self.hub.stats.rows_read += len(rows)
        self.fan_out(rows, {})

    def fan_out(self, rows: list[JobRow], received: dict[uuid.UUID, float]) -> None:
        now = time.monotonic()
        stats = self.hub.stats
        for row in rows:
            self.saw(row)
            change = self.hub.change(self.project, row, received.get(row.id, now))
            event = event_for(change)
            stats.changes += 1
            for group in (self.jobs.get(row.id, ()), self.projects, self.hub.all_watches):
                for watch in group:
                    watch.offer(change, event)
                    stats.deliveries += 1

    async def close(self) -> None:
        await self.sub.close()  # first: the reader ends at its next get() even if a cancel is lost
        self.task.cancel()
        await asyncio.wait([self.task])  # a cancellation of the caller still reaches the caller


class JobHub:
    """Makes watches; keeps one feed per watched project database (see the module docstring)."""

    def __init__(
        self,
        *,
        notifier: Notifier,
        cluster: Cluster,
        registry: Registry,
        include_traceback: bool = False,
        resync_seconds: float = 15.0,
        snapshot_limit: int = 50,
        feed_maxsize: int = 1024,
    ) -> None:
        self.notifier = notifier
        self.cluster = cluster
        self.registry = registry
        self.include_traceback = include_traceback
        self.resync_seconds = resync_seconds
        self.snapshot_limit = snapshot_limit
        self.feed_maxsize = feed_maxsize
        self.stats = HubStats()
        self.all_watches: set[JobWatch] = set()
        self._feeds: dict[str, _Feed] = {}
        self._lock = asyncio.Lock()
        self._projects_sub: Subscription | None = None
        self._projects_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- public ----------------------------------------------------------------------------
    def change(self, project: Project, row: JobRow, received_at: float) -> JobChange:
        """The shared form of one row: the client's view and its JSON, built once."""
        view = IndexingJobProgress.from_row(row, include_traceback=self.include_traceback)
        return JobChange(project, row, view, view.model_dump_json(), received_at)

    async def watch_job(self, project: Project, job_id: uuid.UUID, *, maxsize: int = 8) -> JobWatch:
        """One job; `JobNotFoundError` if it does not exist."""
        return await self._open(Scope(project, job_id), maxsize=maxsize, cursor=None)

    async def watch_project(self, project: Project, *, cursor: datetime | None = None, maxsize: int = 256) -> JobWatch:
        """Every job of one project: first the active and recent ones (or those changed since
        `cursor`, a resumed stream), then each change."""
        return await self._open(Scope(project), maxsize=maxsize, cursor=cursor)

    async def watch_all(self, *, cursor: datetime | None = None, maxsize: int = 1024) -> JobWatch:
        """Every job of every project, new projects included."""
        return await self._open(Scope(), maxsize=maxsize, cursor=cursor)

    def feeds(self) -> list[str]:
        return sorted(self._feeds)

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            watches = [w for f in self._feeds.values() for g in (*f.jobs.values(), f.projects) for w in g]
            for watch in [*watches, *self.all_watches]:
                watch.end()
            self.all_watches.clear()
            for feed in list(self._feeds.values()):
                await feed.close()
            self._feeds.clear()
            await self._stop_projects()

    # -- watches ---------------------------------------------------------------------------
    async def _open(self, scope: Scope, *, maxsize: int, cursor: datetime | None) -> JobWatch:
        if self._closed:
            raise RuntimeError("the job hub is closed")
        watch = JobWatch(scope, maxsize=maxsize, refresh=self._refresh, detach=self._detach, cursor=cursor)
        async with self._lock:
            if scope.project is not None:
                (await self._feed(scope.project)).add(watch)
            else:
                self.all_watches.add(watch)
                await self._follow_projects()
        try:
            await watch.refresh()  # subscribed first, then read: nothing is missed
        except BaseException:
            await watch.close()
            raise
        return watch

    async def _detach(self, watch: JobWatch) -> None:
        async with self._lock:
            if watch.scope.project is not None:
                feed = self._feeds.get(watch.scope.project.database_name)
                if feed is not None:
                    feed.remove(watch)
            else:
                self.all_watches.discard(watch)
                if not self.all_watches:
                    await self._stop_projects()
            for name, feed in list(self._feeds.items()):
                if feed.idle:
                    del self._feeds[name]
                    await feed.close()

    async def _refresh(self, watch: JobWatch, since: datetime | None) -> list[JobChange]:
        scope, now = watch.scope, time.monotonic()
        if scope.job_id is not None:
            assert scope.project is not None
            feed = await self._feed_of(scope.project)
            row = await queries.get(feed.pool, scope.job_id)
            self.stats.watch_reads += 1
            if row is None:
                raise missing_job(scope.job_id)
            feed.saw(row)
            return [self.change(scope.project, row, now)]
        projects = [scope.project] if scope.project is not None else await self.registry.list_projects()
        changes: list[JobChange] = []
        for project in projects:
            feed = await self._feed_of(project)
            rows = await queries.snapshot(feed.pool, since=since, limit=self.snapshot_limit)
            self.stats.watch_reads += len(rows)
            for row in rows:
                feed.saw(row)
            changes += [self.change(project, row, now) for row in rows]
        changes.sort(key=lambda c: c.row.updated_at)
        return changes

    # -- feeds (callers hold self._lock) -----------------------------------------------------
    async def _feed(self, project: Project) -> _Feed:
        feed = self._feeds.get(project.database_name)
        if feed is None:
            pool = await self.cluster.pool(project.database_name)
            dsn = self.cluster.dsn_for(project.database_name)
            sub = await self.notifier.subscribe(dsn, JOBS_CHANNEL, maxsize=self.feed_maxsize)
            feed = self._feeds[project.database_name] = _Feed(self, project, pool, sub)
            self.stats.feeds_opened += 1
        return feed

    async def _feed_of(self, project: Project) -> _Feed:
        feed = self._feeds.get(project.database_name)
        if feed is not None:
            return feed
        async with self._lock:  # an all-projects watch met a project the hub has not seen yet
            return await self._feed(project)

    async def _follow_projects(self) -> None:
        if self._projects_sub is None:
            # subscribed first, then listed: a project created in between is not missed
            self._projects_sub = await self.notifier.subscribe(self.cluster.registry_dsn, PROJECTS_CHANNEL)
            self._projects_task = asyncio.create_task(self._watch_projects(self._projects_sub), name="job-hub projects")
        for project in await self.registry.list_projects():
            await self._feed(project)

    async def _watch_projects(self, sub: Subscription) -> None:
        async for _ in sub:
            try:
                await self._add_new_projects()
            except DB_ERRORS as exc:
                log.warning("job hub: listing projects failed (%r)", exc)

    async def _add_new_projects(self) -> None:
        async with self._lock:
            if not self.all_watches:
                return
            fresh = [p for p in await self.registry.list_projects() if p.database_name not in self._feeds]
            for project in fresh:
                feed = await self._feed(project)
                # its first jobs may have been created before the feed listened: read them
                rows = await queries.snapshot(feed.pool, limit=self.snapshot_limit)
                self.stats.feed_reads += 1
                self.stats.rows_read += len(rows)
                feed.fan_out(rows, {})

    async def _stop_projects(self) -> None:
        sub, task = self._projects_sub, self._projects_task
        self._projects_sub = self._projects_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sub is not None:
            await sub.close()
