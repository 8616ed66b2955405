"""The running service: database, registry, projects, embedder, listener and workers.

Shared by the MCP server, the CLI and standalone workers, so each entry point is
a thin layer over the same objects.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from listener import Notifier
from server.db.cluster import CONNECT_ERRORS, Cluster, DatabaseUnavailableError, unavailable
from server.db.embedded import EmbeddedPostgresError
from server.db.keeper import EmbeddedKeeper
from server.db.locks import ContentLocks
from server.db.registry import Project, Registry
from server.embeddings import Embedder, EmbeddingError, StaticEmbedder, create_embedder
from server.embeddings.local import replaced_embedders
from server.embeddings.query_adapter import QueryAdapter, adapter_for
from server.indexer.pipeline import IndexResult, ProgressCallback, index_repository
from server.jobs import queries
from server.jobs.hub import JobHub
from server.jobs.inline import InlineJob, Origin, Timing, run_inline
from server.jobs.models import IndexingJobCreate, JobRow
from server.jobs.paths import RepoPathError, confirm_root
from server.jobs.refresh import RepositoryMissingError
from server.jobs.running import JobRun
from server.jobs.worker import Worker
from server.lifecycle import repositories
from server.projects import ProjectResolver
from server.settings import Settings
from server.watch.service import WatchService

log = logging.getLogger(__name__)


async def _listen_connection(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"application_name": "codebase-mcp-listener"})


class AppNotStartedError(RuntimeError):
    """A part of the `App` was used before `App.start()` (a programming error, not a user error)."""

    def __init__(self, part: str) -> None:
        super().__init__(f"App.{part} is not available before App.start()")


def _dsn_source(settings: Settings) -> str:
    source = "DATABASE_URL" if settings.database_url else "embedded"
    return source + (" / REGISTRY_DATABASE_URL" if settings.registry_database_url else "")


async def open_cluster(settings: Settings) -> Cluster:
    """The configured PostgreSQL (the embedded one is started if need be), or DatabaseUnavailableError."""
    try:
        return await asyncio.to_thread(Cluster.from_settings, settings)
    except EmbeddedPostgresError as exc:
        raise DatabaseUnavailableError(f"the embedded PostgreSQL did not start: {exc}") from exc


async def check_database(settings: Settings) -> None:
    """One connection to the configured server, or one clear DatabaseUnavailableError (pre-flight)."""
    cluster = await open_cluster(settings)
    try:
        conn = await asyncpg.connect(cluster.server_dsn, timeout=30)
    except CONNECT_ERRORS as exc:
        raise unavailable(cluster.server_dsn, exc, source=_dsn_source(settings)) from exc
    await conn.close()


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.InterfaceError):
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise


class App:
    def __init__(self, settings: Settings, *, single_client: bool = False, embedder: Embedder | None = None) -> None:
        self.settings = settings
        # stdio serves exactly one client: its working directory is the process's
        self.single_client = single_client
        self._owns_embedder = embedder is None
        self.embedder: Embedder = embedder or create_embedder(
            settings.embedding_provider,
            model=settings.embedding_model,
            base_url=settings.embedding_base_url,
            api_key=settings.embedding_api_key,
            batch_size=settings.embedding_batch_size,
            max_length=settings.embedding_max_length,
            threads=settings.embedding_threads,
            dimension=settings.embedding_dimension,
            models_dir=settings.models_dir,
            max_concurrency=settings.embedding_max_concurrency,
        )
        self._cluster: Cluster | None = None
        # The static vector tier (None: chunks get transformer vectors only).
        self.static_embedder: StaticEmbedder | None = StaticEmbedder() if settings.static_tier else None
        self._registry: Registry | None = None
        self._resolver: ProjectResolver | None = None
        self.notifier = Notifier(connect=_listen_connection)
        self.worker: Worker | None = None
        self.keeper: EmbeddedKeeper | None = None
        self.watcher: WatchService | None = None
        self.content_locks = ContentLocks()
        self._hub: JobHub | None = None

    @functools.cached_property
    def query_adapter(self) -> QueryAdapter | None:
        """Applied to code-seeking transformer query vectors only (server/embeddings/query_adapter.py)."""
        return adapter_for(self.embedder.name, self.settings.query_adapter)

    @property
    def cluster(self) -> Cluster:
        """The PostgreSQL server and its pools; raises `AppNotStartedError` before `start()`."""
        if self._cluster is None:
            raise AppNotStartedError("cluster")
        return self._cluster

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise AppNotStartedError("registry")
        return self._registry

    @property
    def resolver(self) -> ProjectResolver:
        if self._resolver is None:
            raise AppNotStartedError("resolver")
        return self._resolver

    @property
    def hub(self) -> JobHub:
        """Watches of jobs (MCP watch_indexing, SSE): each change read once, fanned out from memory."""
        if self._hub is None:
            raise AppNotStartedError("hub")
        return self._hub

    async def pool(self, project: Project) -> asyncpg.Pool:
        """The connection pool of a project's database."""
        return await self.cluster.pool(project.database_name)

    async def start(self, *, workers: bool | None = None, watch: bool = False) -> None:
        self._cluster = await open_cluster(self.settings)  # may start PostgreSQL
        cluster = self._cluster

        async def listen_connection(dsn: str) -> asyncpg.Connection:  # within the process's budget
            return await cluster.connect_dsn(dsn, application_name="codebase-mcp-listener")

        self.notifier = Notifier(connect=listen_connection)  # a fresh one: start() may follow close()
        self.content_locks = ContentLocks(
            connect=lambda dsn: cluster.connect_dsn(dsn, application_name="codebase-mcp-content-lock")
        )
        if cluster.embedded is not None:  # `db stop` sees us; a stopped server is started again
            self.keeper = EmbeddedKeeper(cluster.embedded, on_restart=cluster.expire_connections)
            self.keeper.start()
        dimension = await self._embedding_dimension()
        self._registry = Registry(
            cluster, embedder_name=self.embedder.name, embedding_dim=dimension,
            max_projects=self.settings.max_projects, replaces=replaced_embedders(self.embedder.name),
        )  # fmt: skip
        try:
            await self._registry.ensure_ready()
        except CONNECT_ERRORS as exc:
            raise unavailable(cluster.server_dsn, exc, source=_dsn_source(self.settings)) from exc
        self._hub = JobHub(
            notifier=self.notifier, cluster=self._cluster, registry=self._registry,
            include_traceback=self.settings.debug,
        )  # fmt: skip
        self._resolver = ProjectResolver(
            self._registry,
            default_project=self.settings.default_project,
            auto_create=self.settings.auto_create_projects,
            allowed_roots=self.settings.allowed_roots,
        )
        if workers if workers is not None else self.settings.run_workers_in_server:
            await self.start_worker()
        if watch:
            await self.start_watching()

    async def _embedding_dimension(self) -> int:
        try:
            return self.embedder.dimension
        except EmbeddingError:
            await self.embedder.load()  # a remote provider: one probe call tells the dimension
            return self.embedder.dimension

    async def start_worker(self) -> Worker:
        self.worker = Worker(
            cluster=self.cluster,
            registry=self.registry,
            notifier=self.notifier,
            settings=self.settings,
            run_job=self.run_job,
        )
        await self.worker.start()
        return self.worker

    async def start_watching(self, roots: Sequence[Path] | None = None) -> WatchService:
        """Watch the indexed repositories (all of them, or those at `roots`) and enqueue their changes."""
        worker = self.worker
        self.watcher = WatchService(
            cluster=self.cluster,
            registry=self.registry,
            settings=self.settings,
            wake=worker.wake if worker is not None else None,
            roots=roots,
        )
        await self.watcher.start()
        return self.watcher

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
            self.watcher = None
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        await self.notifier.close()
        await self.content_locks.close()
        if self.keeper is not None:
            await self.keeper.close()
            self.keeper = None
        if self._cluster is not None:
            await self._cluster.close()
        if self._owns_embedder:
            await self.embedder.aclose()

    async def check_repository_root(self, project: Project, repo_path: Path) -> None:
        """Refuse a root inside or around an indexed repository of the project (OverlappingRepositoryError)."""
        pool = await self.pool(project)
        await repositories.check_no_overlap(pool, repo_path.resolve(), project.id)

    async def index(
        self,
        project: Project,
        repo_path: Path,
        *,
        name: str | None = None,
        force_reindex: bool = False,
        progress: ProgressCallback | None = None,
        paths: Sequence[str] | None = None,
        embed_stored_only: bool = False,
    ) -> IndexResult:
        """Index in the foreground (CLI, the `index_repository` tool, and every job).

        `paths` restricts the run to those files (a refresh); `embed_stored_only` embeds only
        the chunks this run stored. Runs of one repository never read and store files at the same
        time: each holds the repository's content lock meanwhile (server/db/locks.py).

        The path is confined again here, when the work starts, whenever it was validated
        (`confirm_root`), and once more at the end: a root swapped for a symlink fails the run.
        """
        roots = self.settings.allowed_roots
        repo_path = await asyncio.to_thread(confirm_root, repo_path, allowed_roots=roots)
        await self.registry.check_embedder(project)
        pool = await self.pool(project)
        await self.check_repository_root(project, repo_path)
        root = str(repo_path)  # confirmed: its own real path
        dsn = self.cluster.dsn_for(project.database_name)
        lock = await self.cluster.connect(project.database_name)  # its lock ends with the connection
        try:
            await repositories.hold_indexing_lock(lock, repo_path)
            result = await index_repository(
                repo_path,
                name or repo_path.name,
                pool,
                self.embedder,
                force_reindex=force_reindex,
                progress_callback=progress,
                max_file_size=self.settings.max_file_size_bytes,
                static_tier=self.static_embedder is not None,
                max_repo_bytes=int(self.settings.max_repo_size_gb * 1e9),
                paths=paths,
                content_lock=lambda: self.content_locks.hold(dsn, root),
                embed_stored_only=embed_stored_only,
            )
        finally:
            await _close_quietly(lock)
        if self.watcher is not None:  # a repository new to the project is watched at once
            self.watcher.kick(project.database_name)
        try:
            await asyncio.to_thread(confirm_root, repo_path, allowed_roots=roots)
        except RepoPathError as exc:
            raise RepoPathError(
                f"{exc} (it changed while it was being indexed; files reached through the new path were not read)"
            ) from None
        return result

    async def enqueue(self, project: Project, job: IndexingJobCreate) -> tuple[JobRow, bool]:
        """Queue a job (or return the repository's active one, `created` False) and tell the workers.

        Workers LISTEN on the registry only: the hint goes there, and to this process's worker.
        """
        row, created = await queries.create(await self.pool(project), job)
        if created:
            await self.wake_workers(project.database_name)
        return row, created

    async def wake_workers(self, database: str) -> None:
        """Tell every worker (on the registry's channel) and this process's one that `database` has a job."""
        await queries.hint_claimable(await self.cluster.registry_pool(), database)
        if self.worker is not None:
            self.worker.wake(database)

    async def index_recorded(
        self,
        project: Project,
        repo_path: Path,
        *,
        origin: Origin,
        name: str | None = None,
        force_reindex: bool = False,
        progress: ProgressCallback | None = None,
    ) -> InlineJob:
        """Index in this process, recorded as a job every watcher sees (`server/jobs/inline.py`).

        A root that overlaps an indexed repository is refused before anything is recorded."""
        await self.check_repository_root(project, repo_path)
        job = IndexingJobCreate(
            repo_path=str(repo_path), repo_name=name or repo_path.name or str(repo_path), project_id=project.id,
            force_reindex=force_reindex,
        )  # fmt: skip
        timing = Timing(
            progress_interval=self.settings.progress_update_interval_seconds,
            heartbeat_interval=min(
                self.settings.heartbeat_interval_seconds, self.settings.cancellation_check_interval_seconds
            ),
        )

        async def index(report: ProgressCallback) -> IndexResult:
            return await self.index(project, repo_path, name=name, force_reindex=force_reindex, progress=report)

        return await run_inline(
            self.hub, await self.pool(project), project, job, index, origin=origin, timing=timing, progress=progress
        )

    async def run_job(self, run: JobRun) -> IndexResult:
        row = run.row
        paths: list[str] | None = None
        if row.kind == "refresh":
            if not Path(row.repo_path).is_dir():  # removed, or not mounted: keep its index as it is
                raise RepositoryMissingError(
                    f"repository folder {row.repo_path} is missing; its index is kept as it was. The watcher "
                    "re-indexes it once the folder is back (or call refresh_index then)"
                )
            paths = None if row.metadata.get("full") else [str(p) for p in row.metadata.get("paths") or []]
        return await self.index(
            run.project,
            Path(row.repo_path),
            name=row.repo_name,
            force_reindex=row.force_reindex,
            progress=run.report,
            paths=paths,
            embed_stored_only=row.kind == "refresh",
        )
