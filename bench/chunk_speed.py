"""Chunking throughput over a directory tree: scan, read, chunk and full-text tokens, by language.

    python bench/chunk_speed.py [ROOT] [--jobs N] [--prepare N]

ROOT defaults to the standard corpus (~/.cache/codebase-bench/corpus-10k, built by
shared/bench/make-corpus.sh). With --jobs N the chunking also runs in N processes, as the
indexer may, to show the wall-clock figure on this machine. With --prepare N, N files (a fixed
shuffle, 0 for all) go through what a chunking worker does for the store (`prepare` with the
static tier: chunks, full-text documents, hashes, static vectors), in this process, in batches as
the indexer sends them; then the static tier alone (tokens, then vectors) over those chunks.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as in the indexer's workers (one per core)

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.embeddings.static import StaticEmbedder, static_text
from server.indexer.chunker import chunk_file
from server.indexer.prepare import PrepareJob, prepare
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, LoadedFile, load_file, scan_repository
from server.indexer.storing import FILES_PER_BATCH
from server.indexer.tokens import code_tokens
from server.indexer.types import FileRecord, ScannedFile

DEFAULT_ROOT = Path.home() / ".cache" / "codebase-bench" / "corpus-10k"


def _chunk_batch(batch: list[tuple[str, str | None]]) -> int:
    return sum(len(chunk_file(text, language)) for text, language in batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--jobs", type=int, default=0, help="also chunk in this many processes")
    parser.add_argument(
        "--prepare", type=int, default=None, metavar="N", help="also time a worker's prepare on N files"
    )
    args = parser.parse_args()
    root: Path = args.root.expanduser()
    if not root.is_dir():
        sys.exit(f"no such directory: {root} (build it with shared/bench/make-corpus.sh)")

    t0 = time.perf_counter()
    scan = scan_repository(root)
    t_scan = time.perf_counter() - t0

    t0 = time.perf_counter()
    loaded: list[LoadedFile] = []
    load_skipped: dict[str, int] = defaultdict(int)
    for f in scan.files:
        result = load_file(f)
        if isinstance(result, str):
            load_skipped[result] += 1
        else:
            loaded.append(result)
    t_load = time.perf_counter() - t0

    per_lang: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])  # files, lines, chunks, s
    all_chunks = 0
    chunk_texts: list[str] = []
    # CPU time, not wall time: figures stay meaningful on a machine busy with other work.
    t0, cpu0 = time.perf_counter(), time.process_time()
    for item in loaded:
        started = time.process_time()
        chunks = chunk_file(item.text, item.language)
        stats = per_lang[item.language or "(unknown)"]
        stats[0] += 1
        stats[1] += item.line_count
        stats[2] += len(chunks)
        stats[3] += time.process_time() - started
        all_chunks += len(chunks)
        chunk_texts.extend(c.content for c in chunks)
    t_chunk_wall, t_chunk = time.perf_counter() - t0, time.process_time() - cpu0

    cpu0 = time.process_time()
    token_count = sum(code_tokens(text).count(" ") + 1 for text in chunk_texts)
    t_tokens = time.process_time() - cpu0

    lines = sum(item.line_count for item in loaded)
    print(f"root: {root}")
    print(f"scan: {len(scan.files)} files listed in {t_scan * 1000:.0f} ms, skipped {dict(scan.skipped)}")
    print(f"read: {len(loaded)} files, {lines:,} lines in {t_load * 1000:.0f} ms, skipped {dict(load_skipped)}")
    print(
        f"chunk (1 process): {t_chunk:.2f} s CPU ({t_chunk_wall:.2f} s wall) = {len(loaded) / t_chunk:,.0f} "
        f"files/s, {lines / t_chunk:,.0f} lines/s, {all_chunks:,} chunks"
    )
    print(f"tokens: {token_count:,} tokens for {all_chunks:,} chunks in {t_tokens:.2f} s CPU")
    print(f"\n{'language':<12} {'files':>7} {'lines':>10} {'chunks':>8} {'CPU s':>8} {'lines/s':>11}")
    for language, (files, n_lines, n_chunks, seconds) in sorted(per_lang.items(), key=lambda kv: -kv[1][1]):
        rate = n_lines / seconds if seconds else 0.0
        print(f"{language:<12} {files:>7.0f} {n_lines:>10,.0f} {n_chunks:>8,.0f} {seconds:>8.2f} {rate:>11,.0f}")

    if args.jobs > 0:
        work = [(item.text, item.language) for item in loaded]
        batches = [work[i : i + 64] for i in range(0, len(work), 64)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            produced = sum(pool.map(_chunk_batch, batches))
        t_parallel = time.perf_counter() - t0
        print(
            f"\nchunk ({args.jobs} processes, incl. start-up and transfer): {t_parallel:.2f} s = "
            f"{lines / t_parallel:,.0f} lines/s, {produced:,} chunks"
        )

    if args.prepare is not None:
        _time_prepare(list(scan.files), args.prepare)


def _time_prepare(files: list[ScannedFile], n: int) -> None:
    random.Random(0).shuffle(files)
    jobs = [PrepareJob(f, None) for f in (files[:n] if n else files)]
    static = StaticEmbedder()  # what a worker loads once; its caches start cold, as a worker's do
    cpu0 = time.process_time()
    records = [
        r
        for i in range(0, len(jobs), FILES_PER_BATCH)
        for r in prepare(jobs[i : i + FILES_PER_BATCH], DEFAULT_MAX_FILE_SIZE, True)
    ]
    t_prepare = time.process_time() - cpu0
    rows = [(r.rel_path, c) for r in records if isinstance(r, FileRecord) for c in r.chunks]
    texts = [static_text(path, c.symbol, c.content) for path, c in rows]
    cpu0 = time.process_time()
    for text in texts:
        static.token_ids(text)
    t_ids = time.process_time() - cpu0
    cpu0 = time.process_time()
    static.embed(texts)
    t_embed = time.process_time() - cpu0
    print(
        f"\nprepare (1 process, static tier on): {len(jobs)} files, {len(rows):,} chunks in {t_prepare:.2f} s CPU "
        f"= {len(rows) / t_prepare:,.0f} chunks/s"
    )
    print(f"static tier alone, caches cold: tokens {t_ids:.2f} s CPU; tokens (cached) and vectors {t_embed:.2f} s CPU")


if __name__ == "__main__":
    main()
