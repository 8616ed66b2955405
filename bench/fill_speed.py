"""Transformer fill rate on an indexed repository: how fast `fill_transformer_tier` gives chunks
their transformer vectors, and what the database spends on writing them (figures only).

    CODEBASE_MCP_DATA_DIR=DIR python bench/fill_speed.py --project ID [--chunks 2000] [--rounds 2]

Takes the project's first repository as it is stored (for example the one `watch_bench.py
--workdir` leaves), clears the transformer vectors of N of its implementation chunks, newest
first (what a fill does first), and their texts in the embedding cache, then runs the product's
fill over them with the product's embedder; each round anew on the same chunks. Prints chunks/s,
and the CPU seconds of this process (the model's threads are in it) and of PostgreSQL's backends,
from /proc. Run it at two commits back to back to compare fills.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import asyncpg

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.indexer.fill import fill_transformer_tier
from server.settings import Settings


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (Linux /proc; the benchmark's server)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"postgres" not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def _clear(pool: asyncpg.Pool, repo_id: object, chunks: int) -> list[int]:
    ids: list[int] = [
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM chunks WHERE repository_id = $1 AND embed_priority = 0 ORDER BY id DESC LIMIT $2",
            repo_id,
            chunks,
        )
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM embedding_cache WHERE text_hash IN (SELECT embed_hash FROM chunks WHERE id = ANY($1))", ids
        )
        await conn.execute("UPDATE chunks SET embedding = NULL WHERE id = ANY($1)", ids)
    await pool.execute("VACUUM chunks")
    return ids


async def run(args: argparse.Namespace) -> None:
    app = App(Settings())
    await app.start(workers=False)
    try:
        project = (await app.resolver.resolve(args.project, None, create=False)).project
        pool = await app.cluster.pool(project.database_name)
        repo_id = await pool.fetchval("SELECT id FROM repositories ORDER BY created_at LIMIT 1")
        total = await pool.fetchval("SELECT count(*) FROM chunks WHERE repository_id = $1", repo_id)
        embedder = app.embedder
        assert embedder is not None
        await embedder.embed(["warm up"])
        print(f"project {args.project}: {total} chunks; embedder {embedder.name}")
        for n in range(args.rounds):
            ids = await _clear(pool, repo_id, args.chunks)
            pg0, me0, t0 = _postgres_cpu(), time.process_time(), time.perf_counter()

            async def embedded(_: int) -> None:
                return None

            done = await fill_transformer_tier(pool, repo_id, embedder, embedded)
            wall = time.perf_counter() - t0
            pg, me = _postgres_cpu() - pg0, time.process_time() - me0
            left = await pool.fetchval("SELECT count(*) FROM chunks WHERE id = ANY($1) AND embedding IS NULL", ids)
            print(
                f"round {n + 1}: {done} chunks in {wall:.1f} s = {done / wall:.1f} chunks/s; CPU s: this process "
                f"{me:.1f}, PostgreSQL {pg:.1f}; {left} left without a vector; load {os.getloadavg()[0]:.1f}"
            )
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
