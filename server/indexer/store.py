"""All SQL for repositories, files and chunks as the store phase writes them (the transformer
tier's fill and the embedding cache: `server/indexer/vectorstore.py`)."""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from pgvector import HalfVector

from server.db.cluster import Conn
from server.indexer.types import CHUNK_KEY_COLUMNS, ChunkKey, ChunkRow, FileRecord, chunk_key


@dataclass(frozen=True, slots=True)
class KnownFile:
    id: int
    content_hash: str
    size: int
    mtime_ns: int
    is_deleted: bool


_CHUNK_COLUMNS = (
    "file_id", "repository_id", "start_line", "end_line", "symbol", "kind", "language", "role", "content",
    "content_hash", "tsv", "embed_hash", "embed_priority", "static_embedding",
)  # fmt: skip


async def ensure_repository(conn: Conn, root_path: str, name: str, index_format: int) -> tuple[uuid.UUID, int]:
    """The repository's id and the chunk format its files were indexed with (`index_format` if new)."""
    row = await conn.fetchrow(
        """
        INSERT INTO repositories (name, root_path, index_format) VALUES ($1, $2, $3)
        ON CONFLICT (root_path) DO UPDATE SET name = EXCLUDED.name
        RETURNING id, index_format
        """,
        name,
        root_path,
        index_format,
    )
    assert row is not None
    return row["id"], int(row["index_format"])


async def known_files(conn: Conn, repo_id: uuid.UUID, under: Sequence[str] | None = None) -> dict[str, KnownFile]:
    """The repository's files; with `under`, only those at or below these paths (and maybe a few more)."""
    rows = await conn.fetch(
        """
        SELECT id, rel_path, content_hash, size_bytes, mtime_ns, is_deleted FROM files
        WHERE repository_id = $1 AND ($2::text[] IS NULL OR rel_path = ANY($2) OR rel_path LIKE ANY($3::text[]))
        """,
        repo_id,
        None if under is None else list(under),
        # LIKE's escape character is the backslash that escaped names hold: double it. `_` and `%`
        # only widen the match (the caller filters again).
        None if under is None else [p.rstrip("/").replace("\\", "\\\\") + "/%" for p in under],
    )
    return {
        r["rel_path"]: KnownFile(r["id"], r["content_hash"], r["size_bytes"], r["mtime_ns"], r["is_deleted"])
        for r in rows
    }


async def stored_chunk_keys(conn: Conn, file_ids: Sequence[int], *, with_static: bool) -> dict[int, list[ChunkKey]]:
    """The keys of these files' stored chunks (with `with_static`, only of rows that have their static
    vector): what a changed file's unchanged chunks can keep instead of being prepared again."""
    rows = await conn.fetch(
        f"""
        SELECT file_id, {", ".join(CHUNK_KEY_COLUMNS)} FROM chunks
        WHERE file_id = ANY($1::bigint[]) AND embed_hash IS NOT NULL AND (NOT $2 OR static_embedding IS NOT NULL)
        """,
        list(file_ids),
        with_static,
    )
    keys: dict[int, list[ChunkKey]] = defaultdict(list)
    for r in rows:
        keys[r["file_id"]].append(tuple(r[k] for k in CHUNK_KEY_COLUMNS))
    return keys


class StaleChunkKeysError(Exception):
    """Rows a prepared file was told it had are gone: prepare those files again in full."""

    def __init__(self, rel_paths: Sequence[str]) -> None:
        super().__init__(f"stored chunks changed while {len(rel_paths)} files were prepared")
        self.rel_paths = list(rel_paths)


async def touch_files(conn: Conn, ids: Sequence[int], mtimes: Sequence[int]) -> None:
    """Content unchanged, only the mtime moved: remember it so the next run skips hashing."""
    if ids:
        await conn.execute(
            "UPDATE files SET mtime_ns = m FROM unnest($1::bigint[], $2::bigint[]) AS u(i, m) WHERE id = u.i",
            list(ids),
            list(mtimes),
        )


@dataclass(frozen=True, slots=True)
class Replaced:
    inserted: int  # new chunk rows (no transformer vector yet)
    kept: int  # unchanged chunks that kept their rows and vectors
    moved: int  # kept rows whose lines moved or that got their static vector (new row versions in every index)


