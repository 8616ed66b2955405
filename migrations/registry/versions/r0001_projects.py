"""Registry: the projects table.

Revision ID: r0001
Revises:
Create Date: 2026-11-24
"""

from migrations.sql import run_script

revision: str = "r0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE projects (
            id            VARCHAR(255) PRIMARY KEY,
            name          TEXT NOT NULL,
            database_name VARCHAR(63) NOT NULL UNIQUE
                          CHECK (database_name ~ '^cb_proj_[a-z0-9_]{1,40}_[0-9a-f]{8}$'),
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            metadata      JSONB NOT NULL DEFAULT '{}'::jsonb
        );
        COMMENT ON TABLE projects IS 'One row per project; each project has its own database.';

        -- Workers and listeners learn about new project databases from this channel.
        CREATE FUNCTION projects_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('codebase_projects',
                json_build_object('id', NEW.id, 'database_name', NEW.database_name)::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER projects_notify_insert AFTER INSERT ON projects
            FOR EACH ROW EXECUTE FUNCTION projects_notify();
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP TRIGGER IF EXISTS projects_notify_insert ON projects;
        DROP FUNCTION IF EXISTS projects_notify();
        DROP TABLE IF EXISTS projects;
        """
    )
