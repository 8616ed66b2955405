"""Throughput of the local embedder on real code: 40–80-line windows of the Python standard library.

Usage: python bench/embed_speed.py [--chunks 256] [--threads N] [--repeat 1]
Prints chunks/s for batch sizes 16/32/64 at max lengths 128/256, and the peak RSS of each
configuration (each runs in its own process, so the peaks do not mask one another).
CPU-seconds per chunk are shown too: they are less disturbed by other load on the machine.
Last, how long a cancelled `embed` call takes to end, in milliseconds and in batches (the
embedder promises a cancel lands within one batch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from server.embeddings.local import LocalEmbedder

BATCH_SIZES = (16, 32, 64)
MAX_LENGTHS = (128, 256)


def code_chunks(count: int, seed: int = 0) -> list[str]:
    """``count`` windows of 40–80 lines, drawn from stdlib modules in a fixed pseudo-random way."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 4000)
    chunks: list[str] = []
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        start = 0
        while start + 40 <= len(lines):
            size = rng.randint(40, 80)
            chunks.append("\n".join(lines[start : start + size]))
            start += size
    rng.shuffle(chunks)
    if len(chunks) < count:
        raise SystemExit(f"only {len(chunks)} chunks available in {stdlib}")
    return chunks[:count]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def measure(chunk_count: int, batch_size: int, max_length: int, threads: int | None) -> None:
    chunks = code_chunks(chunk_count)
    embedder = LocalEmbedder(batch_size=batch_size, max_length=max_length, threads=threads)
    started = time.perf_counter()
    await embedder.load()
    loaded = time.perf_counter()
    await embedder.embed(chunks[:batch_size])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    await embedder.embed(chunks)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"max_length={max_length:<4} batch={batch_size:<3} threads={embedder.threads}  "
        f"{len(chunks) / wall:5.1f} chunks/s  {1000 * cpu / len(chunks):5.1f} CPU-ms/chunk  "
        f"load {loaded - started:.2f} s  peak RSS {peak_rss_mib():.0f} MiB",
        flush=True,
    )


async def cancel_latency(threads: int | None, batch_size: int = 4, samples: int = 5) -> None:
    """Cancel a long `embed` call mid-run; time from `cancel()` to the caller seeing CancelledError."""
    embedder = LocalEmbedder(batch_size=batch_size, threads=threads)
    await embedder.load()
    started = time.perf_counter()
    await embedder.embed(["warm up " * 30] * batch_size)
    one_batch = time.perf_counter() - started
    latencies = []
    for _ in range(samples):
        task = asyncio.create_task(embedder.embed(["some code text " * 30] * 2000))
        await asyncio.sleep(3 * one_batch)
        cancelled_at = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        latencies.append(time.perf_counter() - cancelled_at)
        await embedder.embed(["still alive"])  # waits for the batch still running in its thread
    worst = max(latencies)
    print(
        f"cancel (batch={batch_size}): one batch {1000 * one_batch:.0f} ms; cancel landed after "
        f"{1000 * min(latencies):.1f}-{1000 * worst:.1f} ms ({worst / one_batch:.2f} batches at worst)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--only", nargs=2, type=int, metavar=("BATCH", "MAX_LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        asyncio.run(measure(args.chunks, args.only[0], args.only[1], args.threads))
        return
    chunks = code_chunks(args.chunks)
    mean_lines = sum(c.count("\n") + 1 for c in chunks) / len(chunks)
    print(f"{len(chunks)} chunks of {mean_lines:.0f} lines on average", flush=True)
    extra = ["--threads", str(args.threads)] if args.threads else []
    for max_length in MAX_LENGTHS:
        for batch_size in BATCH_SIZES:
            for _ in range(args.repeat):
                only = ["--only", str(batch_size), str(max_length)]
                command = [sys.executable, __file__, "--chunks", str(args.chunks), *only, *extra]
                subprocess.run(command, check=True)
    asyncio.run(cancel_latency(args.threads))


if __name__ == "__main__":
    main()
