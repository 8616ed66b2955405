"""Commit → subscriber latency of the listener on a private embedded PostgreSQL.

Usage: python bench/notify_latency.py [--updates 500] [--subscribers 1] [--sync-commit on|off]

Each round updates one indexing_jobs row in its own transaction and waits until every subscriber
holds the notification. Prints p50/p99/max measured from the UPDATE's start and from its return
(the notification can beat the writer's acknowledgement, so the latter may be ≤ 0), then a burst
of the same number of updates against a subscriber that reads concurrently (coalescing at work).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import asyncpg

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from listener import Notifier, Subscription
from server.db.cluster import Cluster, with_database
from server.db.embedded import EmbeddedPostgres
from server.db.names import REGISTRY_DATABASE
from server.db.registry import Registry
from server.jobs.channels import JOBS_CHANNEL

CHANNEL = JOBS_CHANNEL
FLIP = "UPDATE indexing_jobs SET progress_percentage = 100 - progress_percentage WHERE id = $1"  # 0 ↔ 100


def percentiles(samples_ms: list[float]) -> str:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return f"p50 {cuts[49]:7.3f} ms   p99 {cuts[98]:7.3f} ms   max {max(samples_ms):7.3f} ms"


async def sequential(writer: asyncpg.Connection, subs: list[Subscription], job: str, base: int, updates: int) -> None:
    from_start: list[float] = []
    from_return: list[float] = []
    in_callback: list[float] = []
    for i in range(1, updates + 1):
        started = time.monotonic()
        await writer.execute(FLIP, job)
        returned = time.monotonic()
        events = [await asyncio.wait_for(sub.get(), 10) for sub in subs]
        got = time.monotonic()
        assert all(e.kind == "notify" and e.payload["version"] == base + i for e in events), events
        from_start.append((got - started) * 1000)
        from_return.append((got - returned) * 1000)
        in_callback.append((max(e.received_at for e in events) - started) * 1000)
    print(f"sequential, {updates} updates, {len(subs)} subscriber(s):")
    print(f"  UPDATE start  → all received:    {percentiles(from_start)}")
    print(f"  UPDATE start  → read-loop put:   {percentiles(in_callback)}")
    print(f"  UPDATE return → all received:    {percentiles(from_return)}")


async def burst(writer: asyncpg.Connection, notifier: Notifier, dsn: str, job: str, updates: int) -> None:
    sub = await notifier.subscribe(dsn, CHANNEL, job)
    first = int(await writer.fetchval("SELECT version FROM indexing_jobs WHERE id = $1", job))
    target = first + updates
    seen = 0

    async def read() -> None:
        nonlocal seen
        async for event in sub:
            seen += 1
            if event.payload.get("version") == target:
                return

    reader = asyncio.create_task(read())
    started = time.monotonic()
    for _ in range(updates):
        await writer.execute(FLIP, job)
    committed = time.monotonic()
    await asyncio.wait_for(reader, 30)
    done = time.monotonic()
    await sub.close()
    print(
        f"burst, {updates} updates: {updates / (committed - started):,.0f} commits/s; "
        f"reader got {seen} events (latest version {target}) {1000 * (done - committed):.2f} ms after the last commit"
    )


async def main(updates: int, subscribers: int, sync_commit: str) -> None:
    with tempfile.TemporaryDirectory(prefix="notify-bench-") as tmp:
        embedded = EmbeddedPostgres(Path(tmp), port=0)
        server = embedded.ensure_running()
        try:
            dsn = server.dsn("postgres")
            cluster = Cluster(dsn, with_database(dsn, REGISTRY_DATABASE), min_size=0, max_size=2)
            registry = Registry(cluster, embedder_name="bench", embedding_dim=384)
            project = await registry.get_or_create("notify-bench")
            db_dsn = cluster.dsn_for(project.database_name)
            writer = await asyncpg.connect(db_dsn)
            await writer.execute(f"SET synchronous_commit = {'on' if sync_commit == 'on' else 'off'}")
            job = str(
                await writer.fetchval(
                    "INSERT INTO indexing_jobs (repo_path, repo_name, project_id)"
                    " VALUES ('/bench', 'bench', 'notify-bench') RETURNING id"
                )
            )
            async with Notifier() as notifier:
                subs = [await notifier.subscribe(db_dsn, CHANNEL, job) for _ in range(subscribers)]
                for _ in range(20):  # warm up
                    await writer.execute("UPDATE indexing_jobs SET progress_message = clock_timestamp()::text")
                    for sub in subs:
                        await asyncio.wait_for(sub.get(), 10)
                print(f"embedded PostgreSQL, synchronous_commit={sync_commit}")
                base = int(await writer.fetchval("SELECT version FROM indexing_jobs WHERE id = $1", job))
                await sequential(writer, subs, job, base, updates)
                for sub in subs:
                    await sub.close()
                await burst(writer, notifier, db_dsn, job, updates)
                print(f"stats: {notifier.stats()[db_dsn]}")
            await writer.close()
            await cluster.close()
        finally:
            embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--sync-commit", choices=("on", "off"), default="on")
    args = parser.parse_args()
    asyncio.run(main(args.updates, args.subscribers, args.sync_commit))
