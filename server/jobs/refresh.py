"""SQL for refresh jobs: enqueue-or-merge, and what is still pending for some repositories.

A refresh job (`kind = 'refresh'`) re-checks `metadata.paths` of one repository, or every file
when `metadata.full` is true. At most one refresh per repository is PENDING (a partial unique
index); a new one is merged into it: paths are united, and once they exceed the mass-change
limit (or either side is full) the pending refresh becomes a full one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from server.db.cluster import Conn
from server.errors import UserError
from server.jobs.models import JobRow
from server.jobs.queries import COLUMNS

Executor = Conn | asyncpg.Pool


class RepositoryMissingError(UserError, RuntimeError):
    """A refresh found its repository folder missing: nothing is marked deleted meanwhile."""


_CREATE_SQL = f"""
INSERT INTO indexing_jobs (repo_path, repo_name, project_id, kind, status, progress_message, metadata)
VALUES ($1, $2, $3, 'refresh', 'pending', $6,
        CASE WHEN $4::jsonb IS NULL THEN '{{"full": true, "paths": []}}'::jsonb
             ELSE jsonb_build_object('full', false, 'paths', $4::jsonb) END)
ON CONFLICT (repo_path) WHERE status = 'pending' AND kind = 'refresh' DO UPDATE SET
    progress_message = EXCLUDED.progress_message,
    metadata = indexing_jobs.metadata || (
        SELECT CASE WHEN m.is_full OR jsonb_array_length(m.merged) > $5
                    THEN '{{"full": true, "paths": []}}'::jsonb
                    ELSE jsonb_build_object('full', false, 'paths', m.merged) END
        FROM (
            SELECT coalesce((indexing_jobs.metadata->>'full')::boolean, false)
                   OR (EXCLUDED.metadata->>'full')::boolean AS is_full,
                   (SELECT coalesce(jsonb_agg(u.p ORDER BY u.p), '[]'::jsonb) FROM (
                        SELECT jsonb_array_elements_text(coalesce(indexing_jobs.metadata->'paths', '[]'::jsonb))
                        UNION
                        SELECT jsonb_array_elements_text(EXCLUDED.metadata->'paths')
                    ) AS u(p)) AS merged
        ) AS m
    )
RETURNING {COLUMNS}, (xmax = 0) AS inserted
"""


async def create_refresh(
    conn: Executor,
    *,
    repo_path: str,
    repo_name: str,
    project_id: str,
    paths: Sequence[str] | None,
    max_paths: int,
    message: str = "Refresh queued",
) -> tuple[JobRow, bool]:
    """Queue a refresh of `paths` (None: every file) or merge it into the repository's pending
    one; returns the row and whether it is new."""
    row = await conn.fetchrow(
        _CREATE_SQL,
        repo_path,
        repo_name,
        project_id,
        None if paths is None else json.dumps(sorted(set(paths))),
        max_paths,
        message,
    )
    assert row is not None
    return JobRow.from_record(row), bool(row["inserted"])


def _meta(value: Any) -> dict[str, Any]:
    meta = json.loads(value) if isinstance(value, str | bytes) else value
    return meta if isinstance(meta, dict) else {}


def superseded_by(row: JobRow) -> uuid.UUID | None:
    """The refresh that carries a stopped refresh's changes (see `supersede`)."""
    successor = row.metadata.get("superseded_by")
    return uuid.UUID(successor) if isinstance(successor, str) else None


_END_SQL = f"""
UPDATE indexing_jobs SET status = $3, completed_at = now(), error_type = $4, error_message = $5,
    progress_message = $5, worker_id = NULL, worker_task_id = NULL, connection_id = NULL, heartbeat_at = NULL
WHERE id = $1 AND ($2::text IS NULL OR worker_id = $2) AND status = 'running' AND kind = 'refresh'
RETURNING {COLUMNS}
"""


async def supersede(
    conn: Executor,
    job_id: uuid.UUID,
    worker_id: str | None,
    *,
    status: str,
    error_type: str | None,
    message: str,
    max_paths: int,
) -> JobRow | None:
    """End a running refresh that cannot finish (its worker stops, or died) and queue its changes
    again, merged into the repository's pending refresh; `metadata.superseded_by` names that job.

    A refresh is never put back to pending itself: another one may be pending for the repository.
    Returns the job that now carries the changes (None when the refresh was not running).
    """
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as own:
            return await supersede(
                own, job_id, worker_id, status=status, error_type=error_type, message=message, max_paths=max_paths
            )
    async with conn.transaction():
        record = await conn.fetchrow(_END_SQL, job_id, worker_id, status, error_type, message)
        if record is None:
            return None
        row = JobRow.from_record(record)
        successor, _ = await create_refresh(
            conn, repo_path=row.repo_path, repo_name=row.repo_name, project_id=row.project_id,
            paths=None if row.metadata.get("full") else [str(p) for p in row.metadata.get("paths") or []],
            max_paths=max_paths, message=f"Refresh queued again: {message}",
        )  # fmt: skip
        await conn.execute(
            "UPDATE indexing_jobs SET metadata = metadata || jsonb_build_object('superseded_by', $2::text) "
            "WHERE id = $1",
            job_id,
            str(successor.id),
        )
        return successor


async def rescue_stale(
    pool: Executor, *, stale_seconds: float, dead_workers: list[str], max_paths: int
) -> list[JobRow]:
    """Refreshes whose worker died: failed (WorkerLost), their changes queued again."""
    stale = await pool.fetch(
        """
        SELECT id, worker_id FROM indexing_jobs WHERE status = 'running' AND kind = 'refresh'
          AND (heartbeat_at < now() - make_interval(secs => $1) OR worker_id = ANY($2::text[]))
        """,
        stale_seconds,
        dead_workers,
    )
    rescued = []
    for r in stale:
        successor = await supersede(
            pool, r["id"], r["worker_id"], status="failed", error_type="WorkerLost", max_paths=max_paths,
            message=f"worker {r['worker_id']} stopped while running this refresh; its changes are queued again",
        )  # fmt: skip
        if successor is not None:
            rescued.append(successor)
    return rescued


# Index jobs count as pending changes only until their files are stored (then only vectors follow).
_PENDING_SQL = """
SELECT id, repo_path, kind, status, metadata FROM indexing_jobs
WHERE status IN ('pending', 'running') AND repo_path = ANY($1::text[])
  AND NOT (kind = 'index' AND status = 'running'
           AND coalesce(metadata->>'phase', '') IN ('embedding', 'finalizing', 'done'))
ORDER BY created_at
"""


@dataclass(frozen=True, slots=True)
class Pending:
    jobs: list[str] = field(default_factory=list)  # job ids
    paths: set[str] = field(default_factory=set)  # paths named by refreshes
    whole_repositories: set[str] = field(default_factory=set)  # root paths with a full refresh or index


async def pending_changes(conn: Executor, repo_paths: Sequence[str]) -> Pending:
    """Changes queued or being stored for these repositories (their jobs, named paths, full runs)."""
    pending = Pending()
    for r in await conn.fetch(_PENDING_SQL, list(repo_paths)):
        meta = _meta(r["metadata"])
        pending.jobs.append(str(r["id"]))
        if r["kind"] == "index" or meta.get("full"):
            pending.whole_repositories.add(r["repo_path"])
        else:
            pending.paths.update(f"{r['repo_path']}/{p}" for p in meta.get("paths") or ())
    return pending
