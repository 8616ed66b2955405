"""Refresh jobs: small incremental jobs for changed paths, beside the one active `index` job.

- `indexing_jobs.kind`: `index` (a whole repository, incremental unless forced) or `refresh`
  (the paths in `metadata.paths`, or every file when `metadata.full` is true, as the watcher and
  the `refresh_index` tool enqueue them).
- One active `index` job per repository, as before; refresh jobs are exempt from it and have
  their own rule instead: at most one PENDING refresh per repository, into which new changes are
  merged (a running refresh may have read a file already, so a new pending one can follow it).
- Workers claim by lane (`kind`): the pending index gets `kind` as its leading column.

Revision ID: p0004
Revises: p0003
Create Date: 2026-12-08
"""

from migrations.sql import run_script

revision: str = "p0004"
down_revision: str | None = "p0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE indexing_jobs
            ADD COLUMN kind TEXT NOT NULL DEFAULT 'index' CHECK (kind IN ('index', 'refresh'));
        COMMENT ON COLUMN indexing_jobs.kind IS
            'index: the whole repository; refresh: metadata.paths (or every file when metadata.full)';

        DROP INDEX idx_indexing_jobs_one_active_per_repo;
        CREATE UNIQUE INDEX idx_indexing_jobs_one_active_per_repo ON indexing_jobs (repo_path)
            WHERE status IN ('pending', 'running') AND kind = 'index';
        -- New changes are merged into the pending refresh of their repository.
        CREATE UNIQUE INDEX idx_indexing_jobs_one_pending_refresh_per_repo ON indexing_jobs (repo_path)
            WHERE status = 'pending' AND kind = 'refresh';

        DROP INDEX idx_indexing_jobs_pending;
        CREATE INDEX idx_indexing_jobs_pending ON indexing_jobs (kind, created_at) WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    run_script(
        """
        DELETE FROM indexing_jobs WHERE kind = 'refresh';
        DROP INDEX idx_indexing_jobs_pending;
        CREATE INDEX idx_indexing_jobs_pending ON indexing_jobs (created_at) WHERE status = 'pending';
        DROP INDEX idx_indexing_jobs_one_pending_refresh_per_repo;
        DROP INDEX idx_indexing_jobs_one_active_per_repo;
        CREATE UNIQUE INDEX idx_indexing_jobs_one_active_per_repo ON indexing_jobs (repo_path)
            WHERE status IN ('pending', 'running');
        ALTER TABLE indexing_jobs DROP COLUMN kind;
        """
    )
