"""The FastMCP server: tools and resources over one `App`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from server import __version__
from server.app import App
from server.db.cluster import database_of
from server.db.registry import Project, UnknownProjectError
from server.indexer.pipeline import Progress
from server.jobs import queries
from server.jobs.models import IndexingJobCreate, IndexingJobProgress, IndexingJobStatus
from server.jobs.paths import validate_repo_path
from server.mcp.errors import guard, session_key
from server.mcp.models import (
    CancelResult,
    DatabaseHealth,
    HealthReport,
    IndexSummary,
    JobList,
    StartIndexingResult,
    WorkingDirectoryResult,
)
from server.mcp.search_tool import register_search_tool
from server.projects import Resolved

T = TypeVar("T")
WATCH_RESYNC_SECONDS = 15.0

INSTRUCTIONS = """\
Semantic code search over local repositories. Index a repository once
(start_indexing_background for large ones, then watch_indexing or get_indexing_status),
then use search_code. Call set_working_directory first so the right project is used."""


def _job_uuid(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id.strip())
    except (ValueError, AttributeError) as exc:
        raise ToolError(f"invalid job_id {job_id!r}: expected a UUID like 3f2b8c1e-...") from exc


def build_server(app: App, *, manage_app: bool = True) -> FastMCP:
    """Build the MCP server; with `manage_app` its lifespan starts and closes `app`."""

    @asynccontextmanager
    async def lifespan(_: FastMCP) -> AsyncIterator[dict[str, Any]]:
        if manage_app:
            await app.start()
        try:
            yield {"app": app}
        finally:
            if manage_app:
                await app.close()

    mcp = FastMCP("codebase-mcp", instructions=INSTRUCTIONS, lifespan=lifespan, mask_error_details=True)

    async def resolve(ctx: Context | None, project_id: str | None, *, create: bool = False) -> Resolved:
        return await app.resolver.resolve(project_id, session_key(ctx), create=create)

    async def pool_of(project: Project) -> asyncpg.Pool:
        assert app.cluster is not None
        return await app.cluster.pool(project.database_name)

    # job id → its project: jobs never move, so a hit saves scanning every project
    job_projects: dict[uuid.UUID, Project] = {}

    def remember(job_id: uuid.UUID, project: Project) -> None:
        if len(job_projects) >= 10_000:
            job_projects.pop(next(iter(job_projects)))
        job_projects[job_id] = project

    async def find_job(
        ctx: Context | None, job_id: uuid.UUID, project_id: str | None
    ) -> tuple[Project, asyncpg.Record]:
        """The job in the resolved project, else in any project (job ids are globally unique)."""
        candidates: list[Project] = []
        if project_id is not None:
            candidates = [(await resolve(ctx, project_id)).project]
        elif (known := job_projects.get(job_id)) is not None:
            candidates = [known]
        if project_id is None:
            with suppress(UnknownProjectError):
                resolved = (await resolve(ctx, None)).project
                if resolved not in candidates:
                    candidates.append(resolved)
        for project in candidates:
            row = await queries.get(await pool_of(project), job_id)
            if row is not None:
                remember(job_id, project)
                return project, row
        if project_id is None:
            for project in await app.registry.list_projects():
                if project in candidates:
                    continue
                row = await queries.get(await pool_of(project), job_id)
                if row is not None:
                    remember(job_id, project)
                    return project, row
        where = f"project {project_id!r}" if project_id else "any project"
        raise ToolError(f"job {job_id} not found in {where}")

    # -- service ----------------------------------------------------------------------------
    @mcp.tool
    async def health() -> HealthReport:
        """Check that the database, registry and workers are up."""
        assert app.cluster is not None
        pool = await app.cluster.registry_pool()
        async with pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
            avail = await conn.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        projects = await app.registry.list_projects()
        return HealthReport(
            status="ok",
            version=__version__,
            database=DatabaseHealth(
                mode="external" if app.settings.database_url else "embedded",
                server_version=str(version),
                pgvector_version=avail,
                registry_database=database_of(app.cluster.registry_dsn),
                projects=len(projects),
            ),
            embedder=app.embedder.name,
            embedding_dimension=app.registry.embedding_dim,
            worker_id=app.worker.worker_id if app.worker else None,
            running_jobs=len(app.worker.running) if app.worker else 0,
        )

    @mcp.tool
    async def set_working_directory(
        directory: Annotated[str, Field(description="Absolute path of the directory the client works in")],
        ctx: Context,
    ) -> WorkingDirectoryResult:
        """Tell the server where this session works; its .codebase-mcp/config.json picks the project."""

        async def run() -> WorkingDirectoryResult:
            path = Path(directory)
            if not path.is_absolute():
                raise ToolError(f"directory must be absolute, got {directory!r}")
            key = session_key(ctx) or "process"
            resolved_dir = app.resolver.set_working_directory(key, path, process_wide=app.single_client)
            res = await resolve(ctx, None, create=True)
            return WorkingDirectoryResult(
                directory=str(resolved_dir),
                project_id=res.project.id,
                source=res.source,
                config_path=str(res.config_path) if res.config_path else None,
            )

        return await guard(run())

    # -- background indexing ----------------------------------------------------------------
    @mcp.tool
    async def start_indexing_background(
        repo_path: Annotated[str, Field(description="Absolute path of the repository to index")],
        project_id: Annotated[str | None, Field(description="Project; default: resolved from the session")] = None,
        force_reindex: Annotated[bool, Field(description="Re-chunk and re-embed every file")] = False,
        ctx: Context | None = None,
    ) -> StartIndexingResult:
        """Queue indexing of a repository and return its job id at once (no indexing happens in this call)."""

        async def run() -> StartIndexingResult:
            path = validate_repo_path(repo_path, allowed_roots=app.settings.allowed_roots)
            res = await resolve(ctx, project_id, create=True)
            job = IndexingJobCreate(
                repo_path=str(path), repo_name=path.name, project_id=res.project.id, force_reindex=force_reindex
            )
            row, created = await queries.create(await pool_of(res.project), job)
            remember(row["id"], res.project)
            if app.worker is not None:
                app.worker.wake(res.project.database_name)
            status = IndexingJobStatus(row["status"])
            message = (
                "Indexing job queued; follow it with watch_indexing or get_indexing_status"
                if created
                else f"This repository already has an active job ({status}); returning it"
            )
            return StartIndexingResult(
                job_id=str(row["id"]), status=status, message=message, project_id=res.project.id,
                database_name=res.project.database_name, coalesced=not created,
            )  # fmt: skip

        return await guard(run())

    @mcp.tool
    async def get_indexing_status(
        job_id: Annotated[str, Field(description="Job id returned by start_indexing_background")],
        project_id: str | None = None,
        ctx: Context | None = None,
    ) -> IndexingJobProgress:
        """Current state of a background indexing job (the polling fallback to watch_indexing)."""

        async def run() -> IndexingJobProgress:
            _, row = await find_job(ctx, _job_uuid(job_id), project_id)
            return IndexingJobProgress.from_record(row)

        return await guard(run())

    @mcp.tool
    async def cancel_indexing_background(
        job_id: str, project_id: str | None = None, ctx: Context | None = None
    ) -> CancelResult:
        """Cancel a pending or running job; its worker stops within milliseconds."""

        async def run() -> CancelResult:
            project, row = await find_job(ctx, _job_uuid(job_id), project_id)
            cancelled = await queries.request_cancel(await pool_of(project), row["id"])
            if cancelled is None:
                current = await queries.get(await pool_of(project), row["id"])
                status = current["status"] if current else row["status"]
                raise ToolError(f"job {job_id} is already {status}; only pending or running jobs can be cancelled")
            return CancelResult(
                job_id=str(cancelled["id"]),
                status=IndexingJobStatus.CANCELLED,
                message="Cancelled; the worker is told by NOTIFY and stops at once",
            )

        return await guard(run())

    @mcp.tool
    async def list_indexing_jobs(
        project_id: str | None = None,
        status: IndexingJobStatus | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        ctx: Context | None = None,
    ) -> JobList:
        """Recent jobs of a project, newest first."""

        async def run() -> JobList:
            res = await resolve(ctx, project_id)
            rows = await queries.list_jobs(await pool_of(res.project), status=status, limit=limit)
            return JobList(project_id=res.project.id, jobs=[IndexingJobProgress.from_record(r) for r in rows])

        return await guard(run())

    @mcp.tool
    async def watch_indexing(job_id: str, ctx: Context, project_id: str | None = None) -> IndexingJobProgress:
        """Stay open and relay the job's progress as MCP progress notifications until it ends."""

        async def run() -> IndexingJobProgress:
            project, _ = await find_job(ctx, _job_uuid(job_id), project_id)
            return await watch_job(app, project, _job_uuid(job_id), report=ctx.report_progress)

        return await guard(run())

    @mcp.resource("indexing-job://{job_id}", mime_type="application/json")
    async def indexing_job_resource(job_id: str) -> str:
        """A background indexing job's current state."""
        _, row = await find_job(None, _job_uuid(job_id), None)
        return IndexingJobProgress.from_record(row).model_dump_json()

    # -- foreground indexing ----------------------------------------------------------------
    @mcp.tool
    async def index_repository(
        repo_path: str,
        project_id: str | None = None,
        force_reindex: bool = False,
        ctx: Context | None = None,
    ) -> IndexSummary:
        """Index a small repository within this call (large ones: start_indexing_background)."""

        async def run() -> IndexSummary:
            path = validate_repo_path(repo_path, allowed_roots=app.settings.allowed_roots)
            res = await resolve(ctx, project_id, create=True)

            async def relay(p: Progress) -> None:
                if ctx is not None:
                    await ctx.report_progress(p.percentage, 100, p.message)

            result = await app.index(res.project, path, force_reindex=force_reindex, progress=relay)
            return IndexSummary(
                project_id=res.project.id, repository_id=str(result.repository_id),
                files_scanned=result.files_scanned, files_indexed=result.files_indexed,
                files_unchanged=result.files_unchanged, files_deleted=result.files_deleted,
                files_skipped=result.files_skipped, chunks_created=result.chunks_created,
                chunks_embedded=result.chunks_embedded, total_files=result.total_files,
                total_chunks=result.total_chunks, searchable_seconds=round(result.searchable_seconds, 3),
                duration_seconds=round(result.duration_seconds, 3),
            )  # fmt: skip

        return await guard(run())

    register_search_tool(mcp, app)
    return mcp


async def watch_job(
    app: App,
    project: Project,
    job_id: uuid.UUID,
    *,
    report: Callable[[float, float | None, str | None], Awaitable[None]],
) -> IndexingJobProgress:
    """Relay one job's changes (pushed by NOTIFY) until it reaches a final state."""
    assert app.cluster is not None
    pool = await app.cluster.pool(project.database_name)
    sub = await app.notifier.subscribe(app.cluster.dsn_for(project.database_name), "indexing_jobs", str(job_id))
    try:
        shown_version, shown_pct = -1, 0.0
        while True:
            row = await queries.get(pool, job_id)  # subscribed first, then read: nothing is missed
            if row is None:
                raise ToolError(f"job {job_id} no longer exists")
            job = IndexingJobProgress.from_record(row)
            if job.version > shown_version:
                shown_version = job.version
                shown_pct = max(shown_pct, float(job.progress_percentage))
                await report(shown_pct, 100.0, f"[{job.status}] {job.progress_message}")
            if job.is_terminal:
                return job
            with contextlib.suppress(TimeoutError):  # re-read anyway: the table is the truth
                await asyncio.wait_for(sub.get(), WATCH_RESYNC_SECONDS)
    finally:
        await sub.close()
