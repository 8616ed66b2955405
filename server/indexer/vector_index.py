"""The two HNSW vector indexes of `chunks` around bulk writes: all SQL that drops, checks and builds them.

Writing a row into an HNSW graph costs far more than building the graph over the same rows at
once. Every new row version enters every index (an UPDATE that sets a vector is not a HOT update:
the indexed columns change), so one rule decides for both indexes: a write of at least
`BULK_LOAD_MIN_CHUNKS` rows and at least half of the table drops the index first and builds it
once after (concurrently, so reads and writes go on). The static index is judged before and while
chunks are stored; both are judged before cached transformer vectors are copied into chunks.
Meanwhile the table stays the truth: vector search over a tier whose index is absent (or still
being built: the planner does not use it) is an exact scan, slower and never wrong.

A run cancelled or crashed in between leaves an index absent, or invalid if its build was
interrupted; every run ends by building what is missing, so the next run repairs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from server.db.cluster import Conn


@dataclass(frozen=True, slots=True)
class VectorIndex:
    name: str
    tier: Literal["static", "transformer"]
    definition: str  # after `ON chunks`, as the migrations create it: keep the two in step


# migration p0003
STATIC = VectorIndex(
    "chunks_static_hnsw_idx",
    "static",
    "USING hnsw (static_embedding halfvec_cosine_ops) WITH (m = 12, ef_construction = 40)",
)
# migration p0001 (pgvector's defaults: m = 16, ef_construction = 64)
TRANSFORMER = VectorIndex("chunks_embedding_hnsw_idx", "transformer", "USING hnsw (embedding vector_cosine_ops)")
INDEXES = (STATIC, TRANSFORMER)

# Fewer rows than this are written into the index as they come (seconds at worst).
BULK_LOAD_MIN_CHUNKS = 10_000
# Dropping pays when a rebuild over old + new rows is cheaper than inserting the new ones; a build
# runs ~4x faster per row than inserts (bench/index_bench.py), so: new rows ≥ old rows / 2.
BULK_LOAD_MIN_SHARE = 0.5
BUILD_MEMORY = "256MB"  # the graph of ~200K halfvec(384) rows fits: building stays in memory

State = Literal["valid", "absent", "invalid", "building"]


def worth_dropping(rows: int, existing_chunks: int, min_chunks: int = BULK_LOAD_MIN_CHUNKS) -> bool:
    """Whether writing `rows` into an index over a table of `existing_chunks` should drop it first."""
    return rows >= min_chunks and rows >= BULK_LOAD_MIN_SHARE * existing_chunks


class BulkGuard:
    """Drops `index` once the rows a run writes into it reach the rule (told as they are written)."""

    def __init__(self, index: VectorIndex, min_chunks: int = BULK_LOAD_MIN_CHUNKS, *, active: bool = True) -> None:
        self.index = index
        self.min_chunks = min_chunks
        self.active = active
        self.existing = 0  # the table's rows before the run
        self.rows = 0  # rows written into the index so far, or expected (an estimate first)
        self.dropped = False

    async def wrote(self, pool: asyncpg.Pool, rows: int) -> None:
        self.rows += rows
        if self.active and not self.dropped and worth_dropping(self.rows, self.existing, self.min_chunks):
            self.dropped = True  # before the await: a concurrent writer must not drop it too
            async with pool.acquire() as conn:
                await drop(conn, self.index)


async def state(conn: Conn, index: VectorIndex) -> State:
    """`valid`; `absent`; `building` (a concurrent build is running); `invalid` (a build was interrupted)."""
    row = await conn.fetchrow(
        """
        SELECT i.indisvalid AS valid,
               EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
        FROM pg_index i WHERE i.indexrelid = to_regclass($1)
        """,
        index.name,
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


async def drop(conn: Conn, index: VectorIndex) -> None:
    """Drop the index without blocking reads or writes (waits for queries using it)."""
    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")


async def build(conn: Conn, index: VectorIndex) -> bool:
    """Build the index unless it is valid or being built; returns whether this call built it.

    Concurrent (reads and writes go on), so not inside a transaction. An interrupted build's
    invalid leftover is dropped first (IF NOT EXISTS would keep it).
    """
    current = await state(conn, index)
    if current in ("valid", "building"):
        return False
    if current == "invalid":
        await drop(conn, index)
    # Raise (never lower) this session's build memory; reset after, and by the pool on release.
    await conn.execute(
        "SELECT set_config('maintenance_work_mem', $1, false) "
        "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes($1)",
        BUILD_MEMORY,
    )
    try:
        await conn.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index.name} ON chunks {index.definition}")
    except asyncpg.DuplicateTableError:
        return False  # another run created it at the same moment
    finally:
        await conn.execute("RESET maintenance_work_mem")
    return True
