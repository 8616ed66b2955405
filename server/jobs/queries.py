"""The SQL of an index job's life in `indexing_jobs` (the sweep's is in `sweeps.py`, refresh jobs' in
`refresh.py`); rows come back as typed `JobRow`s.

State transitions are guarded in SQL (`WHERE status = 'running' AND worker_id = $n`)
so a late "completed" can never overwrite "cancelled". Progress writes are short
transactions with `synchronous_commit = off` (a lost progress tick is harmless);
final states are durable.

The status literals in the SQL are those of the partial indexes (migration p0002): the
planner uses such an index only when the query repeats its predicate. In Python the
statuses are `IndexingJobStatus` with TERMINAL_STATUSES / ACTIVE_STATUSES (server/jobs/models.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from server.indexer.progress import Progress
from server.jobs.channels import HINT_CHANNEL
from server.jobs.models import JOB_COLUMNS, IndexingJobCreate, JobKind, JobRow

Executor = asyncpg.Pool | asyncpg.Connection
COLUMNS = ", ".join(JOB_COLUMNS)  # JobRow's field names, never user input


def _row(record: asyncpg.Record | None) -> JobRow | None:
    return None if record is None else JobRow.from_record(record)


def job_rows(records: list[asyncpg.Record]) -> list[JobRow]:
    return [JobRow.from_record(r) for r in records]


_INSERT = f"""
    INSERT INTO indexing_jobs (repo_path, repo_name, project_id, force_reindex, status, progress_message)
    VALUES ($1, $2, $3, $4, 'pending', 'Job queued')
    ON CONFLICT (repo_path) WHERE status IN ('pending', 'running') AND kind = 'index' DO NOTHING
    RETURNING {COLUMNS}
"""
_ACTIVE_FOR_REPO = f"""
    SELECT {COLUMNS} FROM indexing_jobs WHERE repo_path = $1 AND status IN ('pending', 'running') AND kind = 'index'
"""


async def _insert_or_active(conn: Executor, insert: str, job: IndexingJobCreate, *extra: Any) -> tuple[JobRow, bool]:
    """Run `insert` (which does nothing when the repository has an active `index` job); else that job."""
    while True:
        row = _row(await conn.fetchrow(insert, job.repo_path, job.repo_name, job.project_id, job.force_reindex, *extra))
        if row is not None:
            return row, True
        active = _row(await conn.fetchrow(_ACTIVE_FOR_REPO, job.repo_path))
        if active is not None:
            return active, False
        # it finished between the two statements: try again


async def create(conn: Executor, job: IndexingJobCreate) -> tuple[JobRow, bool]:
    """Insert a pending `index` job; if the repository already has an active one, return that one instead
    (refresh jobs are not in the way: they have their own rule, server/jobs/refresh.py)."""
    row, created = await _insert_or_active(conn, _INSERT, job)
    if not created and job.force_reindex and not row.force_reindex and row.status == "pending":
        # the queued run (a watcher's catch-up, say) has not started: it does what was asked now
        forced = _row(await conn.fetchrow(_FORCE_PENDING, row.id))
        if forced is not None:
            return forced, False
    return row, created


_FORCE_PENDING = f"""
    UPDATE indexing_jobs SET force_reindex = true WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}
"""


_INSERT_RUNNING = f"""
    INSERT INTO indexing_jobs (repo_path, repo_name, project_id, force_reindex, status, progress_message,
                               started_at, heartbeat_at, worker_id, worker_task_id, connection_id, attempts, metadata)
    VALUES ($1, $2, $3, $4, 'running', 'Starting', now(), now(), $5, $6, pg_backend_pid()::text, 1,
            jsonb_build_object('origin', $7::text, 'phase', 'starting'))
    ON CONFLICT (repo_path) WHERE status IN ('pending', 'running') AND kind = 'index' DO NOTHING
    RETURNING {COLUMNS}
