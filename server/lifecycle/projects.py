"""Projects: list them with their repositories, remove one (its database and registry row)."""

from __future__ import annotations

from dataclasses import dataclass

from server.db.cluster import Cluster
from server.db.registry import Project, Registry
from server.errors import UserError
from server.lifecycle import repositories
from server.lifecycle.repositories import ROOT_LOCK_CLASS, Repository


class ProjectBusyError(UserError, RuntimeError):
    """The project has pending or running indexing: it cannot be removed now."""


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    project: Project
    repositories: list[Repository]

    @property
    def files(self) -> int:
        return sum(r.file_count for r in self.repositories)

    @property
    def chunks(self) -> int:
        return sum(r.chunk_count for r in self.repositories)


async def describe(cluster: Cluster, project: Project) -> ProjectInfo:
    pool = await cluster.pool(project.database_name)
    return ProjectInfo(project, await repositories.list_repositories(pool))


async def list_projects(cluster: Cluster, registry: Registry) -> list[ProjectInfo]:
    return [await describe(cluster, p) for p in await registry.list_projects()]


async def _indexing_runs(cluster: Cluster, database: str) -> int:
    """Indexing runs holding a repository lock in `database`, in any process (foreground ones too)."""
    pool = await cluster.registry_pool()
    count: int = await pool.fetchval(
        """
        SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
        WHERE l.locktype = 'advisory' AND l.classid = $2::bigint::oid AND l.objsubid = 2 AND d.datname = $1
        """,
        database,
        ROOT_LOCK_CLASS,
    )
    return count


async def remove(cluster: Cluster, registry: Registry, project_id: str) -> ProjectInfo:
    """Drop the project's database and registry row; refuse while any of its repositories is indexed."""
    project = await registry.require(project_id)
    info = await describe(cluster, project)
    active = await repositories.active_jobs(await cluster.pool(project.database_name))
    if active:
        listed = ", ".join(f"{r['id']} ({r['status']}, {r['repo_path']})" for r in active[:5])
        raise ProjectBusyError(
            f"project {project.id!r} has {len(active)} active indexing job{'s' if len(active) > 1 else ''}: "
            f"{listed}; cancel them (cancel_indexing_background) or let them finish, then remove the project"
        )
    if await _indexing_runs(cluster, project.database_name):
        raise ProjectBusyError(
            f"project {project.id!r} is being indexed right now (a foreground run); wait for it, then remove it"
        )
    await cluster.drop_pool(project.database_name)
    await registry.remove(project.id)
    return info
