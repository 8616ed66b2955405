"""`refresh_index`: a deterministic freshness gate for clients.

It queues (or joins: it is merged into a pending one) a refresh of every file of each repository,
which stores whatever changed since the last run (unchanged files cost one stat each), and with
`wait=True` returns once those refreshes have stored and embedded the changes. It does not rely
on a watcher being alive, so after it returns `search_code` sees every file as it is on disk.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import BaseModel, Field

from server.app import App
from server.db.registry import Project
from server.jobs import queries
from server.jobs.errors import JobNotFoundError, RepositoryNotIndexedError
from server.jobs.models import IndexingJobProgress, IndexingJobStatus, JobRow
from server.jobs.paths import validate_repo_path
from server.jobs.refresh import create_refresh, superseded_by
from server.mcp.context import resolve_project
from server.mcp.params import OptionalText, ProjectId
from server.mcp.tools.jobs import watch_job
from server.watch.queries import WatchedRepository, list_repositories


class RefreshedRepository(BaseModel):
    repo_path: str
    job: IndexingJobProgress = Field(description="The refresh job (its final state when the call waited)")
    joined: bool = Field(description="True when an already queued refresh was widened to every file and joined")


class RefreshResult(BaseModel):
    project_id: str
    waited: bool = Field(description="True when the refreshes had finished before the call returned")
    repositories: list[RefreshedRepository]
    message: str


def register(mcp: FastMCP, app: App) -> None:
    def view(row: JobRow) -> IndexingJobProgress:
        return IndexingJobProgress.from_row(row, include_traceback=app.settings.debug)

    @mcp.tool
    async def refresh_index(
        repo_path: Annotated[
            OptionalText,
            Field(
                description="An indexed repository (absolute path on the server's machine); default: every "
                "repository of the project"
            ),
        ] = None,
        wait: Annotated[
            bool, Field(description="Return only once the changes are stored and embedded (default); else at once")
        ] = True,
        project_id: ProjectId = None,
        ctx: Context | None = None,
    ) -> RefreshResult:
        """Make the index catch up with every change on disk: re-check each file of the repository (all
        repositories of the project when none is named) and, with wait=True, return once the changes are
        searchable. Use it after editing files when search_code must see the edits."""
        project = (await resolve_project(app, ctx, project_id)).project
        pool = await app.pool(project)
        chosen = _choose(await list_repositories(pool), repo_path, project.id, app)
        queued: list[tuple[WatchedRepository, JobRow, bool]] = []
        for repo in chosen:
            row, created = await create_refresh(
                pool, repo_path=repo.root_path, repo_name=repo.name, project_id=project.id, paths=None,
                max_paths=app.settings.watch_mass_change_files, message="Refresh of every file (refresh_index)",
            )  # fmt: skip
            queued.append((repo, row, not created))
        await app.wake_workers(project.database_name)
        if wait:
            done = 0

            async def one(job_id: uuid.UUID) -> JobRow:
                nonlocal done
                final = await _wait(app, project, job_id)
                done += 1
                if ctx is not None:
                    await ctx.report_progress(done, len(queued), f"{done}/{len(queued)} repositories refreshed")
                return final

            rows = list(await asyncio.gather(*(one(row.id) for _, row, _ in queued)))
        else:
            rows = [row for _, row, _ in queued]
        jobs = [view(r) for r in rows]
        failed = [j for j in jobs if j.is_terminal and j.status != IndexingJobStatus.COMPLETED]
        finished = all(j.is_terminal for j in jobs)
        if failed:
            message = f"{len(failed)} of {len(jobs)} refreshes did not complete: see their error_message"
        elif finished:
            message = f"{len(jobs)} repositories refreshed; the index holds every change made before this call"
        else:
            message = f"{len(jobs)} refreshes queued; follow them with watch_indexing, or call again with wait=true"
        return RefreshResult(
            project_id=project.id, waited=wait and finished, message=message,
            repositories=[RefreshedRepository(repo_path=r.root_path, job=j, joined=joined)
                          for (r, _, joined), j in zip(queued, jobs, strict=True)],
        )  # fmt: skip


def _choose(
    repositories: list[WatchedRepository], repo_path: str | None, project_id: str, app: App
) -> list[WatchedRepository]:
    if not repositories:
        raise RepositoryNotIndexedError(
            f"project {project_id!r} has no indexed repository yet: index one first with index_repository or "
            "start_indexing_background"
        )
    if repo_path is None:
        return repositories
    root = str(validate_repo_path(repo_path, allowed_roots=app.settings.allowed_roots))
    chosen = [r for r in repositories if r.root_path == root]
    if not chosen:
        known = ", ".join(r.root_path for r in repositories)
        raise RepositoryNotIndexedError(
            f"{root} is not indexed in project {project_id!r} (indexed: {known}); index it with "
            "start_indexing_background first"
        )
    return chosen


async def _wait(app: App, project: Project, job_id: uuid.UUID) -> JobRow:
    """Until the refresh is final, following the refresh queued again in its place when its worker
    stopped (`metadata.superseded_by`)."""

    async def quiet(_done: float, _total: float | None, _message: str | None) -> None:
        return None

    while True:
        row = await watch_job(app, project, job_id, report=quiet)
        successor = superseded_by(row)
        if successor is None:
            return row
        if await queries.get(await app.pool(project), successor) is None:
            raise JobNotFoundError(f"refresh job {successor} (queued again for {job_id}) no longer exists")
        job_id = successor
