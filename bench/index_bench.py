"""Indexing benchmark on the standard corpus: when is it searchable, by full text and by meaning?

    python bench/index_bench.py [--corpus DIR] [--transformer full|sample|none] [--sample-seconds 180]

One run of the product's own pipeline (`index_repository`, static tier on) into a new project of the
embedded PostgreSQL in `CODEBASE_MCP_DATA_DIR` (or DATABASE_URL), with the offline s8 transformer.
Printed:

* lexically searchable: every file's chunks and full text stored (ANALYZE included);
* static tier complete: every chunk has a static vector (they are written with the chunks);
* transformer tier complete: measured (`full`), or extrapolated from the rate over the first
  `--sample-seconds` of the fill (`sample`; the run is then cancelled, as a user may);
* when the static vector index was built (a big load drops it and builds it after; `--keep-static-index`
  inserts into it row by row instead, for comparison);
* peak RSS and CPU seconds of this process, its children and its PostgreSQL backends (from /proc,
  so Linux only);
* then a nothing-changed re-index.

Figures depend on the machine's load: ratios within one run hold, absolute times swing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.indexer.pipeline import IndexResult, Progress, index_repository
from server.indexer.prepare import shutdown_executor
from server.indexer.vector_index import BULK_LOAD_MIN_CHUNKS
from server.settings import Settings

HERE = Path(__file__).resolve().parent


def corpus_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    script = HERE.parent.parent / "shared" / "bench" / "make-corpus.sh"
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _processes() -> dict[int, tuple[int, float, int, str]]:
    """pid → (parent pid, CPU seconds, RSS kB, command line) of every process (Linux /proc)."""
    out: dict[int, tuple[int, float, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
        out[int(entry.name)] = (int(fields[1]), cpu, int(fields[21]) * _PAGE_KB, cmdline)
    return out


class ProcSampler:
    """Peak resident memory and CPU seconds of this process, of its children (the chunking workers
    and their forkserver) and of the PostgreSQL backends serving `database`, sampled twice a
    second from /proc (Linux only). CPU seconds are less swayed by other load than wall time."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.own_rss = self.largest_child_rss = self.total_rss = 0
        self.cpu: dict[str, dict[int, float]] = {"this process": {}, "workers": {}, "postgres": {}}
        self.baseline: dict[str, float] = {}
        self._stop = asyncio.Event()

    def sample(self) -> None:
        procs = _processes()
        me = os.getpid()
        below: list[int] = []
        todo = [me]
        while todo:
            parent = todo.pop()
            children = [pid for pid, (ppid, *_) in procs.items() if ppid == parent]
            below.extend(children)
            todo.extend(children)
        if me in procs:
            self.own_rss = max(self.own_rss, procs[me][2])
            self.cpu["this process"][me] = procs[me][1]
        rss = [procs[pid][2] for pid in below]
        self.largest_child_rss = max(self.largest_child_rss, max(rss, default=0))
        self.total_rss = max(self.total_rss, procs.get(me, (0, 0.0, 0, ""))[2] + sum(rss))
        for pid in below:
            self.cpu["workers"][pid] = procs[pid][1]
        ours = {pid for pid, (*_, cmd) in procs.items() if cmd.startswith("postgres:") and f" {self.database} " in cmd}
        for pid, (_, cpu, _, cmd) in procs.items():
            # ... and the parallel workers of their index builds
            if pid in ours or (cmd.startswith("postgres: parallel worker for PID ") and int(cmd.split()[-1]) in ours):
                self.cpu["postgres"][pid] = cpu

    def cpu_seconds(self) -> dict[str, float]:
        return {k: sum(v.values()) - self.baseline.get(k, 0.0) for k, v in self.cpu.items()}

    def start(self) -> None:
        self.sample()
        self.baseline = self.cpu_seconds()

    async def run(self) -> None:
        while not self._stop.is_set():
            await asyncio.to_thread(self.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)

    def stop(self) -> None:
        self._stop.set()


class Milestones:
    """Seconds from the start of the run to each phase and tier milestone, from its progress reports."""

    def __init__(self, procs: ProcSampler | None = None) -> None:
        self.t0 = time.perf_counter()
        self.procs = procs
        self.cpu_at_searchable: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.latest: dict[str, float] = {}
        self.embedding = asyncio.Event()
        self.embedded_at_start = 0
        self.last: Progress | None = None

    def at(self, name: str) -> float:
        return self.first.get(name, float("nan"))

    async def __call__(self, p: Progress) -> None:
        now = time.perf_counter() - self.t0
        self.first.setdefault(p.phase, now)
        self.latest[p.phase] = now
        if p.searchable_at is not None and "searchable" not in self.first:
            self.first["searchable"] = now
            if self.procs is not None:  # the CPU of the store phase, apart from the index build after
                await asyncio.to_thread(self.procs.sample)
                self.cpu_at_searchable = self.procs.cpu_seconds()
        if p.semantic_at is not None:
            self.first.setdefault("semantic", now)
        if p.phase == "embedding" and not self.embedding.is_set():
            self.embedded_at_start = p.chunks_embedded
            self.embedding.set()
        self.last = p


