"""The static tier's HNSW index around bulk loads: all SQL that drops, checks and builds it.

Inserting a row into an HNSW graph costs far more than building the graph over the same rows at
once, so a run that writes many chunks relative to what the project holds (a first index, most
of all) drops the index before storing and builds it once after (concurrently, so writes go on).
Meanwhile the table stays the truth: every stored chunk has its static vector, and static
search over it is an exact scan (slower, never wrong; an index that is absent or still being
built is not used by the planner).

A run cancelled or crashed in between leaves the index absent, or invalid if its build was
interrupted; every run ends by building it when it is missing, so the next run repairs it.
"""

from __future__ import annotations

from typing import Literal

import asyncpg

from server.db.cluster import Conn

INDEX_NAME = "chunks_static_hnsw_idx"
# As created by migration p0003: keep the two in step.
_CREATE = (
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON chunks "
    "USING hnsw (static_embedding halfvec_cosine_ops) WITH (m = 12, ef_construction = 40)"
)
# Fewer new chunks than this are inserted into the index as they come (seconds at worst).
BULK_LOAD_MIN_CHUNKS = 10_000
# Dropping pays when a rebuild over old + new rows is cheaper than inserting the new ones; a build
# runs ~4x faster per row than inserts (bench/index_bench.py), so: new rows ≥ old rows / 2.
BULK_LOAD_MIN_SHARE = 0.5
BUILD_MEMORY = "256MB"  # the graph of ~200K halfvec(384) rows fits: building stays in memory

State = Literal["valid", "absent", "invalid", "building"]


def worth_dropping(expected_new_chunks: int, existing_chunks: int, min_chunks: int = BULK_LOAD_MIN_CHUNKS) -> bool:
    """Whether a load of `expected_new_chunks` into a table of `existing_chunks` should drop the index."""
    return expected_new_chunks >= min_chunks and expected_new_chunks >= BULK_LOAD_MIN_SHARE * existing_chunks


async def state(conn: Conn) -> State:
    """`valid`; `absent`; `building` (a concurrent build is running); `invalid` (a build was interrupted)."""
    row = await conn.fetchrow(
        """
        SELECT i.indisvalid AS valid,
               EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
        FROM pg_index i WHERE i.indexrelid = to_regclass($1)
        """,
        INDEX_NAME,
    )
    if row is None:
        return "absent"
    if row["valid"]:
        return "valid"
    return "building" if row["building"] else "invalid"


async def table_chunks(conn: Conn) -> int:
    """The planner's estimate of the chunks table's rows (cheap; 0 before the first ANALYZE)."""
    rows = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass")
    return max(int(rows or 0), 0)


async def drop(conn: Conn) -> None:
    """Drop the index without blocking reads or writes (waits for queries using it)."""
    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}")


async def build(conn: Conn) -> bool:
    """Build the index unless it is valid or being built; returns whether this call built it.

    Concurrent (reads and writes go on), so not inside a transaction. An interrupted build's
    invalid leftover is dropped first (IF NOT EXISTS would keep it).
    """
    current = await state(conn)
    if current in ("valid", "building"):
        return False
    if current == "invalid":
        await drop(conn)
    # Raise (never lower) this session's build memory; reset after, and by the pool on release.
    await conn.execute(
        "SELECT set_config('maintenance_work_mem', $1, false) "
        "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes($1)",
        BUILD_MEMORY,
    )
    try:
        await conn.execute(_CREATE)
    except asyncpg.DuplicateTableError:
        return False  # another run created it at the same moment
    await conn.execute("RESET maintenance_work_mem")
    return True
