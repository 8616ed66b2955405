"""Refresh jobs on the real database: merging, restricted runs, the content lock, their own lane."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.db.locks import ContentLocks
from server.db.registry import Project
from server.embeddings import Embedder
from server.jobs import queries, refresh
from server.jobs.models import IndexingJobCreate, IndexingJobProgress, JobRow
from server.jobs.refresh import create_refresh, pending_changes
from server.jobs.worker import Worker
from server.settings import Settings
from tests.fakes import FakeEmbedder
from tests.polling import wait_for
from tests.repos import make_python_repo, write_files


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # the subject is jobs and runs, not embedding


async def _project(app: App, project_id: str) -> tuple[Project, asyncpg.Pool]:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    assert app.cluster is not None
    if app.worker is not None:
        await app.worker._add_project(project)  # the registry NOTIFY does this too; don't wait for it
    return project, await app.cluster.pool(project.database_name)


async def _refresh(pool: asyncpg.Pool, repo: Path, paths: list[str] | None, limit: int = 5) -> tuple[uuid.UUID, bool]:
    row, created = await create_refresh(
        pool, repo_path=str(repo), repo_name=repo.name, project_id="p", paths=paths, max_paths=limit
    )
    return row.id, created


async def _meta(pool: asyncpg.Pool, job_id: uuid.UUID) -> IndexingJobProgress:
    row = await queries.get(pool, job_id)
    assert row is not None
    return IndexingJobProgress.from_row(row)


async def _files(pool: asyncpg.Pool) -> dict[str, bool]:
    return {r["rel_path"]: r["is_deleted"] for r in await pool.fetch("SELECT rel_path, is_deleted FROM files")}


async def _contents(pool: asyncpg.Pool, rel_path: str, root: Path | None = None) -> str:
    rows = await pool.fetch(
        """
        SELECT c.content FROM chunks c JOIN files f ON f.id = c.file_id JOIN repositories r ON r.id = f.repository_id
        WHERE f.rel_path = $1 AND ($2::text IS NULL OR r.root_path = $2) ORDER BY c.start_line
        """,
        rel_path,
        str(root.resolve()) if root else None,
    )
    return "\n".join(r["content"] for r in rows)


async def _finished(pool: asyncpg.Pool, job_id: uuid.UUID) -> JobRow | None:
    row = await queries.get(pool, job_id)
    assert row is not None
    return row if row.is_terminal else None


async def _wait(pool: asyncpg.Pool, job_id: uuid.UUID, within: float = 120) -> JobRow:
    return await wait_for(lambda: _finished(pool, job_id), within=within, what=f"job {job_id} finished")


async def test_a_refresh_merges_into_the_pending_one_and_widens_past_the_limit(
    app: App, tmp_path: Path, project_id: str
) -> None:
    assert app.worker is not None
    await app.worker.stop()  # nobody claims: the jobs stay pending
    app.worker = None
    _, pool = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 1)

    first, created = await _refresh(pool, repo, ["b.py", "a.py"])
    again, created_again = await _refresh(pool, repo, ["c.py", "a.py"])
    assert created and not created_again and again == first
    job = await _meta(pool, first)
    assert (job.kind, job.paths, job.paths_total) == ("refresh", ["a.py", "b.py", "c.py"], 3)

    # an index job of the same repository is not in the way, nor is the refresh in its way
    index_row, index_created = await queries.create(
        pool, IndexingJobCreate(repo_path=str(repo), repo_name="r", project_id="p")
    )
    assert index_created and index_row.kind == "index"

    await _refresh(pool, repo, ["d.py", "e.py", "f.py"])  # 6 paths > limit 5: every file instead
    job = await _meta(pool, first)
    assert (job.paths, job.paths_total) == (None, 0)
    meta = await pool.fetchval("SELECT metadata->>'full' FROM indexing_jobs WHERE id = $1", first)
    assert meta == "true"
    await _refresh(pool, repo, ["g.py"])  # a full refresh absorbs paths
    assert (await _meta(pool, first)).paths is None

    pending = await pending_changes(pool, [str(repo)])
    assert set(pending.jobs) == {str(first), str(index_row.id)}
    assert pending.whole_repositories == {str(repo)}

    # once the pending refresh runs, a new change queues a new one behind it
    await pool.execute("UPDATE indexing_jobs SET status = 'running', worker_id = 'w' WHERE id = $1", first)
    behind, created = await _refresh(pool, repo, ["h.py"])
    assert created and behind != first
    assert (await _meta(pool, behind)).paths == ["h.py"]


async def test_a_refresh_whose_worker_died_is_queued_again_not_lost(app: App, tmp_path: Path, project_id: str) -> None:
    assert app.worker is not None
    _, pool = await _project(app, project_id)
    await app.worker.stop()  # nothing claims meanwhile; a worker that never starts sweeps by hand
    app.worker = None
    worker = Worker(
        cluster=app.cluster, registry=app.registry, notifier=app.notifier, settings=app.settings, run_job=app.run_job
    )
    repo = make_python_repo(tmp_path / "repo", 1)
    lost, _ = await _refresh(pool, repo, ["a.py"])
    await pool.execute(
        "UPDATE indexing_jobs SET status = 'running', worker_id = 'elsewhere:1:x', started_at = now(), "
        "heartbeat_at = now() - interval '1 hour' WHERE id = $1",
        lost,
    )
    behind, _ = await _refresh(pool, repo, ["b.py"])  # pending while the lost one "runs"
    await worker.maintain()  # the pending one makes putting the lost one back to pending impossible

    lost_row = await queries.get(pool, lost)
    assert lost_row is not None
    assert (lost_row.status, lost_row.error_type) == ("failed", "WorkerLost")
    assert refresh.superseded_by(lost_row) == behind
    assert (await _meta(pool, behind)).paths == ["a.py", "b.py"]  # its changes are not lost


async def test_a_restricted_run_reindexes_and_deletes_only_the_named_paths(
    app: App, tmp_path: Path, project_id: str
) -> None:
    project, pool = await _project(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 4)
    doomed = "def in_a_folder_that_goes():\n    return 0\n"
    write_files(repo, {".gitignore": "generated/\n", "old_dir/a.py": doomed, "old_dir/sub/b.py": doomed})
    await app.index(project, repo)
    before = await _files(pool)
    old_format = 1
    await pool.execute("UPDATE repositories SET index_format = $1", old_format)  # an older format elsewhere

    (repo / "pkg" / "mod_0000.py").write_text("def brand_new_identifier():\n    return 1\n")
    (repo / "pkg" / "mod_0001.py").unlink()
    (repo / "pkg" / "mod_0002.py").rename(repo / "pkg" / "renamed.py")
    (repo / "pkg" / "mod_0003.py").write_text("def changed_but_not_named():\n    return 2\n")
    (repo / "generated").mkdir()
    (repo / "generated" / "out.py").write_text("def ignored_output():\n    return 3\n")
    shutil.rmtree(repo / "old_dir")  # a folder removed (or moved away): one event, for the folder
    (repo / "newpkg").mkdir()
    (repo / "newpkg" / "inner.py").write_text("def inside_a_new_folder():\n    return 4\n")

    named = [
        "pkg/mod_0000.py", "pkg/mod_0001.py", "pkg/mod_0002.py", "pkg/renamed.py", "generated/out.py", "newpkg",
        "old_dir",
    ]  # fmt: skip
    result = await app.index(project, repo, paths=named, embed_stored_only=True)

    files = await _files(pool)
    assert files["pkg/mod_0001.py"] and files["pkg/mod_0002.py"]  # gone: marked deleted
    assert files["old_dir/a.py"] and files["old_dir/sub/b.py"]  # so is everything in a folder gone
    assert not files["pkg/renamed.py"] and not files["newpkg/inner.py"]
    assert "generated/out.py" not in files  # ignored
    assert "brand_new_identifier" in await _contents(pool, "pkg/mod_0000.py")
    assert "changed_but_not_named" not in await _contents(pool, "pkg/mod_0003.py")  # not named: untouched
    assert set(result.stored_paths) == {"pkg/mod_0000.py", "pkg/renamed.py", "newpkg/inner.py"}
    assert (result.files_indexed, result.files_deleted) == (3, 4)
    gone = {"pkg/mod_0001.py", "pkg/mod_0002.py", "old_dir/a.py", "old_dir/sub/b.py"}
    assert set(before) - gone <= {p for p, deleted in files.items() if not deleted}
    # the named files are embedded, and the repository keeps the format the others are in
    unembedded = await pool.fetchval(
        "SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.rel_path = ANY($1) "
        "AND c.embedding IS NULL",
        result.stored_paths,
    )
    assert unembedded == 0 and result.chunks_embedded > 0
    assert await pool.fetchval("SELECT index_format FROM repositories") == old_format


async def test_the_content_lock_serialises_runs_of_one_repository(pg_server: object, app: App, project_id: str) -> None:
    project, _ = await _project(app, project_id)
    assert app.cluster is not None
    dsn = app.cluster.dsn_for(project.database_name)
    locks = ContentLocks()
    order: list[str] = []
    held = asyncio.Event()

    async def first() -> None:
        async with locks.hold(dsn, "/srv/a"):
            order.append("first in")
            held.set()
            await asyncio.sleep(0.5)
            order.append("first out")

    async def second(root: str) -> None:
        await held.wait()
        async with locks.hold(dsn, root):
            order.append(f"{root} in")

    try:
        await asyncio.gather(first(), second("/srv/a"), second("/srv/b"))
    finally:
        await locks.close()
    assert order.index("/srv/b in") < order.index("first out")  # another repository does not wait
    assert order.index("/srv/a in") > order.index("first out")  # the same one does


@pytest.fixture
async def one_slot_app(settings: Settings) -> AsyncIterator[App]:
    """One index slot and one refresh slot in the whole cluster (the test's registry has its own), and
    an embedder slow enough that the big job's vector fill outlasts the refreshes."""
    slow = FakeEmbedder(seconds_per_call=0.25)
    lanes = settings.model_copy(update={"max_concurrent_indexing_jobs": 1, "max_concurrent_refresh_jobs": 1})
    application = App(lanes, embedder=slow)
    await application.start()
    yield application
    await application.close()
    await slow.aclose()


async def test_refreshes_neither_wait_for_a_long_index_job_nor_corrupt_it(
    one_slot_app: App, tmp_path: Path, project_id: str
) -> None:
    app = one_slot_app
    project, pool = await _project(app, project_id)
    small = make_python_repo(tmp_path / "small", 2)
    await app.index(project, small)
    big = make_python_repo(tmp_path / "big", 600)
    big_job, _ = await queries.create(pool, IndexingJobCreate(repo_path=str(big), repo_name="big", project_id="p"))
    assert app.worker is not None
    app.worker.wake(project.database_name)

    async def storing() -> bool:
        return (await _meta(pool, big_job.id)).phase in ("scanning", "storing")

    await wait_for(storing, within=120, interval=0.02, what="the big job storing files")

    # while the big job stores files: a refresh of another repository runs at once (its own slot),
    (small / "pkg" / "mod_0000.py").write_text("def small_repo_edit():\n    return 1\n")
    small_refresh, _ = await _refresh(pool, small, ["pkg/mod_0000.py"])
    # and a refresh of the big repository waits for the big job to have stored its files
    (big / "pkg" / "mod_0007.py").write_text("def edited_during_the_first_index():\n    return 7\n")
    big_refresh, _ = await _refresh(pool, big, ["pkg/mod_0007.py"])
    app.worker.wake(project.database_name)

    claimed_during: list[JobRow] = []  # the big job as read just after the refresh was claimed

    async def big_refresh_done() -> JobRow | None:
        # the refresh first: a phase read after its claim is at least the phase at the claim
        refresh_row = await queries.get(pool, big_refresh)
        index_row = await queries.get(pool, big_job.id)
        assert index_row is not None and refresh_row is not None
        if refresh_row.status != "pending" and not claimed_during:
            claimed_during.append(index_row)
        return refresh_row if refresh_row.is_terminal else None

    refresh_row = await wait_for(big_refresh_done, within=300, interval=0.02, what="the big repository's refresh")
    small_done = await _wait(pool, small_refresh)
    big_now = await queries.get(pool, big_job.id)
    assert big_now is not None
    index_row = claimed_during[0]
    phase_when_claimed = index_row.phase

    assert small_done.status == "completed" and refresh_row.status == "completed"
    assert phase_when_claimed in ("embedding", "finalizing", "done") or index_row.status == "completed"
    # neither refresh waited for the big job's vector fill (nor for its slot)
    assert big_now.status == "running" and big_now.phase == "embedding"
    await queries.request_cancel(pool, big_job.id)
    assert "edited_during_the_first_index" in await _contents(pool, "pkg/mod_0007.py", big)
    assert "small_repo_edit" in await _contents(pool, "pkg/mod_0000.py", small)
