"""Project: indexing_jobs, its partial indexes and the NOTIFY triggers.

Revision ID: p0002
Revises: p0001
Create Date: 2026-11-24
"""

from migrations.sql import run_script

revision: str = "p0002"
down_revision: str | None = "p0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE indexing_jobs (
            id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            repository_id       UUID,
            repo_path           TEXT NOT NULL,
            repo_name           TEXT NOT NULL,
            project_id          VARCHAR(255) NOT NULL,
            force_reindex       BOOLEAN NOT NULL DEFAULT FALSE,
            status              VARCHAR(20) NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
            progress_percentage INTEGER NOT NULL DEFAULT 0
                                CHECK (progress_percentage >= 0 AND progress_percentage <= 100),
            progress_message    TEXT,
            files_scanned       INTEGER NOT NULL DEFAULT 0,
            files_indexed       INTEGER NOT NULL DEFAULT 0,
            chunks_created      INTEGER NOT NULL DEFAULT 0,
            error_message       TEXT,
            error_type          VARCHAR(255),
            error_traceback     TEXT,
            created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            started_at          TIMESTAMPTZ,
            completed_at        TIMESTAMPTZ,
            cancelled_at        TIMESTAMPTZ,
            metadata            JSONB DEFAULT '{}'::jsonb,
            worker_task_id      TEXT,
            connection_id       TEXT,
            worker_id           TEXT,
            heartbeat_at        TIMESTAMPTZ,
            attempts            INTEGER NOT NULL DEFAULT 0,
            updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            version             BIGINT NOT NULL DEFAULT 0
        );
        COMMENT ON TABLE indexing_jobs IS
            'Background indexing jobs: the single source of truth; NOTIFY on channel indexing_jobs is a hint.';
        COMMENT ON COLUMN indexing_jobs.repo_path IS 'Absolute, validated path of the repository to index';
        COMMENT ON COLUMN indexing_jobs.status IS 'pending -> running -> completed | failed | cancelled';
        COMMENT ON COLUMN indexing_jobs.progress_percentage IS '0-100, never decreases while running';
        COMMENT ON COLUMN indexing_jobs.metadata IS 'Extra state, e.g. {"phase": "embedding"}';
        COMMENT ON COLUMN indexing_jobs.worker_id IS 'host:pid:nonce of the worker that claimed the job';
        COMMENT ON COLUMN indexing_jobs.heartbeat_at IS 'Refreshed by the running worker; stale means it died';
        COMMENT ON COLUMN indexing_jobs.version IS 'Bumped on every notified change; orders notifications';

        CREATE INDEX idx_indexing_jobs_active ON indexing_jobs (created_at)
            WHERE status IN ('pending', 'running');
        CREATE INDEX idx_indexing_jobs_pending ON indexing_jobs (created_at)
            WHERE status = 'pending';
        CREATE INDEX idx_indexing_jobs_running_heartbeat ON indexing_jobs (heartbeat_at)
            WHERE status = 'running';
        CREATE INDEX idx_indexing_jobs_finished ON indexing_jobs (completed_at)
            WHERE status IN ('completed', 'failed', 'cancelled');
        -- One active job per repository: a second start returns the active one.
        CREATE UNIQUE INDEX idx_indexing_jobs_one_active_per_repo ON indexing_jobs (repo_path)
            WHERE status IN ('pending', 'running');

        -- Version and updated_at move only with notified fields, never with heartbeats.
        CREATE FUNCTION indexing_jobs_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (OLD.status, OLD.progress_percentage, OLD.progress_message, OLD.files_scanned,
                OLD.files_indexed, OLD.chunks_created, OLD.error_message, OLD.metadata)
               IS DISTINCT FROM
               (NEW.status, NEW.progress_percentage, NEW.progress_message, NEW.files_scanned,
                NEW.files_indexed, NEW.chunks_created, NEW.error_message, NEW.metadata) THEN
                NEW.version := OLD.version + 1;
                NEW.updated_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER indexing_jobs_version BEFORE UPDATE ON indexing_jobs
            FOR EACH ROW EXECUTE FUNCTION indexing_jobs_bump_version();

        -- Keys only: listeners read the row (the table is the truth).
        CREATE FUNCTION indexing_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('indexing_jobs', json_build_object(
                'id', NEW.id, 'status', NEW.status, 'progress', NEW.progress_percentage,
                'version', NEW.version, 'op', lower(TG_OP))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER indexing_jobs_notify_insert AFTER INSERT ON indexing_jobs
            FOR EACH ROW EXECUTE FUNCTION indexing_jobs_notify();
        CREATE TRIGGER indexing_jobs_notify_update AFTER UPDATE ON indexing_jobs
            FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
            EXECUTE FUNCTION indexing_jobs_notify();
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP TRIGGER IF EXISTS indexing_jobs_notify_update ON indexing_jobs;
        DROP TRIGGER IF EXISTS indexing_jobs_notify_insert ON indexing_jobs;
        DROP TRIGGER IF EXISTS indexing_jobs_version ON indexing_jobs;
        DROP FUNCTION IF EXISTS indexing_jobs_notify();
        DROP FUNCTION IF EXISTS indexing_jobs_bump_version();
        DROP TABLE IF EXISTS indexing_jobs;
        """
    )
