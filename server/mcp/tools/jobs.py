"""Background indexing jobs: start, status, cancel, list, watch, and the `indexing-job://` resource."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import Field

from server.app import App
from server.db.registry import Project
from server.jobs import queries
from server.jobs.errors import JobNotCancellableError
from server.jobs.models import IndexingJobCreate, IndexingJobProgress, IndexingJobStatus, JobRow, parse_job_id
from server.jobs.paths import validate_repo_path
from server.jobs.watch import follow_job
from server.mcp.context import resolve_project
from server.mcp.job_locator import JobLocator
from server.mcp.models import CancelResult, JobList, StartIndexingResult
from server.mcp.params import ForceReindex, JobId, ProjectId, RepoPath

MAX_LISTED = 200

StatusFilter = Annotated[
    IndexingJobStatus | None,
    Field(description="Only jobs in this state (pending, running, completed, failed, cancelled); default: all"),
]
Limit = Annotated[int, Field(ge=1, le=MAX_LISTED, description=f"How many jobs, newest first (1-{MAX_LISTED})")]


def register(mcp: FastMCP, app: App) -> None:
    jobs = JobLocator(app)

    def view(row: JobRow) -> IndexingJobProgress:
        return IndexingJobProgress.from_row(row, include_traceback=app.settings.debug)

    @mcp.tool
    async def start_indexing_background(
        repo_path: RepoPath,
        project_id: ProjectId = None,
        force_reindex: ForceReindex = False,
        ctx: Context | None = None,
    ) -> StartIndexingResult:
        """Queue indexing of a repository and return its job id at once (no indexing happens in this call)."""
        path = validate_repo_path(repo_path, allowed_roots=app.settings.allowed_roots)
        res = await resolve_project(app, ctx, project_id, create=True)
        await app.check_repository_root(res.project, path)  # refused now, not as a failed job later
        job = IndexingJobCreate(
            repo_path=str(path), repo_name=path.name or str(path), project_id=res.project.id,
            force_reindex=force_reindex,
        )  # fmt: skip
        row, created = await app.enqueue(res.project, job)  # hints every worker, wherever it runs
        jobs.remember(row.id, res.project)
        if created:
            message = "Indexing job queued; follow it with watch_indexing or get_indexing_status"
        else:
            message = f"This repository already has an active job ({row.status}); returning it"
            if force_reindex:  # a pending one was upgraded; a running one cannot be
                message += " (it re-reads every file)" if row.force_reindex else " (started without force_reindex)"
        return StartIndexingResult(
            job_id=str(row.id), status=row.status, message=message, project_id=res.project.id,
            database_name=res.project.database_name, coalesced=not created,
        )  # fmt: skip

    @mcp.tool
    async def get_indexing_status(
        job_id: JobId, project_id: ProjectId = None, ctx: Context | None = None
    ) -> IndexingJobProgress:
        """Current state of a background indexing job (the polling fallback to watch_indexing)."""
        _, row = await jobs.find(ctx, parse_job_id(job_id), project_id)
        return view(row)

    @mcp.tool
    async def cancel_indexing_background(
        job_id: JobId, project_id: ProjectId = None, ctx: Context | None = None
    ) -> CancelResult:
        """Cancel a pending or running job; its worker stops within milliseconds."""
        project, row = await jobs.find(ctx, parse_job_id(job_id), project_id)
        pool = await app.pool(project)
        cancelled = await queries.request_cancel(pool, row.id)
        if cancelled is None:
            status = (await queries.get(pool, row.id) or row).status
            raise JobNotCancellableError(
                f"job {row.id} is already {status}; only pending or running jobs can be cancelled"
            )
        return CancelResult(
            job_id=str(cancelled.id),
            status=IndexingJobStatus.CANCELLED,
            message="Cancelled; the worker is told by NOTIFY and stops at once",
        )

    @mcp.tool
    async def list_indexing_jobs(
        project_id: ProjectId = None,
        status: StatusFilter = None,
        limit: Limit = 20,
        ctx: Context | None = None,
    ) -> JobList:
        """Recent jobs of a project, newest first."""
        res = await resolve_project(app, ctx, project_id)
        rows = await queries.list_jobs(await app.pool(res.project), status=status, limit=limit)
        return JobList(project_id=res.project.id, jobs=[view(r) for r in rows])

    @mcp.tool
    async def watch_indexing(job_id: JobId, ctx: Context, project_id: ProjectId = None) -> IndexingJobProgress:
        """Stay open and relay the job's progress as MCP progress notifications until it ends."""
        project, row = await jobs.find(ctx, parse_job_id(job_id), project_id)
        final = await watch_job(app, project, row.id, report=ctx.report_progress)
        return view(final)

    @mcp.resource("indexing-job://{job_id}", mime_type="application/json")
    async def indexing_job_resource(job_id: str) -> str:
        """A background indexing job's current state."""
        _, row = await jobs.find(None, parse_job_id(job_id), None)
        return view(row).model_dump_json()


async def watch_job(
    app: App,
    project: Project,
    job_id: uuid.UUID,
    *,
    report: Callable[[float, float | None, str | None], Awaitable[None]],
) -> JobRow:
    """Relay one job's changes (the hub's shared reads) until it reaches a final state; returns that state."""
    shown_pct, final = 0.0, None
    async for change in follow_job(lambda: app.hub.watch_job(project, job_id)):
        row = final = change.row
        shown_pct = max(shown_pct, float(row.progress_percentage))
        await report(shown_pct, 100.0, f"[{row.status}] {row.progress_message or ''}")
    assert final is not None and final.is_terminal
    return final
