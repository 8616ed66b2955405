"""Finding a job by its id, whichever project it belongs to (job ids are globally unique)."""

from __future__ import annotations

import uuid
from contextlib import suppress

from fastmcp import Context

from server.app import App
from server.db.registry import Project, UnknownProjectError
from server.jobs import queries
from server.jobs.errors import JobNotFoundError
from server.jobs.models import JobRow
from server.mcp.context import resolve_project

__all__ = ["JobLocator"]

MAX_REMEMBERED = 10_000


class JobLocator:
    """Looks in the named project; else where the job was last seen, the session's project, then all.

    Jobs never move between projects, so a remembered project saves scanning every database.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._projects: dict[uuid.UUID, Project] = {}

    def remember(self, job_id: uuid.UUID, project: Project) -> None:
        if len(self._projects) >= MAX_REMEMBERED:
            self._projects.pop(next(iter(self._projects)))
        self._projects[job_id] = project

    async def find(self, ctx: Context | None, job_id: uuid.UUID, project_id: str | None) -> tuple[Project, JobRow]:
        """The job and its project, or `JobNotFoundError`."""
        candidates: list[Project] = []
        if project_id is not None:
            candidates = [(await resolve_project(self.app, ctx, project_id)).project]
        else:
            if (known := self._projects.get(job_id)) is not None:
                candidates.append(known)
            with suppress(UnknownProjectError):
                resolved = (await resolve_project(self.app, ctx, None)).project
                if resolved not in candidates:
                    candidates.append(resolved)
        for project in candidates:
            if (row := await queries.get(await self.app.pool(project), job_id)) is not None:
                self.remember(job_id, project)
                return project, row
        if project_id is None:
            for project in await self.app.registry.list_projects():
                if project in candidates:
                    continue
                if (row := await queries.get(await self.app.pool(project), job_id)) is not None:
                    self.remember(job_id, project)
                    return project, row
        where = f"project {project_id!r}" if project_id else "any project"
        raise JobNotFoundError(f"job {job_id} not found in {where}; list_indexing_jobs shows a project's jobs")