"""


async def create_running(
    conn: Executor, job: IndexingJobCreate, *, worker_id: str, task_name: str, origin: str
) -> tuple[JobRow, bool]:
    """Record a run this process does itself (`origin` 'cli' or 'tool'): inserted as running, so no
    worker ever claims it. If the repository has an active job, that one comes back, `created` False."""
    return await _insert_or_active(conn, _INSERT_RUNNING, job, worker_id, task_name, origin)


async def interrupt(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str, message: str) -> JobRow | None:
    """The process running a job stops it (Ctrl-C, the request was cancelled): cancelled, saying why."""
    sql = f"""
        UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now(), completed_at = now(),
            progress_message = $3
        WHERE id = $1 AND worker_id = $2 AND status = 'running'
        RETURNING {COLUMNS}
    """
    return _row(await pool.fetchrow(sql, job_id, worker_id, message))


async def get(conn: Executor, job_id: uuid.UUID) -> JobRow | None:
    return _row(await conn.fetchrow(f"SELECT {COLUMNS} FROM indexing_jobs WHERE id = $1", job_id))


async def get_many(conn: Executor, job_ids: Sequence[uuid.UUID]) -> list[JobRow]:
    """The rows of `job_ids` that exist, in one statement (a watch feed's read of a burst of changes)."""
    if not job_ids:
        return []
    return job_rows(await conn.fetch(f"SELECT {COLUMNS} FROM indexing_jobs WHERE id = ANY($1::uuid[])", list(job_ids)))


async def snapshot(conn: Executor, *, since: datetime | None = None, limit: int = 50) -> list[JobRow]:
    """Every active job and the `limit` most recently changed ones (changed at or after `since`,
    when given), least recently changed first: what a project-wide watcher re-reads."""
    sql = f"""
        SELECT {COLUMNS} FROM indexing_jobs
        WHERE status IN ('pending', 'running') OR id IN (
            SELECT id FROM indexing_jobs WHERE ($1::timestamptz IS NULL OR updated_at >= $1)
            ORDER BY updated_at DESC LIMIT $2
        )
        ORDER BY updated_at, id
    """
    return job_rows(await conn.fetch(sql, since, limit))


async def watched(
    conn: Executor, job_ids: Sequence[uuid.UUID], *, wide: bool, since: datetime | None, margin_seconds: float
) -> list[JobRow]:
    """A feed's re-read, in one statement: the named jobs, plus (`wide`) every active job and every
    job changed at or after `since` (None: within the last `margin_seconds`)."""
    sql = f"""
        SELECT {COLUMNS} FROM indexing_jobs
        WHERE id = ANY($1::uuid[])
           OR ($2 AND (status IN ('pending', 'running')
                       OR updated_at >= coalesce($3::timestamptz, now() - make_interval(secs => $4))))
        ORDER BY updated_at, id
    """
    return job_rows(await conn.fetch(sql, list(job_ids), wide, since, margin_seconds))


async def list_jobs(conn: Executor, *, status: str | None = None, limit: int = 20) -> list[JobRow]:
    sql = f"""
        SELECT {COLUMNS} FROM indexing_jobs WHERE ($1::text IS NULL OR status = $1)
        ORDER BY created_at DESC LIMIT $2
    """
    return job_rows(await conn.fetch(sql, status, limit))


async def request_cancel(conn: Executor, job_id: uuid.UUID) -> JobRow | None:
    """Cancel a pending or running job; None when it is unknown or already finished."""
    sql = f"""
        UPDATE indexing_jobs
        SET status = 'cancelled', cancelled_at = now(), completed_at = now(),
            progress_message = 'Cancelled by user'
        WHERE id = $1 AND status IN ('pending', 'running')
        RETURNING {COLUMNS}
    """
    return _row(await conn.fetchrow(sql, job_id))


# Phases (server/indexer/progress.py) in which a running job still reads and stores files: a
# refresh of its repository waits until the job has moved past them.
STORE_PHASES = ("starting", "scanning", "storing")


async def claim_next(conn: Executor, worker_id: str, task_name: str, kind: JobKind = "index") -> JobRow | None:
    """Take the oldest pending job of `kind`, skipping rows other workers are claiming.

    Records who runs it: `worker_id` (the process), `worker_task_id` (`task_name`, the asyncio
    task that will run it) and `connection_id` (the backend pid of the connection claiming it).
    A refresh is not taken while another job of its repository is still reading and storing
    files: it would only wait for that job's content lock (server/db/locks.py), holding a slot.
    """
    sql = f"""
        UPDATE indexing_jobs SET
            status = 'running', started_at = now(), heartbeat_at = now(), worker_id = $1,
            worker_task_id = $2, connection_id = pg_backend_pid()::text, attempts = attempts + 1,
            progress_message = 'Starting',
            metadata = coalesce(metadata, '{{}}'::jsonb) || '{{"phase": "starting"}}'::jsonb
        WHERE id = (
            SELECT j.id FROM indexing_jobs j
            WHERE j.status = 'pending' AND j.kind = $3
              AND ($3 = 'index' OR NOT EXISTS (
                  SELECT 1 FROM indexing_jobs o
                  WHERE o.repo_path = j.repo_path AND o.status = 'running'
                    AND coalesce(o.metadata->>'phase', 'starting') = ANY($4::text[])))
            ORDER BY j.created_at FOR UPDATE SKIP LOCKED LIMIT 1
        )
        RETURNING {COLUMNS}
    """
    return _row(await conn.fetchrow(sql, worker_id, task_name, kind, list(STORE_PHASES)))


async def has_pending(conn: Executor, kind: JobKind | None = None) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM indexing_jobs WHERE status = 'pending' AND ($1::text IS NULL OR kind = $1))",
        kind,
    )
    return found


