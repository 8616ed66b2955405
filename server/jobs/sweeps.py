"""The sweep's SQL over `indexing_jobs`: rescue jobs of lost workers, fail overdue ones, expire history.

Run by every worker's periodic sweep (server/jobs/worker.py), one project database at a time;
refresh jobs have their own rescue (server/jobs/refresh.py).
"""

from __future__ import annotations

from server.jobs.models import JOB_COLUMNS, JobRow
from server.jobs.queries import COLUMNS, Executor, job_rows

RETURNED = ", ".join(f"indexing_jobs.{c}" for c in JOB_COLUMNS)


async def rescue_stale(
    pool: Executor,
    *,
    stale_seconds: float,
    dead_workers: list[str],
    max_attempts: int,
) -> list[JobRow]:
    """Running index jobs whose worker died: re-queue them, or fail them after `max_attempts`
    (refresh jobs: `server.jobs.refresh.rescue_stale`). A job run in-process (`metadata.origin`
    'cli' or 'tool') is failed at once: no worker may take it over."""
    sql = f"""
        UPDATE indexing_jobs SET
            status = CASE WHEN attempts >= $3 OR in_process THEN 'failed' ELSE 'pending' END,
            completed_at = CASE WHEN attempts >= $3 OR in_process THEN now() END,
            error_type = CASE WHEN attempts >= $3 OR in_process THEN 'WorkerLost' ELSE error_type END,
            error_message = CASE
                WHEN in_process THEN 'the ' || origin || ' process ' || coalesce(worker_id, '?')
                     || ' stopped while running this job'
                WHEN attempts >= $3 THEN 'worker ' || coalesce(worker_id, '?') || ' stopped while running this job, '
                     || attempts || ' attempts made'
                ELSE error_message END,
            progress_message = CASE WHEN attempts >= $3 OR in_process THEN 'Failed: worker lost'
                ELSE 'Re-queued: worker ' || coalesce(worker_id, '?') || ' stopped (attempt '
                     || attempts || ' of ' || $3 || ')' END,
            progress_percentage = CASE WHEN attempts >= $3 OR in_process THEN progress_percentage ELSE 0 END,
            worker_id = NULL, worker_task_id = NULL, connection_id = NULL, heartbeat_at = NULL
        FROM (SELECT id AS lost_id, coalesce(metadata->>'origin', 'worker') AS origin,
                     coalesce(metadata->>'origin', 'worker') <> 'worker' AS in_process
              FROM indexing_jobs
              WHERE status = 'running' AND kind = 'index'
                AND (heartbeat_at < now() - make_interval(secs => $1) OR worker_id = ANY($2::text[]))) AS lost
        WHERE indexing_jobs.id = lost.lost_id AND status = 'running'
        RETURNING {RETURNED}
    """
    return job_rows(await pool.fetch(sql, stale_seconds, dead_workers, max_attempts))


async def fail_overdue(pool: Executor, timeout_seconds: int) -> list[JobRow]:
    """Jobs running longer than INDEXING_JOB_TIMEOUT_SECONDS, whoever runs them."""
    sql = f"""
        UPDATE indexing_jobs SET status = 'failed', completed_at = now(), error_type = 'JobTimeout',
            error_message = 'job exceeded INDEXING_JOB_TIMEOUT_SECONDS=' || $1,
            progress_message = 'Failed: timed out'
        WHERE status = 'running' AND started_at < now() - make_interval(secs => $1)
        RETURNING {COLUMNS}
    """
    return job_rows(await pool.fetch(sql, timeout_seconds))


async def running_worker_ids(pool: Executor) -> list[str]:
    rows = await pool.fetch("SELECT DISTINCT worker_id FROM indexing_jobs WHERE status = 'running'")
    return [r["worker_id"] for r in rows if r["worker_id"]]


async def delete_expired(pool: Executor, retention_days: int) -> int:
    status: str = await pool.execute(
        """
        DELETE FROM indexing_jobs
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND coalesce(completed_at, cancelled_at, created_at) < now() - make_interval(days => $1)
        """,
        retention_days,
    )
    return int(status.split()[-1])
