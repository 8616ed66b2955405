"""Project: repositories, files, chunks (full text + vectors) and the embedding cache.

Revision ID: p0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

from migrations.sql import run_script

revision: str = "p0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    dim = int(op.get_context().config.attributes.get("embedding_dim", 384))  # type: ignore[union-attr]
    run_script("CREATE EXTENSION IF NOT EXISTS vector")
    run_script(
        f"""
        CREATE TABLE project_config (
            key   TEXT PRIMARY KEY,
            value JSONB NOT NULL
        );
        COMMENT ON TABLE project_config IS 'Per-project settings fixed at creation, e.g. the embedder.';

        CREATE TABLE repositories (
            id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            name            TEXT NOT NULL,
            root_path       TEXT NOT NULL UNIQUE,
            created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_indexed_at TIMESTAMPTZ,
            file_count      INTEGER NOT NULL DEFAULT 0,
            chunk_count     INTEGER NOT NULL DEFAULT 0,
            metadata        JSONB NOT NULL DEFAULT '{{}}'::jsonb
        );

        CREATE TABLE files (
            id            BIGSERIAL PRIMARY KEY,
            repository_id UUID NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            rel_path      TEXT NOT NULL,
            content_hash  TEXT NOT NULL,
            size_bytes    BIGINT NOT NULL,
            mtime_ns      BIGINT NOT NULL DEFAULT 0,
            language      TEXT,
            line_count    INTEGER NOT NULL DEFAULT 0,
            is_deleted    BOOLEAN NOT NULL DEFAULT FALSE,
            indexed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (repository_id, rel_path)
        );
        COMMENT ON COLUMN files.content_hash IS 'sha256 of the raw bytes: unchanged files are skipped';

        CREATE TABLE chunks (
            id            BIGSERIAL PRIMARY KEY,
            file_id       BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            repository_id UUID NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            start_line    INTEGER NOT NULL,
            end_line      INTEGER NOT NULL,
            symbol        TEXT,
            kind          TEXT NOT NULL,
            language      TEXT NOT NULL,
            content       TEXT NOT NULL,
            content_hash  TEXT NOT NULL,
            symbol_tokens TEXT NOT NULL DEFAULT '',
            path_tokens   TEXT NOT NULL DEFAULT '',
            search_tokens TEXT NOT NULL DEFAULT '',
            tsv           TSVECTOR GENERATED ALWAYS AS (
                              setweight(to_tsvector('simple', symbol_tokens), 'A')
                           || setweight(to_tsvector('simple', path_tokens), 'C')
                           || setweight(to_tsvector('simple', search_tokens), 'D')
                          ) STORED,
            embedding     vector({dim}),
            CHECK (start_line >= 1 AND end_line >= start_line)
        );
        COMMENT ON COLUMN chunks.search_tokens IS 'code-aware tokens (identifiers kept whole and split)';
        COMMENT ON COLUMN chunks.embedding IS 'NULL until the embedding phase reaches this chunk';
        CREATE INDEX chunks_file_idx ON chunks (file_id);
        CREATE INDEX chunks_repository_idx ON chunks (repository_id);
        CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
        CREATE INDEX chunks_unembedded_idx ON chunks (repository_id, id) WHERE embedding IS NULL;
        CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops);

        CREATE TABLE embedding_cache (
            content_hash TEXT PRIMARY KEY,
            embedding    vector({dim}) NOT NULL
        );
        COMMENT ON TABLE embedding_cache IS 'Vectors by chunk content hash: identical chunks are embedded once';
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP TABLE IF EXISTS embedding_cache;
        DROP TABLE IF EXISTS chunks;
        DROP TABLE IF EXISTS files;
        DROP TABLE IF EXISTS repositories;
        DROP TABLE IF EXISTS project_config;
        """
    )