async def _until_embedding_or_done(seen: Milestones, task: asyncio.Task[IndexResult]) -> None:
    waiter = asyncio.create_task(seen.embedding.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


async def run(args: argparse.Namespace) -> None:
    root = corpus_root(args.corpus)
    files_on_disk = sum(len(f) for _, _, f in os.walk(root))
    settings = Settings() if args.models_dir is None else Settings(embedding_models_dir=args.models_dir)
    app = App(settings)
    await app.start(workers=False)
    project = (await app.resolver.resolve(f"bench-{int(time.time())}", None, create=True)).project
    pool = await app.cluster.pool(project.database_name)
    # The transformer loads when the fill first embeds, as in the product (its load is in the fill's time).
    print(f"corpus: {root} ({files_on_disk} files on disk); transformer {app.embedder.name}; static tier on")
    print(f"data dir: {settings.data_dir} (project {project.id})")

    procs = ProcSampler(project.database_name)
    procs.start()
    sampler = asyncio.create_task(procs.run())
    seen = Milestones(procs)
    embedder = None if args.transformer == "none" else app.embedder
    bulk_load_chunks = 2**62 if args.keep_static_index else BULK_LOAD_MIN_CHUNKS
    task = asyncio.create_task(
        index_repository(
            root, "corpus", pool, embedder, progress_callback=seen, static_tier=True, bulk_load_chunks=bulk_load_chunks
        )
    )
    completed = True
    if args.transformer == "sample":
        await _until_embedding_or_done(seen, task)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), args.sample_seconds)
        if not task.done():
            task.cancel()
            completed = False
    with contextlib.suppress(asyncio.CancelledError):
        await task
    wall = time.perf_counter() - seen.t0
    procs.stop()
    await sampler
    last = seen.last
    assert last is not None
    searchable = seen.at("searchable")
    print(f"files: {last.files_indexed} indexed of {last.files_scanned} scanned; chunks: {last.chunks_created}")
    print(f"scan done:            {seen.at('storing'):7.1f} s  (first batch stored)")
    print(f"lexically searchable: {searchable:7.1f} s  ({last.chunks_created / searchable:,.0f} chunks/s)")
    print(f"static tier complete: {seen.at('semantic'):7.1f} s  (static coverage {last.static_coverage:.1%})")
    if "vector_index" in seen.first:
        built, took = seen.latest["vector_index"], seen.latest["vector_index"] - seen.first["vector_index"]
        print(f"static index built:   {built:7.1f} s  (dropped for the load, built after in {took:.1f} s)")
    else:
        print("static index:         kept during the load (rows inserted one by one)")
    if embedder is not None and "embedding" in seen.first:
        fill_seconds = wall - seen.at("embedding")
        done = last.chunks_embedded - seen.embedded_at_start
        rate = done / fill_seconds if fill_seconds > 0 else 0.0
        if completed:
            print(f"transformer complete: {wall:7.1f} s  ({done} chunks at {rate:,.1f} chunks/s)")
        else:
            left = last.total_chunks * (1 - last.transformer_coverage)
            estimate = wall + left / rate if rate > 0 else float("inf")
            print(
                f"transformer tier:     {done} chunks in {fill_seconds:.0f} s = {rate:,.1f} chunks/s; "
                f"complete after ~{estimate / 60:,.1f} min (extrapolated; {left:,.0f} chunks left)"
            )
    print(
        f"peak RSS: this process {procs.own_rss / 1024:,.0f} MB, "
        f"largest child {procs.largest_child_rss / 1024:,.0f} MB, "
        f"all together {procs.total_rss / 1024:,.0f} MB (PostgreSQL's server not included)"
    )
    cpu = procs.cpu_seconds()
    print("CPU seconds: " + ", ".join(f"{k} {v:,.1f}" for k, v in cpu.items()) + f"; total {sum(cpu.values()):,.1f}")
    if seen.cpu_at_searchable:
        upto = seen.cpu_at_searchable
        print(
            "  of which until searchable: "
            + ", ".join(f"{k} {v:,.1f}" for k, v in upto.items())
            + f"; total {sum(upto.values()):,.1f}"
        )
    t2 = time.perf_counter()
    again = await index_repository(root, "corpus", pool, None, static_tier=True)
    print(
        f"re-index, nothing changed: {time.perf_counter() - t2:.2f} s "
        f"(files indexed {again.files_indexed}, unchanged {again.files_unchanged})"
    )
    shutdown_executor()
    await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus")
    parser.add_argument("--transformer", choices=["full", "sample", "none"], default="sample")
    parser.add_argument("--sample-seconds", type=float, default=180.0)
    parser.add_argument(
        "--keep-static-index", action="store_true", help="insert into the static HNSW index while loading"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="where the derived s8 model is cached")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
