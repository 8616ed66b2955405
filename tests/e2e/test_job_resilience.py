"""Jobs survive what real deployments do to them: SIGKILL, dropped LISTEN connections, several workers."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.jobs.models import IndexingJobProgress
from server.mcp.models import HealthReport
from tests.e2e.conftest import Connect, Processes, start_job
from tests.polling import wait_for
from tests.repos import make_python_repo

JOB_TIMEOUT = 150.0  # generous: the CI box may be busy; the happy path takes seconds

# The notifier's dedicated connections name themselves.
LISTENERS_SQL = """
SELECT pid, datname FROM pg_stat_activity
WHERE datname = ANY($1::text[]) AND backend_type = 'client backend' AND application_name = 'codebase-mcp-listener'
"""


@pytest.fixture
def e2e_env(e2e_env: dict[str, str]) -> dict[str, str]:
    """Job resilience is the subject: no repository watcher queues refreshes or catch-up runs beside
    the jobs these tests count."""
    return {**e2e_env, "WATCH_REPOSITORIES": "false"}


async def _job_row(db: asyncpg.Connection, job_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", uuid.UUID(job_id))
    assert row is not None
    return row


async def _watch(client: Any, job_id: str, progress: list[str] | None = None) -> IndexingJobProgress:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress.append(message or "")

    result = await client.call_tool(
        "watch_indexing", {"job_id": job_id}, progress_handler=on_progress, timeout=JOB_TIMEOUT
    )
    return IndexingJobProgress.model_validate(result.structured_content)


async def test_sigkill_mid_job_then_restart_rescues_and_finishes_it(
    processes: Processes, tmp_path: Path, connect_db: Connect
) -> None:
    server = await processes.http_server()
    repo = make_python_repo(tmp_path / "repo", 72)  # ~290 chunks: two embedding batches of up to 256
    async with server.client() as client:
        job = await start_job(client, repo, f"e2e-{uuid.uuid4().hex[:8]}")
    db = await connect_db(job.database_name)

    async def first_batch_embedded() -> asyncpg.Record | None:
        row = await _job_row(db, job.job_id)
        assert row["status"] in ("pending", "running"), row["error_message"]
        # The table, not the wording of progress messages, says when the first vectors are stored.
        return row if await db.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") else None

    before = await wait_for(first_batch_embedded, within=JOB_TIMEOUT, interval=0.05)
    server.proc.kill()
    embedded_before: int = await db.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL")
    crashed = await _job_row(db, job.job_id)
    assert crashed["status"] == "running" and crashed["worker_id"] == before["worker_id"]
    assert crashed["attempts"] == 1 and embedded_before > 0

    restarted = await processes.http_server(port=server.port)
    async with restarted.client() as client:
        health = HealthReport.model_validate((await client.call_tool("health", {})).structured_content)
        final = await _watch(client, job.job_id)

    row = await _job_row(db, job.job_id)
    assert final.status == "completed", f"{final.error_message}\n{restarted.proc.log_tail()}"
    assert row["attempts"] == 2
    assert row["worker_id"] == health.worker_id != before["worker_id"]
    assert await db.fetchval("SELECT count(*) FROM indexing_jobs WHERE status = 'running'") == 0
    assert await db.fetchval("SELECT count(*) FROM indexing_jobs") == 1
    # Work committed before the crash was kept: files were not re-chunked, stored vectors not redone.
    stats = json.loads(row["metadata"])
    assert stats["files_unchanged"] == 73  # 72 modules and a README
    assert 0 < stats["chunks_embedded"] <= stats["total_chunks"] - embedded_before
    assert await db.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0


async def test_killed_listener_connections_are_replaced_and_watchers_see_the_end(
    processes: Processes, tmp_path: Path, connect_db: Connect, registry_db: str
) -> None:
    server = await processes.http_server()
    repo = make_python_repo(tmp_path / "repo", 60)
    admin = await connect_db("postgres")
    progress: list[str] = []
    async with server.client() as client:
        job = await start_job(client, repo, f"e2e-{uuid.uuid4().hex[:8]}")
        databases = [job.database_name, registry_db]
        db = await connect_db(job.database_name)
        watch = asyncio.create_task(_watch(client, job.job_id, progress))
        try:

            async def running() -> bool:
                percentage: int = (await _job_row(db, job.job_id))["progress_percentage"]
                return percentage >= 10

            await wait_for(running, within=JOB_TIMEOUT)
            killed = {r["pid"] for r in await admin.fetch(LISTENERS_SQL, databases)}
            assert killed, "no LISTEN connection found"
            for pid in killed:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            seen_at_kill = len(progress)

            async def replaced() -> bool:
                rows = await admin.fetch(LISTENERS_SQL, [job.database_name])
                return any(r["pid"] not in killed for r in rows)

            await wait_for(replaced, within=15)
            final = await asyncio.wait_for(watch, JOB_TIMEOUT)
            returned_at = time.time()
        finally:
            watch.cancel()

    assert final.status == "completed", final.error_message
    assert progress[-1].startswith("[completed]")
    assert len(progress) > seen_at_kill
    # Pushed, not found by the watcher's 15 s re-read: the end reached the client promptly.
    assert final.completed_at is not None
    assert returned_at - final.completed_at.timestamp() < 5
    assert (await _job_row(db, job.job_id))["attempts"] == 1


async def test_two_worker_processes_share_jobs_and_one_cluster_wide_slot(
    processes: Processes, tmp_path: Path, connect_db: Connect, e2e_env: dict[str, str]
) -> None:
    queue = await processes.http_server("--no-workers")
    one_slot = {**e2e_env, "MAX_CONCURRENT_INDEXING_JOBS": "1"}
    (first_proc, first), (second_proc, second) = await asyncio.gather(
        processes.worker(one_slot), processes.worker(one_slot)
    )
    projects = [f"e2e-a-{uuid.uuid4().hex[:6]}", f"e2e-b-{uuid.uuid4().hex[:6]}"]
    async with queue.client() as client:
        health = HealthReport.model_validate((await client.call_tool("health", {})).structured_content)
        assert health.worker_id is None  # --no-workers: this server only queues
        jobs = [
            await start_job(client, make_python_repo(tmp_path / f"repo{i}", 8, prefix=f"r{i}"), projects[i % 2])
            for i in range(6)
        ]
    dbs = {j.database_name: await connect_db(j.database_name) for j in jobs}

    async def all_finished() -> list[asyncpg.Record] | None:
        rows = [r for db in dbs.values() for r in await db.fetch("SELECT * FROM indexing_jobs")]
        return rows if all(r["status"] in ("completed", "failed", "cancelled") for r in rows) else None

    rows = await wait_for(all_finished, within=JOB_TIMEOUT, interval=0.3)
    assert len(rows) == 6 and {str(r["id"]) for r in rows} == {j.job_id for j in jobs}
    for r in rows:
        assert r["status"] == "completed", r["error_message"]
        assert r["attempts"] == 1  # claimed once: never handed to a second worker
        assert r["worker_id"] in (first, second)
        assert f"job {r['id']} cancelled" not in first_proc.log() + second_proc.log()
    spans = sorted((r["started_at"], r["completed_at"]) for r in rows)
    for (_, earlier_end), (later_start, _) in itertools.pairwise(spans):
        assert earlier_end <= later_start, "two jobs ran at once despite MAX_CONCURRENT_INDEXING_JOBS=1"
