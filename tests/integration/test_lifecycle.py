"""Repository and project lifecycle on the real database: overlap rules, listing, removal."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.db.registry import Project
from server.jobs import queries
from server.jobs.models import IndexingJobCreate
from server.lifecycle import projects as project_lifecycle
from server.lifecycle import repositories
from server.lifecycle.projects import ProjectBusyError
from server.lifecycle.repositories import OverlappingRepositoryError, RepositoryBusyError, RepositoryNotFoundError
from tests.repos import make_python_repo


async def _project(app: App, project_id: str) -> Project:
    return (await app.resolver.resolve(project_id, None, create=True)).project


async def _pool(app: App, project: Project) -> asyncpg.Pool:
    return await app.pool(project)


async def test_a_sub_folder_or_a_parent_of_an_indexed_repository_is_refused(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "src" / "app", 3)
    await app.index(project, repo)

    with pytest.raises(OverlappingRepositoryError) as inside:
        await app.index(project, repo / "pkg")
    message = str(inside.value)
    assert f"is inside repository 'app' ({repo})" in message and project_id in message
    assert f"Re-index {repo} instead" in message and "path_glob 'pkg/**'" in message
    assert f"codebase-mcp repos remove {repo}" in message

    with pytest.raises(OverlappingRepositoryError) as around:
        await app.index(project, tmp_path / "src")
    assert f"contains repository 'app' ({repo})" in str(around.value) and "Remove it first" in str(around.value)

    listed = await repositories.list_repositories(await _pool(app, project))
    assert [r.root_path for r in listed] == [str(repo)]  # nothing was created by the refused runs


async def test_same_root_sibling_with_common_prefix_and_other_projects_are_fine(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "app", 2)
    sibling = make_python_repo(tmp_path / "app2", 2)  # "/…/app2" starts with "/…/app" but is not inside it
    await app.index(project, repo)
    again = await app.index(project, repo)
    assert again.files_unchanged == 3
    await app.index(project, sibling)
    other = await _project(app, f"{project_id}-other")
    await app.index(other, repo / "pkg")  # another project is another set of repositories
    names = sorted(r.root_path for r in await repositories.list_repositories(await _pool(app, project)))
    assert names == [str(repo), str(sibling)]


async def test_list_then_remove_deletes_files_chunks_and_vectors_of_that_repository_only(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project = await _project(app, project_id)
    keep = make_python_repo(tmp_path / "keep", 2, prefix="keep")
    gone = make_python_repo(tmp_path / "gone", 3, prefix="gone")
    await app.index(project, keep)
    await app.index(project, gone)
    pool = await _pool(app, project)
    listed = {r.name: r for r in await repositories.list_repositories(pool)}
    assert set(listed) == {"keep", "gone"}
    assert listed["gone"].file_count == 4 and listed["gone"].chunk_count > 0
    assert listed["gone"].unembedded_chunks == 0 and listed["gone"].last_indexed_at is not None
    assert listed["gone"].active_job_id is None
    gone_id = listed["gone"].id

    removed = await repositories.remove(pool, str(gone))
    assert (removed.id, removed.files, removed.chunks) == (gone_id, 4, listed["gone"].chunk_count)
    for table in ("files", "chunks"):
        left = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE repository_id = $1", gone_id)
        assert left == 0, table
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") == listed["keep"].chunk_count
    assert [r.name for r in await repositories.list_repositories(pool)] == ["keep"]
    await app.index(project, tmp_path / "gone")  # the same root can be indexed again
    assert len(await repositories.list_repositories(pool)) == 2


async def test_find_by_id_path_or_name_with_clear_errors(app: App, tmp_path: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    first = make_python_repo(tmp_path / "a" / "tool", 1)
    second = make_python_repo(tmp_path / "b" / "tool", 1)
    await app.index(project, first)
    await app.index(project, second)
    pool = await _pool(app, project)
    by_path = await repositories.find(pool, str(first) + "/")
    assert by_path.root_path == str(first)
    assert (await repositories.find(pool, str(by_path.id))).root_path == str(first)
    with pytest.raises(RepositoryNotFoundError, match="2 repositories are named 'tool'") as ambiguous:
        await repositories.find(pool, "tool")
    assert str(first) in str(ambiguous.value) and str(second) in str(ambiguous.value)
    with pytest.raises(RepositoryNotFoundError, match=r"no repository 'nope' in this project; its repositories: tool"):
        await repositories.find(pool, "nope")


async def test_remove_is_refused_while_a_job_is_active_or_a_run_holds_the_root(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 2)
    await app.index(project, repo)
    pool = await _pool(app, project)
    assert app.worker is not None
    await app.worker.stop()  # the job stays pending
    app.worker = None
    job, _ = await queries.create(pool, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project.id))
    with pytest.raises(RepositoryBusyError, match=f"active indexing job {job.id} \\(pending\\)"):
        await repositories.remove(pool, "repo")
    listed = await repositories.list_repositories(pool)
    assert listed[0].active_job_id == job.id and listed[0].active_job_status == "pending"
    await queries.request_cancel(pool, job.id)

    holder = await app.cluster.connect(project.database_name)  # what every indexing run holds
    try:
        await repositories.hold_indexing_lock(holder, repo)
        with pytest.raises(RepositoryBusyError, match="is being indexed right now"):
            await repositories.remove(pool, "repo")
    finally:
        await holder.close()
    removed = await repositories.remove(pool, "repo")
    assert removed.root_path == str(repo)


async def test_a_foreground_run_holds_the_root_until_it_ends(app: App, tmp_path: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 2)
    await app.index(project, repo)
    pool = await _pool(app, project)
    gate, reached = asyncio.Event(), asyncio.Event()

    async def pause(progress: object) -> None:
        reached.set()
        await gate.wait()

    run = asyncio.create_task(app.index(project, repo, force_reindex=True, progress=pause))
    await asyncio.wait_for(reached.wait(), 30)
    with pytest.raises(RepositoryBusyError, match="is being indexed right now"):
        await repositories.remove(pool, str(repo))
    gate.set()
    await run
    assert (await repositories.remove(pool, str(repo))).name == "repo"


async def test_remove_project_drops_its_database_and_the_worker_forgets_it(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project = await _project(app, project_id)
    await app.index(project, make_python_repo(tmp_path / "repo", 2))
    cluster = app.cluster
    assert app.worker is not None

    async def served() -> bool:
        assert app.worker is not None
        return project.database_name in app.worker.databases

    for _ in range(100):
        if await served():
            break
        await asyncio.sleep(0.05)
    assert await served()

    info = await project_lifecycle.remove(cluster, app.registry, project.id)
    assert info.project.id == project.id and len(info.repositories) == 1 and info.files == 3
    probe = await asyncpg.connect(cluster.server_dsn)
    try:
        exists = await probe.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", project.database_name)
    finally:
        await probe.close()
    assert exists == 0
    assert await app.registry.get(project.id) is None
    assert project.id not in [p.id for p in await app.registry.list_projects()]
    for _ in range(100):  # told by NOTIFY on codebase_projects
        if not await served():
            break
        await asyncio.sleep(0.05)
    assert not await served()

    again = await _project(app, project.id)  # the id can be used again: a fresh, empty database
    assert again.database_name == project.database_name
    assert (await project_lifecycle.describe(cluster, again)).repositories == []


async def test_remove_project_is_refused_while_it_has_an_active_job(app: App, tmp_path: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 1)
    assert app.worker is not None
    await app.worker.stop()
    app.worker = None
    pool = await _pool(app, project)
    job, _ = await queries.create(pool, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project.id))
    with pytest.raises(ProjectBusyError, match=f"1 active indexing job: {job.id} \\(pending, {repo}\\)"):
        await project_lifecycle.remove(app.cluster, app.registry, project.id)
    assert await app.registry.get(project.id) is not None
    assert await pool.fetchval("SELECT count(*) FROM indexing_jobs") == 1


async def test_unknown_project_cannot_be_removed(app: App) -> None:
    with pytest.raises(LookupError, match="unknown project"):
        await project_lifecycle.remove(app.cluster, app.registry, f"never-{uuid.uuid4().hex[:6]}")
