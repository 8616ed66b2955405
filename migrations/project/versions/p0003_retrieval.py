"""Retrieval: file roles, a static vector tier, full text written by the indexer, embedding queue order.

- `files.role` / `chunks.role`: code, test or docs (server/indexer/roles.py), for code-first
  ranking and the search scope filter.
- `chunks.static_embedding`: the fast static tier (halfvec) with its own HNSW index; every chunk
  gets one when it is stored. `chunks.embedding` stays the transformer tier, filled in behind.
- `chunks.tsv` becomes a plain column COPYed as a binary tsvector by the indexer (the token text
  columns it was generated from are dropped); existing values are kept until re-indexing.
- `chunks.embed_hash` (sha256 of the text the transformer embeds: path, symbol and code) keys the
  embedding cache; `embed_priority` orders the transformer queue (implementation first).
- The transformer text changed (a path + symbol header, 64 tokens), so stored transformer vectors
  and the cache are dropped, and `repositories.index_format` tells the indexer that every file of
  an older format must be chunked again.

Revision ID: p0003
Revises: p0002
Create Date: 2026-12-01
"""

from migrations.sql import run_script

revision: str = "p0003"
down_revision: str | None = "p0002"
branch_labels: str | None = None
depends_on: str | None = None

STATIC_DIM = 384  # the shipped static model's dimension (server/embeddings)
OLD_LOCAL_EMBEDDER = "local:all-MiniLM-L6-v2-int8"
NEW_LOCAL_EMBEDDER = "local:all-MiniLM-L6-v2-s8"


def upgrade() -> None:
    run_script(
        f"""
        ALTER TABLE repositories ADD COLUMN index_format INTEGER NOT NULL DEFAULT 1;
        COMMENT ON COLUMN repositories.index_format IS
            'Chunk format the files were indexed with; older formats are re-chunked on the next run';

        ALTER TABLE files ADD COLUMN role TEXT NOT NULL DEFAULT 'code' CHECK (role IN ('code', 'test', 'docs'));

        ALTER TABLE chunks ALTER COLUMN tsv DROP EXPRESSION;
        ALTER TABLE chunks
            DROP COLUMN symbol_tokens,
            DROP COLUMN path_tokens,
            DROP COLUMN search_tokens,
            ADD COLUMN role TEXT NOT NULL DEFAULT 'code' CHECK (role IN ('code', 'test', 'docs')),
            ADD COLUMN embed_hash TEXT,
            ADD COLUMN embed_priority SMALLINT NOT NULL DEFAULT 0,
            ADD COLUMN static_embedding halfvec({STATIC_DIM});
        COMMENT ON COLUMN chunks.tsv IS 'symbol (A), path (B) and code (D) tokens, written by the indexer';
        COMMENT ON COLUMN chunks.role IS 'code, test or docs: what the file is for';
        COMMENT ON COLUMN chunks.embed_hash IS 'sha256 of the text the transformer embeds (header + code)';
        COMMENT ON COLUMN chunks.embed_priority IS 'transformer queue order: lower first (implementation first)';
        COMMENT ON COLUMN chunks.static_embedding IS 'static-tier vector, written with the chunk';
        COMMENT ON COLUMN chunks.embedding IS 'transformer-tier vector; NULL until the background fill reaches it';

        UPDATE chunks SET embedding = NULL WHERE embedding IS NOT NULL;
        TRUNCATE embedding_cache;
        ALTER TABLE embedding_cache RENAME COLUMN content_hash TO text_hash;
        COMMENT ON TABLE embedding_cache IS 'Transformer vectors by embed_hash: identical texts are embedded once';

        DROP INDEX chunks_unembedded_idx;
        CREATE INDEX chunks_unembedded_idx ON chunks (repository_id, embed_priority, id) WHERE embedding IS NULL;
        CREATE INDEX chunks_unstatic_idx ON chunks (repository_id) WHERE static_embedding IS NULL;
        CREATE INDEX chunks_static_hnsw_idx ON chunks
            USING hnsw (static_embedding halfvec_cosine_ops) WITH (m = 12, ef_construction = 40);

        UPDATE project_config SET value = jsonb_set(value, '{{name}}', '"{NEW_LOCAL_EMBEDDER}"')
        WHERE key = 'embedder' AND value->>'name' = '{OLD_LOCAL_EMBEDDER}';
        """
    )


def downgrade() -> None:
    run_script(
        f"""
        UPDATE project_config SET value = jsonb_set(value, '{{name}}', '"{OLD_LOCAL_EMBEDDER}"')
        WHERE key = 'embedder' AND value->>'name' = '{NEW_LOCAL_EMBEDDER}';
        DROP INDEX IF EXISTS chunks_static_hnsw_idx;
        DROP INDEX IF EXISTS chunks_unstatic_idx;
        DROP INDEX IF EXISTS chunks_unembedded_idx;
        CREATE INDEX chunks_unembedded_idx ON chunks (repository_id, id) WHERE embedding IS NULL;
        TRUNCATE embedding_cache;
        ALTER TABLE embedding_cache RENAME COLUMN text_hash TO content_hash;
        UPDATE chunks SET embedding = NULL WHERE embedding IS NOT NULL;
        ALTER TABLE chunks
            DROP COLUMN static_embedding,
            DROP COLUMN embed_priority,
            DROP COLUMN embed_hash,
            DROP COLUMN role,
            DROP COLUMN tsv,
            ADD COLUMN symbol_tokens TEXT NOT NULL DEFAULT '',
            ADD COLUMN path_tokens TEXT NOT NULL DEFAULT '',
            ADD COLUMN search_tokens TEXT NOT NULL DEFAULT '';
        ALTER TABLE chunks ADD COLUMN tsv TSVECTOR GENERATED ALWAYS AS (
              setweight(to_tsvector('simple', symbol_tokens), 'A')
           || setweight(to_tsvector('simple', path_tokens), 'C')
           || setweight(to_tsvector('simple', search_tokens), 'D')
        ) STORED;
        CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
        -- The old format rebuilds full text from token columns: make every file look changed.
        UPDATE files SET content_hash = '', mtime_ns = -1;
        ALTER TABLE repositories DROP COLUMN index_format;
        ALTER TABLE files DROP COLUMN role;
        """
    )