async def update_progress(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str, progress: Progress) -> bool:
    """Write progress in its own short transaction; False when the job is no longer ours to run.
    Counters go to their columns; phase, tier coverage, ETA and milestones to `metadata`."""
    meta = {
        "phase": progress.phase,
        "static_coverage": progress.static_coverage,
        "transformer_coverage": progress.transformer_coverage,
        "eta_seconds": progress.eta_seconds,
        "files_to_index": progress.files_to_index,
        "chunks_embedded": progress.chunks_embedded,
        "total_chunks": progress.total_chunks,
        "searchable_at": progress.searchable_at,
        "semantic_at": progress.semantic_at,
    }
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        status: str = await conn.execute(
            """
            UPDATE indexing_jobs SET
                progress_percentage = GREATEST(progress_percentage, $3), progress_message = $4,
                files_scanned = $5, files_indexed = $6, chunks_created = $7, heartbeat_at = now(),
                metadata = coalesce(metadata, '{}'::jsonb) || $8::jsonb
            WHERE id = $1 AND worker_id = $2 AND status = 'running'
            """,
            job_id,
            worker_id,
            progress.percentage,
            progress.message,
            progress.files_scanned,
            progress.files_indexed,
            progress.chunks_created,
            json.dumps(meta),
        )
    return status.endswith(" 1")


async def heartbeat(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str) -> str | None:
    """Refresh the heartbeat (no NOTIFY); returns the job's status, None if the job is gone."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        status: str | None = await conn.fetchval(
            """
            UPDATE indexing_jobs SET heartbeat_at = now()
            WHERE id = $1 AND worker_id = $2 AND status = 'running' RETURNING status
            """,
            job_id,
            worker_id,
        )
        if status is None:
            status = await conn.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job_id)
    return status


async def complete(
    pool: asyncpg.Pool,
    job_id: uuid.UUID,
    worker_id: str,
    *,
    repository_id: uuid.UUID,
    message: str,
    files_scanned: int,
    files_indexed: int,
    chunks_created: int,
    metadata: dict[str, Any],
) -> JobRow | None:
    sql = f"""
        UPDATE indexing_jobs SET
            status = 'completed', progress_percentage = 100, progress_message = $3, completed_at = now(),
            repository_id = $4, files_scanned = $5, files_indexed = $6, chunks_created = $7,
            metadata = coalesce(metadata, '{{}}'::jsonb) || $8::jsonb || '{{"phase": "done"}}'::jsonb
        WHERE id = $1 AND worker_id = $2 AND status = 'running'
        RETURNING {COLUMNS}
    """
    record = await pool.fetchrow(
        sql, job_id, worker_id, message, repository_id, files_scanned, files_indexed, chunks_created,
        json.dumps(metadata),
    )  # fmt: skip
    return _row(record)


async def fail(
    pool: asyncpg.Pool,
    job_id: uuid.UUID,
    worker_id: str | None,
    *,
    error_message: str,
    error_type: str,
    error_traceback: str | None,
) -> JobRow | None:
    sql = f"""
        UPDATE indexing_jobs SET
            status = 'failed', completed_at = now(), progress_message = 'Failed: ' || left($3, 500),
            error_message = $3, error_type = $4, error_traceback = $5
        WHERE id = $1 AND status = 'running' AND ($2::text IS NULL OR worker_id = $2)
        RETURNING {COLUMNS}
    """
    return _row(await pool.fetchrow(sql, job_id, worker_id, error_message, error_type, error_traceback))


async def requeue(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str, reason: str) -> JobRow | None:
    """Give a running index job back to the queue (graceful shutdown of its worker; refresh jobs:
    `server.jobs.refresh.supersede`)."""
    sql = f"""
        UPDATE indexing_jobs SET
            status = 'pending', worker_id = NULL, worker_task_id = NULL, connection_id = NULL,
            heartbeat_at = NULL, progress_percentage = 0, progress_message = $3,
            metadata = coalesce(metadata, '{{}}'::jsonb) || jsonb_build_object('requeued', $3::text)
        WHERE id = $1 AND worker_id = $2 AND status = 'running'
        RETURNING {COLUMNS}
    """
    return _row(await pool.fetchrow(sql, job_id, worker_id, reason))


async def mark_worker_stopped(pool: asyncpg.Pool, job_id: uuid.UUID, worker_id: str) -> None:
    """Record that the worker of a cancelled job has really stopped (subscribers see it)."""
    await pool.execute(
        """
        UPDATE indexing_jobs SET progress_message = 'Cancelled by user; worker stopped',
            metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('worker_stopped_at', now())
        WHERE id = $1 AND worker_id = $2 AND status = 'cancelled'
        """,
        job_id,
        worker_id,
    )


async def hint_claimable(registry: asyncpg.Pool | asyncpg.Connection, database: str) -> None:
    """Tell every worker, on the registry's channel, that `database` may have a job to claim.

    Workers LISTEN on the registry only (not on each project database); whoever enqueues or
    re-queues a job sends this. Missing it delays a job until the next sweep, never loses it.
    """
    await registry.execute("SELECT pg_notify($1, $2)", HINT_CHANNEL, json.dumps({"database": database}))
