"""Worker rules on the real database: rescue, retention, guarded transitions, missed NOTIFY.

The subject is the worker, not embedding: the app embeds with the instant token-hash fake, which a test
pauses to keep a job running for as long as it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.embeddings import Embedder
from server.indexer.pipeline import IndexResult
from server.indexer.progress import Progress
from server.jobs import queries
from server.jobs import worker as worker_module
from server.jobs.models import JOB_COLUMNS, IndexingJobCreate, IndexingJobProgress, JobRow
from server.jobs.running import JobRun
from server.settings import Settings
from server.stacks import task_stack
from tests.fakes import FakeEmbedder
from tests.polling import wait_for
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder


async def _pool(app: App, project_id: str) -> asyncpg.Pool:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    assert app.worker is not None
    await app.worker._add_project(project)  # the registry NOTIFY does this too; don't wait for it
    return await app.cluster.pool(project.database_name)


async def _wait_status(pool: asyncpg.Pool, job_id: uuid.UUID, status: str, within: float = 30) -> JobRow:
    seen: list[JobRow] = []

    async def reached() -> JobRow | None:
        row = await queries.get(pool, job_id)
        assert row is not None
        seen.append(row)
        return row if row.status == status else None

    return await wait_for(
        reached, within=within, what=lambda: f"{status!r} (still {seen[-1].status}: {seen[-1].progress_message})"
    )


async def _running_task(app: App, job_id: uuid.UUID) -> asyncio.Task[None]:
    """The worker's task of a job the table already shows as running (the claim commits a moment
    before the worker, back from its claim, records the task)."""
    assert app.worker is not None
    running = app.worker.running
    return (await wait_for(lambda: running.get(job_id), within=5, interval=0.01, what="the claimed job's task")).task


async def _task_ended(app: App, job_id: uuid.UUID) -> None:
    assert app.worker is not None
    running = app.worker.running
    run = running.get(job_id)

    def stuck() -> str:
        where = task_stack(run.task) if run is not None else "(no task)"
        return f"job {job_id}'s task to end; it waits at:\n{where}"

    await wait_for(lambda: job_id not in running, within=5, interval=0.02, what=stuck)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _insert_running(pool: asyncpg.Pool, repo: Path, project_id: str, worker_id: str, **cols: object) -> uuid.UUID:
    job_id: uuid.UUID = await pool.fetchval(
        """
        INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status, worker_id, started_at,
                                   heartbeat_at, attempts)
        VALUES ($1, 'r', $2, 'running', $3, now(), now() - make_interval(secs => $4), $5)
        RETURNING id
        """,
        str(repo),
        project_id,
        worker_id,
        float(cols.get("heartbeat_age", 0.0)),  # type: ignore[arg-type]
        int(cols.get("attempts", 1)),  # type: ignore[call-overload]
    )
    return job_id


async def test_job_of_a_dead_local_worker_is_requeued_and_completed(app: App, tmp_path: Path, project_id: str) -> None:
    pool = await _pool(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 2)
    dead = f"{socket.gethostname()}:{_dead_pid()}:abc123"
    job_id = await _insert_running(pool, repo, project_id, dead)
    assert app.worker is not None
    await app.worker.maintain()
    row = await _wait_status(pool, job_id, "completed")
    assert row.attempts == 2 and row.worker_id == app.worker.worker_id
    assert row.files_indexed == 3


async def test_stale_heartbeat_is_rescued_and_max_attempts_fail(app: App, tmp_path: Path, project_id: str) -> None:
    pool = await _pool(app, project_id)
    stale = await _insert_running(
        pool, make_python_repo(tmp_path / "a", 1), project_id, "elsewhere:1:x", heartbeat_age=3600
    )
    spent = await _insert_running(
        pool, make_python_repo(tmp_path / "b", 1), project_id, "elsewhere:2:y", heartbeat_age=3600, attempts=3
    )
    fresh = await _insert_running(pool, make_python_repo(tmp_path / "c", 1), project_id, "elsewhere:3:z")
    assert app.worker is not None
    await app.worker.maintain()
    failed = await queries.get(pool, spent)
    assert failed is not None and failed.status == "failed" and failed.error_type == "WorkerLost"
    assert failed.error_message is not None and "elsewhere:2:y" in failed.error_message
    assert (await _wait_status(pool, stale, "completed")).attempts == 2
    untouched = await queries.get(pool, fresh)
    assert untouched is not None and untouched.status == "running"  # its worker may be alive elsewhere


async def test_retention_deletes_only_old_finished_jobs(app: App, project_id: str, tmp_path: Path) -> None:
    pool = await _pool(app, project_id)
    old, recent = [
        await pool.fetchval(
            """INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status, completed_at)
               VALUES ($1, 'r', $2, 'completed', now() - make_interval(days => $3)) RETURNING id""",
            f"/tmp/{name}",
            project_id,
            age,
        )
        for name, age in [("old", 30), ("recent", 1)]
    ]
    assert app.worker is not None
    await app.worker.maintain()
    assert await queries.get(pool, old) is None
    assert await queries.get(pool, recent) is not None


async def test_late_completion_cannot_overwrite_cancelled(app: App, project_id: str, tmp_path: Path) -> None:
    pool = await _pool(app, project_id)
    job_id = await _insert_running(pool, tmp_path, project_id, "w:1:a")
    assert await queries.request_cancel(pool, job_id) is not None
    late = await queries.complete(
        pool, job_id, "w:1:a", repository_id=uuid.uuid4(), message="done", files_scanned=1, files_indexed=1,
        chunks_created=1, metadata={},
    )  # fmt: skip
    assert late is None
    assert not await queries.update_progress(pool, job_id, "w:1:a", Progress(50, "x", "storing"))
    row = await queries.get(pool, job_id)
    assert row is not None and row.status == "cancelled"


async def test_progress_never_goes_backwards(app: App, project_id: str, tmp_path: Path) -> None:
    pool = await _pool(app, project_id)
    job_id = await _insert_running(pool, tmp_path, project_id, "w:1:b")
    for pct in (40, 20, 60):
        progress = Progress(pct, f"{pct}", "embedding", static_coverage=1.0, transformer_coverage=pct / 100,
                            eta_seconds=12.5, searchable_at=1_700_000_000.0)  # fmt: skip
        await queries.update_progress(pool, job_id, "w:1:b", progress)
    row = await queries.get(pool, job_id)
    assert row is not None and row.progress_percentage == 60
    view = IndexingJobProgress.from_row(row)
    assert (view.phase, view.static_coverage, view.transformer_coverage, view.eta_seconds) == (
        "embedding",
        1.0,
        0.6,
        12.5,
    )
    assert view.searchable_at is not None and view.searchable_at.timestamp() == 1_700_000_000.0
    assert view.semantic_at is None


async def test_missed_notify_still_cancels_through_the_heartbeat(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    pool = await _pool(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 3)
    fake_embedder.pause()  # the job keeps running until something stops it
    project = (await app.resolver.resolve(project_id, None)).project
    row, _ = await app.enqueue(project, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project_id))
    await _wait_status(pool, row.id, "running")
    assert app.worker is not None
    task = await _running_task(app, row.id)
    async with pool.acquire() as conn, conn.transaction():
        # the cancel lands without any NOTIFY: only the heartbeat fallback can see it
        await conn.execute("ALTER TABLE indexing_jobs DISABLE TRIGGER indexing_jobs_notify_update")
        await conn.execute("UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1", row.id)
        await conn.execute("ALTER TABLE indexing_jobs ENABLE TRIGGER indexing_jobs_notify_update")
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.shield(task), app.settings.cancellation_check_interval_seconds + 2)
    assert time.monotonic() - t0 <= app.settings.cancellation_check_interval_seconds + 1
    assert row.id not in app.worker.running
    final = await queries.get(pool, row.id)
    assert final is not None and final.status == "cancelled"


async def test_back_to_back_jobs_start_by_notify_not_by_poll(
    settings: Settings, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    # Neither the safety-net sweep nor a rescue may be what starts jobs here: only the enqueue hint.
    quiet = settings.model_copy(update={"worker_poll_interval_seconds": 120, "stale_job_seconds": 240})
    app = App(quiet, embedder=fake_embedder)
    await app.start()
    try:
        await _back_to_back(app, fake_embedder, tmp_path, project_id)
    finally:
        await app.close()


async def _back_to_back(app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str) -> None:
    pool = await _pool(app, project_id)
    project = (await app.resolver.resolve(project_id, None)).project
    assert app.worker is not None
    sweeps = app.worker.sweeps
    repo = make_python_repo(tmp_path / "repo", 3)
    fake_embedder.pause()  # every job runs until its cancel
    for _ in range(4):
        row, created = await app.enqueue(
            project, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project_id)
        )
        assert created
        await _wait_status(pool, row.id, "running", within=5)
        assert await queries.request_cancel(pool, row.id) is not None
        await _wait_status(pool, row.id, "cancelled", within=5)
        await _task_ended(app, row.id)
    assert app.worker.sweeps == sweeps  # no sweep ran meanwhile: the hints did it all


async def test_claim_records_the_backend_pid_and_the_task_name(app: App, tmp_path: Path, project_id: str) -> None:
    pool = await _pool(app, project_id)
    assert app.worker is not None
    await app.worker.stop()  # claim by hand, on a connection of our own
    app.worker = None
    project = await app.registry.require(project_id)
    job, _ = await queries.create(
        pool, IndexingJobCreate(repo_path=str(tmp_path), repo_name="r", project_id=project_id)
    )
    assert (job.worker_task_id, job.connection_id, job.worker_id) == (None, None, None)
    conn = await asyncpg.connect(app.cluster.dsn_for(project.database_name))
    try:
        claimed = await queries.claim_next(conn, "w:1:claim", "job-7")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await conn.close()
    assert claimed is not None and claimed.id == job.id
    assert (claimed.worker_id, claimed.worker_task_id, claimed.connection_id) == ("w:1:claim", "job-7", str(pid))
    requeued = await queries.requeue(pool, job.id, "w:1:claim", "shutdown")
    assert requeued is not None and requeued.status == "pending"
    assert (requeued.worker_id, requeued.worker_task_id, requeued.connection_id) == (None, None, None)


async def test_running_job_names_its_task_and_its_connection(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    pool = await _pool(app, project_id)
    project = await app.registry.require(project_id)
    repo = make_python_repo(tmp_path / "repo", 3)
    fake_embedder.pause()  # the job is still running when the test cancels it
    job, _ = await app.enqueue(project, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project_id))
    row = await _wait_status(pool, job.id, "running")
    assert app.worker is not None
    assert row.worker_id == app.worker.worker_id
    assert row.worker_task_id == (await _running_task(app, row.id)).get_name()
    assert row.connection_id is not None and row.connection_id.isdigit()
    backend = await pool.fetchrow(
        "SELECT datname, application_name FROM pg_stat_activity WHERE pid = $1", int(row.connection_id)
    )
    assert backend is not None  # a live connection of this worker's pool, on the project's database
    assert (backend["datname"], backend["application_name"]) == (project.database_name, "codebase-mcp")
    assert await queries.request_cancel(pool, row.id) is not None


async def test_graceful_stop_gives_running_jobs_back_to_the_queue(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    pool = await _pool(app, project_id)
    repo = make_python_repo(tmp_path / "repo", 3)
    fake_embedder.pause()  # the job is still running when the worker stops
    project = await app.registry.require(project_id)
    job, _ = await app.enqueue(project, IndexingJobCreate(repo_path=str(repo), repo_name="repo", project_id=project_id))
    await _wait_status(pool, job.id, "running")
    assert app.worker is not None
    worker_id = app.worker.worker_id
    await app.worker.stop()
    app.worker = None
    row = await queries.get(pool, job.id)
    assert row is not None and row.status == "pending"
    assert (row.worker_id, row.worker_task_id, row.connection_id, row.heartbeat_at) == (None, None, None, None)
    assert row.progress_message == f"Re-queued: worker {worker_id} shut down"
    assert row.metadata.get("requeued") == row.progress_message


async def test_stop_is_bounded_when_a_job_ignores_its_cancel(
    app: App, tmp_path: Path, project_id: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker_module, "STOP_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(worker_module, "STOP_CANCEL_SECONDS", 0.3)
    pool = await _pool(app, project_id)
    released, entered = asyncio.Event(), asyncio.Event()

    async def stubborn_job(job: JobRun) -> IndexResult:
        entered.set()
        while not released.is_set():  # swallows every cancel until released
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()
        raise asyncio.CancelledError

    assert app.worker is not None
    app.worker.run_job = stubborn_job
    project = await app.registry.require(project_id)
    create = IndexingJobCreate(repo_path=str(tmp_path), repo_name="r", project_id=project_id)
    job, _ = await app.enqueue(project, create)
    await _wait_status(pool, job.id, "running")
    task = await _running_task(app, job.id)
    await asyncio.wait_for(entered.wait(), 15)
    worker = app.worker
    app.worker = None
    with caplog.at_level(logging.ERROR, logger="server.jobs.worker"):
        await asyncio.wait_for(worker.stop(), 15)  # without the bound: forever
    assert not task.done()
    logged = [r.getMessage() for r in caplog.records if "did not end" in r.getMessage()]
    assert len(logged) == 1 and task.get_name() in logged[0] and "in stubborn_job" in logged[0]
    row = await queries.get(pool, job.id)
    assert row is not None and row.status == "running" and row.worker_id == worker.worker_id  # for the rescue
    released.set()
    await asyncio.gather(task, return_exceptions=True)


async def test_job_row_has_every_column_of_the_table(app: App, project_id: str) -> None:
    pool = await _pool(app, project_id)
    columns = await pool.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'indexing_jobs'")
    assert set(JOB_COLUMNS) == {c["column_name"] for c in columns}


async def test_a_forced_request_upgrades_the_pending_run_it_coalesces_with(
    app: App, tmp_path: Path, project_id: str
) -> None:
    pool = await _pool(app, project_id)
    assert app.worker is not None
    await app.worker.stop()  # nothing claims: the first job stays pending
    app.worker = None
    plain = IndexingJobCreate(repo_path=str(tmp_path), repo_name="r", project_id=project_id)
    queued, created = await queries.create(pool, plain)
    assert created and not queued.force_reindex
    again, created = await queries.create(pool, plain)
    assert (again.id, created, again.force_reindex) == (queued.id, False, False)
    forced, created = await queries.create(pool, plain.model_copy(update={"force_reindex": True}))
    assert (forced.id, created, forced.force_reindex) == (queued.id, False, True)
    stored = await queries.get(pool, queued.id)
    assert stored is not None and stored.force_reindex and stored.status == "pending"
