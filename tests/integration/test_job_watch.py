"""The one watch primitive (`JobHub`) on the real database: shared reads, scopes, overflow, resync."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from listener import Event
from server.app import App
from server.db.registry import Project
from server.embeddings import Embedder
from server.indexer.progress import Progress
from server.jobs import queries
from server.jobs.channels import JOBS_CHANNEL
from server.jobs.errors import JobNotFoundError
from server.jobs.models import IndexingJobCreate, JobRow
from server.jobs.watch import JobChange, JobWatch, follow_job
from tests.fakes import FakeEmbedder

WORKER = "test-host:1:watch"


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # the subject is jobs, not embedding


async def _project(app: App) -> tuple[Project, asyncpg.Pool]:
    project = await app.registry.get_or_create(f"w-{uuid.uuid4().hex[:10]}")
    return project, await app.pool(project)


async def _job(pool: asyncpg.Pool, project: Project, tmp_path: Path, name: str = "repo") -> JobRow:
    repo = tmp_path / name
    repo.mkdir(exist_ok=True)
    row, created = await queries.create(
        pool, IndexingJobCreate(repo_path=str(repo), repo_name=name, project_id=project.id)
    )
    assert created
    return row


async def _run(pool: asyncpg.Pool) -> JobRow:
    row = await queries.claim_next(pool, WORKER, "job-1")
    assert row is not None
    return row


async def _progress(pool: asyncpg.Pool, job_id: uuid.UUID, pct: int) -> None:
    assert await queries.update_progress(pool, job_id, WORKER, Progress(pct, f"at {pct}%", "storing"))


async def _next(watch: JobWatch, within: float = 5.0) -> JobChange:
    return await asyncio.wait_for(watch.get(), within)


async def _until(watch: JobWatch, job_id: uuid.UUID, status: str, within: float = 5.0) -> JobChange:
    deadline = time.monotonic() + within
    while True:
        change = await _next(watch, max(0.01, deadline - time.monotonic()))
        if change.row.id == job_id and change.row.status == status:
            return change


async def test_many_watches_of_one_job_share_one_read_per_change(quiet_app: App, tmp_path: Path) -> None:
    hub = quiet_app.hub
    project, pool = await _project(quiet_app)
    job = await _job(pool, project, tmp_path)
    watches = [await hub.watch_job(project, job.id) for _ in range(50)]
    assert hub.stats.watch_reads == 50  # each read the row once, when subscribed
    assert hub.feeds() == [project.database_name]  # one feed for all of them

    await _run(pool)
    for pct in (10, 40, 70):
        await _progress(pool, job.id, pct)
        for w in watches:  # everyone sees each version in turn (nobody lags, nothing coalesces)
            while (await _next(w)).row.progress_percentage < pct:
                pass
    final = await queries.complete(
        pool, job.id, WORKER, repository_id=uuid.uuid4(), message="done", files_scanned=1, files_indexed=1,
        chunks_created=1, metadata={},
    )  # fmt: skip
    assert final is not None
    seen = [await _until(w, job.id, "completed") for w in watches]

    # One shared change object: the row was read, viewed and serialised once for all 50.
    assert len({id(c) for c in seen}) == 1 and seen[0].row.version == final.version
    assert '"status":"completed"' in seen[0].data
    # claim + 3 progress writes + completion = 5 changes, each read once (bursts may merge them)
    assert 1 <= hub.stats.rows_read <= 5, hub.stats
    assert hub.stats.changes == hub.stats.rows_read
    assert hub.stats.deliveries == 50 * hub.stats.changes
    for w in watches:
        await w.close()
    assert hub.feeds() == []  # the last watch gone, the feed and its LISTEN go too


async def test_a_project_watch_sees_jobs_created_after_it_opened(quiet_app: App, tmp_path: Path) -> None:
    project, pool = await _project(quiet_app)
    older = await _job(pool, project, tmp_path, "older")
    async with await quiet_app.hub.watch_project(project) as watch:
        first = watch.get_nowait()  # the snapshot: the job that already existed
        assert first is not None and first.row.id == older.id
        assert watch.get_nowait() is None
        newer = await _job(pool, project, tmp_path, "newer")
        created = await _next(watch)
        assert created.row.id == newer.id and created.row.status == "pending"
        assert created.project == project
        await queries.request_cancel(pool, newer.id)
        assert (await _until(watch, newer.id, "cancelled")).row.cancelled_at is not None


async def test_an_all_projects_watch_follows_projects_created_after_it(quiet_app: App, tmp_path: Path) -> None:
    async with await quiet_app.hub.watch_all() as watch:
        project, pool = await _project(quiet_app)  # a new database, announced by the registry's NOTIFY
        job = await _job(pool, project, tmp_path)
        change = await _until(watch, job.id, "pending", within=10)
        assert change.project.id == project.id
        await _run(pool)
        assert (await _until(watch, job.id, "running")).row.worker_id == WORKER


async def test_an_overflowing_watch_re_reads_and_loses_nothing(quiet_app: App, tmp_path: Path) -> None:
    project, pool = await _project(quiet_app)
    async with await quiet_app.hub.watch_project(project, maxsize=2) as watch:
        assert watch.get_nowait() is None and watch.refreshes == 1
        jobs = [await _job(pool, project, tmp_path, f"r{i}") for i in range(6)]
        deadline = time.monotonic() + 5
        while not watch.queue.dropped:  # nobody reads: six jobs overflow a queue of two
            assert time.monotonic() < deadline, "the queue never overflowed"
            await asyncio.sleep(0.02)
        got: dict[uuid.UUID, str] = {}
        while len(got) < 6:
            change = await _next(watch)
            assert change.row.id not in got  # each version once
            got[change.row.id] = change.row.status
        assert got == {j.id: "pending" for j in jobs}
        assert watch.refreshes == 2  # subscribed, then once after the overflow
        assert watch.get_nowait() is None


async def test_after_the_listen_connection_dies_the_feed_re_reads(quiet_app: App, tmp_path: Path) -> None:
    project, pool = await _project(quiet_app)
    job = await _job(pool, project, tmp_path)
    await _run(pool)
    async with await quiet_app.hub.watch_job(project, job.id) as watch:
        assert (await _next(watch)).row.status == "running"
        dsn = quiet_app.cluster.dsn_for(project.database_name)
        pid = quiet_app.notifier.backend_pid(dsn)
        assert pid is not None
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        await _progress(pool, job.id, 55)  # its NOTIFY may well be lost with the connection
        change = await _next(watch, within=15)
        while change.row.progress_percentage < 55:
            change = await _next(watch, within=15)
        assert change.row.progress_message == "at 55%"


async def test_follow_job_ends_with_the_final_state_and_refuses_unknown_jobs(quiet_app: App, tmp_path: Path) -> None:
    project, pool = await _project(quiet_app)
    job = await _job(pool, project, tmp_path)
    hub = quiet_app.hub

    async def collect() -> list[JobChange]:
        return [c async for c in follow_job(lambda: hub.watch_job(project, job.id))]

    follower = asyncio.create_task(collect())
    await asyncio.sleep(0.2)
    await _run(pool)
    await _progress(pool, job.id, 30)
    await queries.request_cancel(pool, job.id)
    changes = await asyncio.wait_for(follower, 10)
    versions = [c.row.version for c in changes]
    assert versions == sorted(set(versions)) and changes[-1].row.status == "cancelled"
    assert changes[0].row.status == "pending"

    # a resumed follower gets only what is newer than it had: here nothing, the job is over
    resumed = [c async for c in follow_job(lambda: hub.watch_job(project, job.id), after_version=versions[-1])]
    assert resumed == []
    with pytest.raises(JobNotFoundError, match="no longer exists"):
        await hub.watch_job(project, uuid.uuid4())
    assert hub.feeds() == []


async def test_a_pushing_watch_gets_what_was_queued_then_each_change_and_is_told_when_the_hub_stops(
    quiet_app: App, tmp_path: Path
) -> None:
    hub = quiet_app.hub
    project, pool = await _project(quiet_app)
    job = await _job(pool, project, tmp_path)
    watch = await hub.watch_project(project)
    got: list[tuple[uuid.UUID, int]] = []
    ended: list[bool] = []
    assert watch.push_to(lambda c: got.append((c.row.id, c.row.version)), on_end=lambda: ended.append(True)) == 1
    assert got == [(job.id, job.version)]  # the state read when subscribed, handed over at once

    running = await _run(pool)
    await _progress(pool, job.id, 30)
    deadline = time.monotonic() + 5
    while not got or got[-1][1] <= running.version:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.02)
    versions = [v for _, v in got]
    assert versions == sorted(set(versions))  # in order, none twice
    assert watch.pending() == 0  # nothing queued: changes were pushed

    await hub.close()
    assert ended == [True] and watch.closed is False
    await watch.close()


async def test_closing_the_last_watch_as_a_notification_arrives_never_blocks_the_hub(
    quiet_app: App, tmp_path: Path
) -> None:
    """The feed's reader is woken by a notification and cancelled in the same loop step (the
    moment the last stream of a finished job closes): closing must not wait for it forever."""
    hub = quiet_app.hub
    project, pool = await _project(quiet_app)
    job = await _job(pool, project, tmp_path)
    watch = await hub.watch_job(project, job.id)
    await asyncio.sleep(0.05)  # the reader waits for a notification
    feed = hub._feeds[project.database_name]
    event = Event(JOBS_CHANNEL, str(job.id), {"id": str(job.id)}, "notify", time.monotonic())
    async with asyncio.timeout(5) as deadline:  # not wait_for: it would run close() in a task, a step later
        feed.sub.queue.put(event, str(job.id))  # wakes the reader ...
        await watch.close()  # ... which the last watch's close cancels in the same step
    assert not deadline.expired(), "closing waited for the feed's reader until it was cancelled itself"
    assert feed.task.done()
    assert hub.feeds() == []
    again = await asyncio.wait_for(hub.watch_job(project, job.id), 5)  # the hub is not stuck
    await again.close()
