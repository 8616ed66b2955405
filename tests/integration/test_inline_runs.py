"""In-process runs (`codebase-mcp index`, `index_repository`) are recorded as jobs every watcher sees."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from server.app import App
from server.embeddings import Embedder
from server.jobs import queries, sweeps
from server.jobs.inline import RepositoryBusyError, RunCancelledError
from server.jobs.models import IndexingJobCreate, IndexingJobProgress
from server.jobs.watch import JobChange, JobWatch
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # the subject is jobs, not embedding


async def _changes_until(watch: JobWatch, done: str, within: float = 120) -> list[JobChange]:
    seen: list[JobChange] = []
    deadline = time.monotonic() + within
    while not seen or seen[-1].row.status != done:
        seen.append(await asyncio.wait_for(watch.get(), max(0.01, deadline - time.monotonic())))
    return seen


async def test_a_cli_run_shows_up_as_a_job_from_start_to_end(app: App, tmp_path: Path) -> None:
    project = await app.registry.get_or_create(f"i-{uuid.uuid4().hex[:10]}")
    repo = make_python_repo(tmp_path / "repo", 12)
    async with await app.hub.watch_project(project) as watch:
        assert watch.get_nowait() is None
        run, changes = await asyncio.gather(
            app.index_recorded(project, repo, origin="cli"), _changes_until(watch, "completed")
        )

    assert {c.row.id for c in changes} == {run.row.id}
    first, last = changes[0].view, changes[-1].view
    assert first.status == "running" and first.origin == "cli"  # never pending: no worker may claim it
    assert last.origin == "cli" and last.files_indexed == 13 and last.chunks_created == run.result.chunks_created
    assert last.repo_path == str(repo) and last.started_at is not None and last.completed_at is not None
    assert run.row.worker_id is not None and run.row.worker_id.split(":")[0] == socket.gethostname()
    phases = [c.row.phase for c in changes]
    assert phases[-1] == "done" and len(set(phases)) >= 3, phases  # (a burst may coalesce into one change)


async def test_cancelling_an_in_process_run_stops_it(
    quiet_app: App, fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    project = await quiet_app.registry.get_or_create(f"i-{uuid.uuid4().hex[:10]}")
    pool = await quiet_app.pool(project)
    repo = make_python_repo(tmp_path / "repo", 5)
    fake_embedder.pause()  # the run waits in its embedding phase until cancelled
    async with await quiet_app.hub.watch_project(project) as watch:
        run = asyncio.create_task(quiet_app.index_recorded(project, repo, origin="tool"))
        started = await asyncio.wait_for(watch.get(), 60)
        assert started.row.status == "running" and started.view.origin == "tool"
        await asyncio.wait_for(fake_embedder.blocked.wait(), 60)
        assert await queries.request_cancel(pool, started.row.id) is not None
        with pytest.raises(RunCancelledError, match="cancelled"):
            await asyncio.wait_for(run, 30)
    row = await queries.get(pool, started.row.id)
    assert row is not None and row.status == "cancelled"
    assert row.progress_message == "Cancelled by user; worker stopped"


async def test_a_repository_with_an_active_job_is_not_run_twice(quiet_app: App, tmp_path: Path) -> None:
    project = await quiet_app.registry.get_or_create(f"i-{uuid.uuid4().hex[:10]}")
    pool = await quiet_app.pool(project)
    repo = make_python_repo(tmp_path / "repo", 3)
    queued, _ = await queries.create(pool, IndexingJobCreate(repo_path=str(repo), repo_name="r", project_id=project.id))
    with pytest.raises(RepositoryBusyError, match=f"active indexing job {queued.id} \\(pending\\)"):
        await quiet_app.index_recorded(project, repo, origin="cli")
    rows = await queries.list_jobs(pool)
    assert [r.id for r in rows] == [queued.id]  # nothing recorded, the queued job untouched


async def test_a_dead_in_process_run_is_failed_not_requeued(app: App, tmp_path: Path) -> None:
    project = await app.registry.get_or_create(f"i-{uuid.uuid4().hex[:10]}")
    pool = await app.pool(project)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}:abcdef"
    job = IndexingJobCreate(repo_path=str(tmp_path), repo_name="r", project_id=project.id)
    row, created = await queries.create_running(pool, job, worker_id=dead, task_name="cli-1", origin="cli")
    assert created and row.status == "running"
    assert await queries.claim_next(pool, "someone:1:x", "job-1") is None  # running rows are never claimed

    rescued = await sweeps.rescue_stale(pool, stale_seconds=3600, dead_workers=[dead], max_attempts=3)
    assert [r.id for r in rescued] == [row.id]
    view = IndexingJobProgress.from_row(rescued[0])
    assert view.status == "failed" and view.error_type == "WorkerLost" and view.origin == "cli"
    assert view.error_message == f"the cli process {dead} stopped while running this job"