async def replace_files(
    conn: Conn, repo_id: uuid.UUID, records: Sequence[FileRecord], *, keep_unchanged: bool = True
) -> Replaced:
    """Upsert files and bring their chunks to the new state in one transaction.

    With `keep_unchanged`, a chunk whose row would be identical but for its lines (same text,
    symbol, kind, role, language and tiers in the same file) keeps its row and vectors, its lines
    updated if they moved: a branch switch or an edit rewrites only the chunks that changed, and
    nothing else needs embedding or indexing again. Without it (a forced or re-formatted run)
    every old chunk is replaced. A chunk prepared as `unchanged` must find its old row: if it does
    not (the rows changed since `stored_chunk_keys`), nothing is written and StaleChunkKeysError
    names the files to prepare again."""
    if not records:
        return Replaced(0, 0, 0)
    async with conn.transaction():
        rows = await conn.fetch(
            """
            INSERT INTO files (repository_id, rel_path, content_hash, size_bytes, mtime_ns, language, line_count,
                               role, is_deleted, indexed_at)
            SELECT $1, * , FALSE, now() FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[],
                                                     $6::text[], $7::int[], $8::text[])
            ON CONFLICT (repository_id, rel_path) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, size_bytes = EXCLUDED.size_bytes,
                mtime_ns = EXCLUDED.mtime_ns, language = EXCLUDED.language, line_count = EXCLUDED.line_count,
                role = EXCLUDED.role, is_deleted = FALSE, indexed_at = now()
            RETURNING id, rel_path
            """,
            repo_id,
            [r.rel_path for r in records],
            [r.content_hash for r in records],
            [r.size for r in records],
            [r.mtime_ns for r in records],
            [r.language for r in records],
            [r.line_count for r in records],
            [r.role for r in records],
        )
        ids = {row["rel_path"]: row["id"] for row in rows}
        old = await conn.fetch(
            f"""
            SELECT id, start_line, end_line, {", ".join(_SAME_CHUNK)}, static_embedding IS NOT NULL AS has_static
            FROM chunks WHERE file_id = ANY($1::bigint[]) ORDER BY file_id, start_line, id
            """,
            list(ids.values()),
        )
        spare: dict[tuple[object, ...], deque[asyncpg.Record]] = defaultdict(deque)
        for o in old:
            spare[tuple(o[k] for k in _SAME_CHUNK) if keep_unchanged else (o["id"],)].append(o)
        chunk_rows: list[tuple[object, ...]] = []
        moved: list[tuple[int, int, int, HalfVector | None]] = []  # new lines, a static vector to fill in
        kept = 0
        stale: list[str] = []
        for r in records:
            file_id = ids[r.rel_path]
            for c in r.chunks:
                same = spare.get(_chunk_key(file_id, c)) if keep_unchanged else None
                if c.unchanged and not same:
                    stale.append(r.rel_path)  # its full text was never computed: it cannot be written
                    break
                if same:  # the first old row of this text, in line order: repeats keep their order
                    row = same.popleft()
                    kept += 1
                    # A row stored before the static tier was on gets its static vector now.
                    fill = None if row["has_static"] else c.static_embedding
                    if fill is not None or (row["start_line"], row["end_line"]) != (c.start_line, c.end_line):
                        static = None if fill is None else HalfVector(fill)
                        moved.append((row["id"], c.start_line, c.end_line, static))
                    continue
                chunk_rows.append(
                    (
                        file_id, repo_id, c.start_line, c.end_line, c.symbol, c.kind, c.language, c.role,
                        c.content, c.content_hash, c.tsv, c.embed_hash, c.embed_priority, c.static_embedding,
                    )
                )  # fmt: skip
        if stale:
            raise StaleChunkKeysError(stale)  # rolls the transaction back
        gone = [o["id"] for rest in spare.values() for o in rest]
        if gone:
            await conn.execute("DELETE FROM chunks WHERE id = ANY($1::bigint[])", gone)
        if moved:
            await conn.execute(
                """
                UPDATE chunks SET start_line = u.s, end_line = u.e, static_embedding = COALESCE(u.v, static_embedding)
                FROM unnest($1::bigint[], $2::int[], $3::int[], $4::halfvec[]) AS u(i, s, e, v) WHERE id = u.i
                """,
                *(list(col) for col in zip(*moved, strict=True)),
            )
        if chunk_rows:
            await conn.copy_records_to_table("chunks", records=chunk_rows, columns=_CHUNK_COLUMNS)
        return Replaced(len(chunk_rows), kept, len(moved))


# An old chunk row that is the same as a new one but for its lines (server/indexer/types.py).
_SAME_CHUNK = ("file_id", *CHUNK_KEY_COLUMNS)


def _chunk_key(file_id: int, c: ChunkRow) -> tuple[object, ...]:
    return (file_id, *chunk_key(c))


async def mark_deleted(conn: Conn, repo_id: uuid.UUID, rel_paths: Sequence[str]) -> int:
    if not rel_paths:
        return 0
    async with conn.transaction():
        ids = await conn.fetch(
            """
            UPDATE files SET is_deleted = TRUE, indexed_at = now()
            WHERE repository_id = $1 AND rel_path = ANY($2::text[]) AND NOT is_deleted
            RETURNING id
            """,
            repo_id,
            list(rel_paths),
        )
        await conn.execute("DELETE FROM chunks WHERE file_id = ANY($1::bigint[])", [r["id"] for r in ids])
    return len(ids)


async def finish_repository(conn: Conn, repo_id: uuid.UUID, index_format: int) -> tuple[int, int]:
    row = await conn.fetchrow(
        """
        UPDATE repositories r SET
            last_indexed_at = now(), index_format = $2,
            file_count = (SELECT count(*) FROM files WHERE repository_id = r.id AND NOT is_deleted),
            chunk_count = (SELECT count(*) FROM chunks WHERE repository_id = r.id)
        WHERE r.id = $1 RETURNING file_count, chunk_count
        """,
        repo_id,
        index_format,
    )
    assert row is not None
    return int(row["file_count"]), int(row["chunk_count"])


async def analyze_chunks(conn: Conn) -> None:
    """Refresh the statistics search's term weights come from (reads and writes go on meanwhile)."""
    await conn.execute("ANALYZE chunks")
