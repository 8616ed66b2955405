"""`list_repositories` and `remove_repository`: what a project has indexed, and forgetting one of them."""

from __future__ import annotations

from typing import Annotated

from fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations
from pydantic import Field

from server.app import App
from server.jobs.models import IndexingJobStatus
from server.lifecycle import repositories
from server.lifecycle.repositories import Repository
from server.mcp.context import resolve_project
from server.mcp.models import RemovedRepository, RepositoryInfo, RepositoryList
from server.mcp.params import ProjectId, Text

RepositoryRef = Annotated[
    Text,
    Field(
        description="The repository to remove: its absolute root path, its id, or its name when no other "
        "repository of the project has that name (see list_repositories)"
    ),
]


def _info(repo: Repository) -> RepositoryInfo:
    status = IndexingJobStatus(repo.active_job_status) if repo.active_job_status else None
    return RepositoryInfo(
        repository_id=str(repo.id), name=repo.name, root_path=repo.root_path, files=repo.file_count,
        chunks=repo.chunk_count, unembedded_chunks=repo.unembedded_chunks, created_at=repo.created_at,
        last_indexed_at=repo.last_indexed_at, active_job_id=str(repo.active_job_id) if repo.active_job_id else None,
        active_job_status=status,
    )  # fmt: skip


def register(mcp: FastMCP, app: App) -> None:
    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    async def list_repositories(project_id: ProjectId = None, ctx: Context | None = None) -> RepositoryList:
        """Repositories indexed in the project: root path, files, chunks, chunks still without vectors,
        when each was last indexed and its pending or running job, if any."""
        res = await resolve_project(app, ctx, project_id)
        found = await repositories.list_repositories(await app.pool(res.project))
        return RepositoryList(project_id=res.project.id, repositories=[_info(r) for r in found])

    @mcp.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False))
    async def remove_repository(
        repository: RepositoryRef, project_id: ProjectId = None, ctx: Context | None = None
    ) -> RemovedRepository:
        """Delete a repository from the project: its files, chunks, vectors and full text. Refused while the
        repository has a pending or running job or is being indexed. The folder on disk is not touched."""
        res = await resolve_project(app, ctx, project_id)
        removed = await repositories.remove(await app.pool(res.project), repository)
        return RemovedRepository(
            project_id=res.project.id, repository_id=str(removed.id), name=removed.name,
            root_path=removed.root_path, files_removed=removed.files, chunks_removed=removed.chunks,
            message=f"Removed {removed.root_path} from project {res.project.id}; index it again to search it",
        )  # fmt: skip
