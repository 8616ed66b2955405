"""`index_repository`: index a small repository within the call, with MCP progress (recorded as a job)."""

from __future__ import annotations

from fastmcp import Context, FastMCP

from server.app import App
from server.indexer.pipeline import Progress
from server.jobs.paths import validate_repo_path
from server.lifecycle.repositories import empty_repository_warning
from server.mcp.context import resolve_project
from server.mcp.models import IndexSummary
from server.mcp.params import ForceReindex, ProjectId, RepoPath


def register(mcp: FastMCP, app: App) -> None:
    @mcp.tool
    async def index_repository(
        repo_path: RepoPath,
        project_id: ProjectId = None,
        force_reindex: ForceReindex = False,
        ctx: Context | None = None,
    ) -> IndexSummary:
        """Index a small repository within this call (large ones: start_indexing_background)."""
        path = validate_repo_path(repo_path, allowed_roots=app.settings.allowed_roots)
        res = await resolve_project(app, ctx, project_id, create=True)

        async def relay(p: Progress) -> None:
            if ctx is not None:
                await ctx.report_progress(p.percentage, 100, p.message)

        run = await app.index_recorded(res.project, path, origin="tool", force_reindex=force_reindex, progress=relay)
        result = run.result
        return IndexSummary(
            project_id=res.project.id, job_id=str(run.row.id), repository_id=str(result.repository_id),
            files_scanned=result.files_scanned, files_indexed=result.files_indexed,
            files_unchanged=result.files_unchanged, files_deleted=result.files_deleted,
            files_skipped=result.files_skipped, chunks_created=result.chunks_created,
            chunks_embedded=result.chunks_embedded, total_files=result.total_files,
            total_chunks=result.total_chunks, searchable_seconds=round(result.searchable_seconds, 3),
            duration_seconds=round(result.duration_seconds, 3), notice=empty_repository_warning(path, result),
        )  # fmt: skip
