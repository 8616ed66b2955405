"""Watch every indexed repository of every project and turn its changes into jobs.

Runs inside `codebase-mcp serve` (unless WATCH_REPOSITORIES=false) and as `codebase-mcp watch`.
Every `WATCH_LEASE_RETRY_SECONDS` the supervisor lists each project's repositories and tries to
take the watch lease (server/watch/lease.py) of those it does not watch yet; the one process that
gets a lease watches that repository (server/watch/repo.py) and enqueues for it:

- a batch of changed paths, filtered by the scanner's own rules, becomes a `refresh` job (merged
  into the repository's pending refresh, if there is one);
- a mass change (more than WATCH_MASS_CHANGE_FILES paths, a moved .git/HEAD, an edited ignore
  file, a recreated root) becomes one normal incremental `index` job; when that repository's index
  job is already running (it may have scanned before the change) a full refresh follows it;
- on taking a lease, one incremental `index` job catches up with what changed while nobody watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from server.db.budget import ConnectionLimitError
from server.db.cluster import Cluster
from server.db.registry import Project, Registry
from server.indexer.scanner import scan_repository
from server.jobs import queries
from server.jobs.models import IndexingJobCreate, IndexingJobStatus
from server.jobs.paths import RepoPathError, confirm_root
from server.jobs.refresh import create_refresh
from server.settings import Settings
from server.watch.changes import ChangeSet, Plan, plan
from server.watch.lease import Key, LeaseLostError, Leases
from server.watch.queries import WatchedRepository, list_repositories
from server.watch.repo import RepositoryWatcher, WatchTiming

log = logging.getLogger(__name__)

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionLimitError, LeaseLostError)
CATCH_UP = Plan("index", reason="watching started: catching up with changes made while unwatched")


@dataclass
class Watched:
    project: Project
    repository: WatchedRepository
    watcher: RepositoryWatcher
    task: asyncio.Task[None] | None = None
    owed: Plan | None = None  # a job that could not be enqueued yet
    submitted: list[Plan] = field(default_factory=list)  # the last few plans, newest last

    @property
    def root(self) -> str:
        return self.repository.root_path

    @property
    def key(self) -> Key:
        return (self.project.database_name, self.repository.root_path)


class WatchService:
    def __init__(
        self,
        *,
        cluster: Cluster,
        registry: Registry,
        settings: Settings,
        wake: Callable[[str], None] | None = None,
        roots: Collection[Path] | None = None,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.settings = settings
        self.wake = wake  # tells this process's worker that a job is waiting in a database
        self.roots = {str(r) for r in roots} if roots is not None else None
        self.timing = WatchTiming(
            debounce_ms=settings.watch_debounce_ms,
            max_batch_ms=settings.watch_max_batch_ms,
            check_seconds=settings.watch_root_check_seconds,
        )
        self.watched: dict[Key, Watched] = {}  # (database, root) -> what we watch
        self.leases = Leases(cluster.registry_dsn, cluster.budget.connect)  # connected while holding any
        self._supervisor: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        # database -> (when listed, its repositories): a pool per project polled every tick would never
        # idle out, so lists are re-read every WATCH_RESCAN_SECONDS on a short-lived connection, or on a kick
        self._listed: dict[str, tuple[float, list[WatchedRepository]]] = {}

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.tick()  # the first leases are taken before start() returns
        self._supervisor = asyncio.create_task(self._supervise(), name="watch-supervisor")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        for key in list(self.watched):
            await self._unwatch(key)
        await self.leases.close()

    def kick(self, database: str | None = None) -> None:
        """Look for new repositories (of `database`, or of every project) and free leases now."""
        if database is None:
            self._listed.clear()
        else:
            self._listed.pop(database, None)
        self._kick.set()

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.watch_lease_retry_seconds):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.tick()
            except _DB_ERRORS:
                log.warning("watch supervisor: database unavailable; retrying", exc_info=True)

    # -- leases and discovery ---------------------------------------------------------------
    async def tick(self) -> None:
        try:
            if self.leases.held:
                await self.leases.probe()  # LeaseLostError when the connection (and its leases) died
        except LeaseLostError:
            await self._drop_all()
        projects = await self.registry.list_projects()
        present = {p.database_name for p in projects}
        for key in [k for k in self.watched if k[0] not in present]:  # a removed project
            await self._unwatch(key)
        for db in [db for db in self._listed if db not in present]:
            del self._listed[db]
        for project in projects:
            try:
                await self._tick(project)
            except LeaseLostError:
                await self._drop_all()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionLimitError) as exc:
                log.warning("watch: project %s unavailable: %s", project.id, exc)
        if not self.leases.held:  # hold no connection for nothing
            await self.leases.close()

    async def _tick(self, project: Project) -> None:
        db = project.database_name
        listed = self._listed.get(db)
        if listed is None or time.monotonic() - listed[0] >= self.settings.watch_rescan_seconds:
            async with self.cluster.probe(db) as conn:
                listed = (time.monotonic(), await list_repositories(conn))
            self._listed[db] = listed
        repositories = listed[1]
        wanted = {r.root_path: r for r in repositories if self.roots is None or r.root_path in self.roots}
        for (key_db, root), w in list(self.watched.items()):
            if key_db == db and root not in wanted:  # repository removed from the project
                await self._unwatch((key_db, root))
            elif key_db == db and w.owed is not None:
                await self._submit(w, w.owed)
        unwatched = [r for root, r in wanted.items() if (db, root) not in self.watched]
        if unwatched:
            taken = await self.leases.taken(await self.cluster.registry_pool(), [(db, r.root_path) for r in unwatched])
            for repository in unwatched:
                if (db, repository.root_path) in taken:
                    continue  # another process watches it
                if not await self._confined(repository.root_path):
                    continue
                if await self.leases.try_acquire((db, repository.root_path)):
                    await self._watch(project, repository)

    async def _confined(self, root: str) -> bool:
        """Watch only a real folder inside ALLOWED_ROOTS, named by its real path (a folder that is
        missing now is looked at again at the next tick; jobs check the same when they start)."""
        try:
            await asyncio.to_thread(confirm_root, Path(root), allowed_roots=self.settings.allowed_roots)
        except RepoPathError as exc:
            log.debug("watch: not watching %s: %s", root, exc)
            return False
        return True

    async def _watch(self, project: Project, repository: WatchedRepository) -> None:
        key = (project.database_name, repository.root_path)

        async def on_changes(changes: ChangeSet) -> None:
            await self._changed(w, changes)

        w = Watched(project, repository, RepositoryWatcher(Path(repository.root_path), on_changes, self.timing))
        self.watched[key] = w
        w.task = asyncio.create_task(w.watcher.run(), name=f"watch-{repository.name}")
        log.info("watching %s (project %s)", repository.root_path, project.id)
        await self._submit(w, CATCH_UP)

    async def _unwatch(self, key: tuple[str, str]) -> None:
        w = self.watched.pop(key, None)
        if w is None:
            return
        if w.task is not None:
            w.task.cancel()
            await asyncio.gather(w.task, return_exceptions=True)
        with contextlib.suppress(*_DB_ERRORS):  # the connection is gone: so is the lease
            await self.leases.release(key)

    async def _drop_all(self) -> None:
        """The lease connection died: this process holds no lease any more, so it watches nothing."""
        for key in list(self.watched):
            await self._unwatch(key)

    # -- changes → jobs -----------------------------------------------------------------------
    async def _changed(self, w: Watched, changes: ChangeSet) -> None:
        ignored: frozenset[str] = frozenset()
        if changes.paths:
            scan = await asyncio.to_thread(
                scan_repository,
                Path(w.root),
                max_file_size=self.settings.max_file_size_bytes,
                paths=changes.paths,
            )
            ignored = scan.ignored_paths
        decided = plan(changes, ignored, self.settings.watch_mass_change_files)
        if decided.action != "none":
            await self._submit(w, decided)

    async def _submit(self, w: Watched, todo: Plan) -> None:
        """Enqueue, after a round trip on the lease connection: only the lease holder does."""
        if w.key not in self.leases.held:
            return  # the lease is gone (and the watch with it): whoever takes it over catches up
        if w.owed is not None:  # an earlier job never made it: the index it became covers this too
            todo = w.owed
        try:
            await self.leases.probe()
            await self._enqueue(await self.cluster.pool(w.project.database_name), w, todo)
        except LeaseLostError:
            await self._drop_all()
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            log.warning("watch: cannot enqueue for %s (%s); retrying at the next tick", w.root, exc)
            w.owed = todo if todo.action == "index" else Plan("index", reason=f"missed: {todo.reason}")
            return
        w.owed = None
        w.submitted = [*w.submitted[-9:], todo]
        db = w.project.database_name
        if self.wake is not None:
            self.wake(db)
        with contextlib.suppress(*_DB_ERRORS):  # workers LISTEN on the registry (if missed: their sweep)
            await queries.hint_claimable(await self.cluster.registry_pool(), db)

    async def _enqueue(self, conn: asyncpg.Pool, w: Watched, todo: Plan) -> None:
        repo = w.repository
        limit = self.settings.watch_mass_change_files
        if todo.action == "refresh":
            await create_refresh(
                conn, repo_path=repo.root_path, repo_name=repo.name, project_id=w.project.id,
                paths=todo.paths, max_paths=limit, message=f"Refresh queued: {todo.reason}",
            )  # fmt: skip
            return
        job = IndexingJobCreate(repo_path=repo.root_path, repo_name=repo.name, project_id=w.project.id)
        row, created = await queries.create(conn, job)
        if not created and row.status == IndexingJobStatus.RUNNING:  # it may have scanned before these changes
            await create_refresh(
                conn, repo_path=repo.root_path, repo_name=repo.name, project_id=w.project.id,
                paths=None, max_paths=limit, message=f"Refresh queued after the running index: {todo.reason}",
            )  # fmt: skip
