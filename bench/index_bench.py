"""Indexing benchmark on the standard corpus (figures, not assertions).

    python bench/index_bench.py [--corpus DIR] [--embed none|full|sample] [--sample 2000]

Runs against a fresh embedded PostgreSQL in a temporary data dir (or DATABASE_URL) and prints:
time to searchable (full text), files/s and chunks/s, embedding throughput (the whole corpus
with --embed full, or a timed sample extrapolated with --embed sample), a nothing-changed
re-index, and peak RSS of this process and its chunking workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from server.app import App
from server.indexer import store
from server.indexer.pipeline import Progress, index_repository
from server.indexer.prepare import shutdown_executor
from server.settings import Settings

HERE = Path(__file__).resolve().parent


def corpus_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    script = HERE.parent.parent / "shared" / "bench" / "make-corpus.sh"
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


async def run(args: argparse.Namespace) -> None:
    root = corpus_root(args.corpus)
    files_on_disk = sum(len(f) for _, _, f in os.walk(root))
    data_dir = Path(tempfile.mkdtemp(prefix="cbmcp-bench-"))
    settings = Settings(data_dir=data_dir)  # DATABASE_URL, when set, still wins
    app = App(settings)
    await app.start(workers=False)
    project = (await app.resolver.resolve(f"bench-{int(time.time())}", None, create=True)).project
    pool = await app.cluster.pool(project.database_name)
    await app.embedder.load()
    print(f"corpus: {root} ({files_on_disk} files on disk)")

    phases: dict[str, float] = {}
    t0 = time.perf_counter()

    async def note(p: Progress) -> None:
        phases.setdefault(p.phase, time.perf_counter() - t0)

    text = await index_repository(root, "corpus", pool, None, progress_callback=note)
    searchable = time.perf_counter() - t0
    print(
        f"searchable (full text): {searchable:6.2f} s  files indexed {text.files_indexed}, "
        f"skipped {sum(text.files_skipped.values())} {text.files_skipped}, chunks {text.chunks_created}"
    )
    print(
        f"  scan {phases.get('chunking', 0):.2f} s; chunk+store {searchable - phases.get('chunking', 0):.2f} s; "
        f"{text.files_indexed / searchable:,.0f} files/s, {text.chunks_created / searchable:,.0f} chunks/s"
    )
    own, children = rss_mb()
    print(f"  peak RSS: server {own:,.0f} MB, largest chunking worker {children:,.0f} MB")

    if args.embed == "full":
        t1 = time.perf_counter()
        full = await index_repository(root, "corpus", pool, app.embedder)
        took = time.perf_counter() - t1
        rate = full.chunks_embedded / took
        print(
            f"embedding: {full.chunks_embedded} chunks in {took:,.1f} s = {rate:,.1f} chunks/s "
            f"(cache hits {full.embedding_cache_hits}); fully embedded after {searchable + took:,.1f} s"
        )
    elif args.embed == "sample":
        async with pool.acquire() as conn:
            rows = await store.next_unembedded(conn, text.repository_id, 0, args.sample)
        texts = [r["content"] for r in rows]
        t1 = time.perf_counter()
        await app.embedder.embed(texts)
        took = time.perf_counter() - t1
        rate = len(texts) / took
        todo = text.chunks_created
        print(
            f"embedding sample: {len(texts)} chunks in {took:.1f} s = {rate:.1f} chunks/s; "
            f"whole corpus ({todo} chunks) would take ~{todo / rate / 60:.0f} min "
            f"(less the content-hash cache hits)"
        )
    own, children = rss_mb()
    print(f"  peak RSS after embedding: server {own:,.0f} MB")

    t2 = time.perf_counter()
    again = await index_repository(root, "corpus", pool, None)
    print(
        f"re-index, nothing changed: {time.perf_counter() - t2:.2f} s "
        f"(files indexed {again.files_indexed}, unchanged {again.files_unchanged})"
    )
    shutdown_executor()
    await app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus")
    parser.add_argument("--embed", choices=["none", "full", "sample"], default="sample")
    parser.add_argument("--sample", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
