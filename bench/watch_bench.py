"""Freshness benchmark: how soon edits are searchable while repositories are watched (figures only).

    python bench/watch_bench.py [--repo DIR] [--edits 50] [--branch-files 1000] [--idle-seconds 60]
                                [--skip latency,branch,idle] [--workdir DIR] [--vectors real|placeholder]

Copies a mid-size repository (default: SQLAlchemy 2.0.44 from the standard corpus,
`../shared/bench/make-corpus.sh`, ~1,200 files, ~40K chunks) into a temporary git repository,
indexes it (full text; transformer vectors computed with `--vectors real`, else random
placeholders so the repository looks fully embedded), then runs an App as `codebase-mcp serve`
does: workers and the watcher in one process, on the embedded PostgreSQL of
CODEBASE_MCP_DATA_DIR (or DATABASE_URL).

- latency: N single-file edits, one at a time, each appending a function with a new identifier;
  from the moment the write returns: (a) `search_code` (the real engine) ranks the new function
  first for its identifier: through full text; (b) the new chunk has its transformer vector
  stored (what vector search reads). p50/p95/max of both.
- branch: `git checkout` of a branch that changes M files; from the checkout's return until
  every changed file is stored (searchable) and until every job has finished (vectors too).
- idle: a separate `codebase-mcp watch` process on the repository, idle; its CPU share over a
  window, from /proc (user + system time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import numpy as np
from pgvector import Vector

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.db.registry import Project
from server.indexer.pipeline import index_repository
from server.indexer.prepare import shutdown_executor
from server.indexer.scanner import scan_repository
from server.search.engine import CodeSearch
from server.search.request import SearchRequest
from server.settings import Settings

HERE = Path(__file__).resolve().parent
POLL = 0.02


def corpus_repo(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    # ../shared/bench beside the checkout (or beside the folder of worktrees)
    script = next(p / "shared" / "bench" / "make-corpus.sh" for p in HERE.parents if (p / "shared" / "bench").is_dir())
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1]) / "sqlalchemy-2.0.44"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered):.3f} s  p95 {p95:.3f} s  max {ordered[-1]:.3f} s  (n={len(ordered)})"


async def settled(pool: asyncpg.Pool) -> bool:
    n: int = await pool.fetchval("SELECT count(*) FROM indexing_jobs WHERE status IN ('pending', 'running')")
    return n == 0


async def wait_settled(pool: asyncpg.Pool, within: float = 3600) -> None:
    deadline = time.monotonic() + within
    while not await settled(pool):
        if time.monotonic() > deadline:
            raise TimeoutError("jobs did not finish")
        await asyncio.sleep(0.1)


async def latency(app: App, project: Project, pool: asyncpg.Pool, repo: Path, edits: int) -> None:
    # No query-time re-rank: it would store the new chunk's vector itself and hide the refresh's.
    base = CodeSearch.from_app(app)
    search = CodeSearch(
        cluster=base.cluster, registry=base.registry, resolver=base.resolver, embedder=base.embedder,
        static=base.static, rerank=0,
    )  # fmt: skip
    targets = [f for f in scan_repository(repo).files if f.rel_path.endswith(".py")][:edits]
    text_times: list[float] = []
    vector_times: list[float] = []
    search_ms: list[float] = []
    stages: dict[str, list[float]] = {"queued": [], "claimed": [], "stored": [], "completed": []}
    misses = 0
    for n, target in enumerate(targets):
        ident = f"watchbench_{n}_{uuid.uuid4().hex[:8]}"
        append(
            target.path,
            f"\n\ndef {ident}(values):\n    # Sum the squares of the values (edit {n}).\n"
            "    return sum(v * v for v in values)\n",
        )
        t0 = time.perf_counter()
        wrote = time.time()
        text_at = vector_at = None
        deadline = t0 + 60
        while (text_at is None or vector_at is None) and time.perf_counter() < deadline:
            issued = time.perf_counter()
            if text_at is None:
                found = await search.search(SearchRequest(ident, project.id, limit=1, context_lines=0))
                search_ms.append(found.took_ms)
                if found.results and found.results[0].symbol == ident:
                    text_at = issued - t0  # a search issued this long after the write finds it
            if vector_at is None:
                issued = time.perf_counter()
                if await pool.fetchval("SELECT embedding IS NOT NULL FROM chunks WHERE symbol = $1 LIMIT 1", ident):
                    vector_at = issued - t0
            await asyncio.sleep(POLL)
        if text_at is None or vector_at is None:
            misses += 1
            continue
        found = await search.search(SearchRequest(ident, project.id, limit=1, context_lines=0))
        if not found.results or found.results[0].scores.cosine is None:
            print(f"  edit {n}: vector stored but search shows no cosine")
        text_times.append(text_at)
        vector_times.append(vector_at)
        await wait_settled(pool)
        row = await pool.fetchrow(
            """
            SELECT extract(epoch FROM j.created_at) AS queued, extract(epoch FROM j.started_at) AS claimed,
                   extract(epoch FROM f.indexed_at) AS stored, extract(epoch FROM j.completed_at) AS completed
            FROM indexing_jobs j JOIN files f ON f.rel_path = $1
            WHERE j.kind = 'refresh' AND j.metadata->'paths' ? $1 ORDER BY j.created_at DESC LIMIT 1
            """,
            target.rel_path,
        )
        if row is not None:
            for stage in stages:
                stages[stage].append(float(row[stage]) - wrote)
        await asyncio.sleep(0.3)
    print(f"edit -> search_code finds it (full text):  {quantiles(text_times)}")
    print(f"edit -> its transformer vector is stored:    {quantiles(vector_times)}")
    print(f"  search_code itself: median {statistics.median(search_ms):.0f} ms")
    if misses:
        print(f"  {misses} edits not found within 60 s")
    medians = ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in stages.items() if v)
    print(f"  refresh job, median seconds after the write: {medians}")


async def branch_switch(pool: asyncpg.Pool, repo: Path, files: int) -> None:
    changed = [f for f in scan_repository(repo).files if f.language is not None][:files]
    git(repo, "checkout", "-qb", "bench-branch")
    for n, f in enumerate(changed):
        append(f.path, f"\n\ndef branch_marker_{n}():\n    return {n}\n" if f.language == "python" else f"\nm {n}\n")
    git(repo, "commit", "-qam", "branch")
    git(repo, "checkout", "-q", "main")
    await asyncio.sleep(1.0)
    await wait_settled(pool)  # the watcher saw the two checkouts above: let them settle first
    # Texts no chunk holds any more (a previous run's markers) leave the embedding cache, so every
    # run embeds the switch's new chunks as the first one did.
    purged = await pool.execute(
        "DELETE FROM embedding_cache e WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.embed_hash = e.text_hash)"
    )
    print(f"  embedding cache: {purged.split()[-1]} texts no chunk holds removed")
    rel_paths = [f.rel_path for f in changed]
    rows = await pool.fetch("SELECT rel_path, content_hash FROM files WHERE rel_path = ANY($1)", rel_paths)
    before: dict[str, str] = {r["rel_path"]: r["content_hash"] for r in rows}
    print(f"branch switch: {len(changed)} files differ ({len(before)} of them indexed before)")

    async def stored() -> int:
        rows = await pool.fetch("SELECT rel_path, content_hash FROM files WHERE rel_path = ANY($1)", rel_paths)
        return len([r for r in rows if r["content_hash"] != before.get(r["rel_path"])])

    t0 = time.perf_counter()
    git(repo, "checkout", "-q", "bench-branch")
    checkout = time.perf_counter() - t0
    t0 = time.perf_counter()
    stored_at = None
    while True:
        if stored_at is None and await stored() >= len(changed):
            stored_at = time.perf_counter() - t0
        if stored_at is not None and await settled(pool):
            break
        if time.perf_counter() - t0 > 1800:
            when = f"after {stored_at:.2f} s" if stored_at is not None else f"{await stored()} of them"
            print(f"  every changed file stored {when}; jobs not done after 1800 s")
            return
        await asyncio.sleep(0.05)
    done = time.perf_counter() - t0
    kinds = await pool.fetch(
        "SELECT kind, count(*) AS n FROM indexing_jobs WHERE created_at > now() - make_interval(secs => $1) "
        "GROUP BY kind",
        done + 1,
    )
    print(f"  git checkout itself: {checkout:.2f} s")
    print(f"  every changed file stored (searchable) after {stored_at:.2f} s")
    print(f"  all jobs done (transformer vectors too) after {done:.2f} s")
    print("  jobs: " + ", ".join(f"{r['n']} {r['kind']}" for r in kinds))
    timeline = await pool.fetch(
        """
        SELECT kind, created_at, started_at, completed_at, metadata->>'searchable_at' AS searchable_at,
               chunks_created AS created, (metadata->>'chunks_embedded')::int AS embedded
        FROM indexing_jobs WHERE created_at > now() - make_interval(secs => $1) ORDER BY created_at
        """,
        done + 1,
    )
    for r in timeline:
        start = r["created_at"].timestamp()
        searchable = float(r["searchable_at"]) - start if r["searchable_at"] else float("nan")
        print(
            f"  {r['kind']} job: started +{r['started_at'].timestamp() - start:.2f} s, searchable +{searchable:.2f} s, "
            f"done +{r['completed_at'].timestamp() - start:.2f} s after it was queued; "
            f"{r['created']} chunks written, {r['embedded']} embedded"
        )


async def placeholder_vectors(pool: asyncpg.Pool, dim: int = 384) -> int:
    """Random unit vectors for every chunk still without a transformer vector, kept in the embedding
    cache too (as computed ones are): a repository that looks fully embedded without hours of
    transformer work on a busy machine. Only the vectors of edited chunks, which the refresh jobs
    compute for real, are measured."""
    rng = np.random.default_rng(7)
    done = 0
    while True:
        ids = [r["id"] for r in await pool.fetch("SELECT id FROM chunks WHERE embedding IS NULL LIMIT 2000")]
        if not ids:
            break
        vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        await pool.execute(
            "UPDATE chunks SET embedding = u.v FROM unnest($1::bigint[], $2::vector[]) AS u(i, v) WHERE id = u.i",
            ids,
            [Vector(v) for v in vectors],
        )
        done += len(ids)
    await pool.execute(
        """
        INSERT INTO embedding_cache (text_hash, embedding)
        SELECT DISTINCT ON (embed_hash) embed_hash, embedding FROM chunks
        WHERE embedding IS NOT NULL AND embed_hash IS NOT NULL
        ON CONFLICT (text_hash) DO NOTHING
        """
    )
    return done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(repo: Path, seconds: float, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "codebase_mcp", "watch", str(repo), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(20)  # start-up, the lease, the watches of every folder
        if proc.returncode is not None:
            print(f"watch process exited with {proc.returncode}")
            return
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        used, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - t0
        print(f"idle `codebase-mcp watch` ({repo.name}): {used:.2f} s CPU in {wall:.0f} s = {100 * used / wall:.2f} %")
    finally:
        proc.terminate()
        await proc.wait()


def prepare_copy(source: Path, workdir: Path | None) -> tuple[Path, bool]:
    """A git copy of `source`: fresh in a temporary folder, or kept in `workdir` across runs (reset)."""
    if workdir is None:
        repo = Path(tempfile.mkdtemp(prefix="cbmcp-watch-bench-")) / source.name
    else:
        repo = workdir / source.name
        if (repo / ".git").is_dir():
            git(repo, "checkout", "-qf", "main")
            git(repo, "reset", "-q", "--hard")
            git(repo, "clean", "-qfdx")
            subprocess.run(["git", "-C", str(repo), "branch", "-qD", "bench-branch"], stderr=subprocess.DEVNULL)
            return repo, True
    shutil.copytree(source, repo, symlinks=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "import")
    return repo, False


async def run(args: argparse.Namespace) -> None:
    skip = set(args.skip.split(",")) if args.skip else set()
    source = corpus_repo(args.repo)
    repo, kept = prepare_copy(source, Path(args.workdir).resolve() if args.workdir else None)
    settings = Settings(watch_lease_retry_seconds=1.0)
    print(f"repository: {source} ({sum(len(f) for _, _, f in os.walk(source))} files); data: {settings.data_dir}")
    app = App(settings)
    await app.start(workers=True)
    closed = False
    try:
        name = f"watch-bench-{repo.parent.name}" if kept or args.workdir else f"watch-bench-{uuid.uuid4().hex[:6]}"
        project = (await app.resolver.resolve(name.lower()[:60], None, create=True)).project
        assert app.cluster is not None and app.worker is not None
        await app.worker._add_project(project)
        pool = await app.cluster.pool(project.database_name)
        t0 = time.perf_counter()
        if args.vectors == "real":
            result = await app.index(project, repo)
        else:
            # static vectors as `serve` stores them; transformer ones are placeholders
            result = await index_repository(repo, repo.name, pool, None, static_tier=app.static_embedder is not None)
            placeholders = await placeholder_vectors(pool)
            print(f"  {placeholders} chunks got placeholder transformer vectors (--vectors placeholder)")
        print(
            f"{'re-' if kept else 'full '}index: {result.files_indexed} files indexed, {result.total_chunks} chunks, "
            f"{result.chunks_embedded} embedded, {time.perf_counter() - t0:.0f} s"
        )
        await app.start_watching([repo.resolve()])
        await wait_settled(pool)  # the catch-up job of the first lease
        print(f"watching; debounce {settings.watch_debounce_ms} ms, mass change > {settings.watch_mass_change_files}")
        if "latency" not in skip:
            await latency(app, project, pool, repo, args.edits)
        if "branch" not in skip:
            await branch_switch(pool, repo, args.branch_files)
        if "idle" not in skip:
            await app.close()  # only the separate watch process runs now
            closed = True
            await idle(repo, args.idle_seconds, dict(os.environ))
    finally:
        if not closed:
            await app.close()
        shutdown_executor()
        if not args.workdir:
            shutil.rmtree(repo.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", help="repository to copy (default: SQLAlchemy from the standard corpus)")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--branch-files", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--skip", default="", help="comma-separated: latency, branch, idle")
    parser.add_argument("--workdir", help="keep the copy (and its index) here across runs; reset before each")
    parser.add_argument(
        "--vectors", choices=["real", "placeholder"], default="placeholder",
        help="the initial index's transformer vectors: computed (hours for the corpus on a busy 2-core box), "
        "or random placeholders (the edits' vectors are always computed)",
    )  # fmt: skip
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
