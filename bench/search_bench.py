"""Search latency and the full standard corpus (bench/../shared/bench/make-corpus.sh); quality lives in
bench/quality (python -m bench.quality), which `quality` here runs for the Python libraries.

Latency: p50/p95 of CodeSearch.search (query embedding included) over mixed identifier and
natural-language queries on a fully indexed project; with --mcp, of the `search_code` tool called
through an in-memory FastMCP client (request validation and response serialisation included).

    python bench/search_bench.py quality [--max-files 150] [--sets doc]     # per library; see bench/quality
    python bench/search_bench.py latency --project bench-full [--queries 200] [--queries-file F] [--mcp]
    python bench/search_bench.py index --project bench-full          # full corpus, embeddings too

The database: CODEBASE_MCP_DATA_DIR (embedded server) or DATABASE_URL, as for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from fastmcp import Client

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.db.registry import Project
from server.mcp.server import build_server
from server.search.engine import CodeSearch
from server.search.models import SearchResponse
from server.search.request import SearchRequest
from server.settings import Settings

MAKE_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make-corpus.sh"


def corpus_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    out = subprocess.run(["bash", str(MAKE_CORPUS)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


async def _started(settings: Settings) -> App:
    app = App(settings)
    await app.start(workers=False)
    return app


async def _project(app: App, project_id: str) -> Project:
    return (await app.resolver.resolve(project_id, None, create=True)).project


def cmd_quality(args: argparse.Namespace) -> None:
    """The Python docstring → definition set, now one query set of the multi-language suite."""
    from bench.quality.__main__ import main as quality_main

    argv = ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["run", "--languages", "python", "--sets", args.sets, "--max-files", str(args.max_files)]
    argv += ["--seed", str(args.seed), *(["--json", args.json] if args.json else [])]
    quality_main(argv)


async def _latency_queries(app: App, project: Project, n: int, seed: int) -> list[str]:
    """Half identifiers (symbols of indexed chunks), half first sentences of docstrings."""
    pool = await app.cluster.pool(project.database_name)
    rows = await pool.fetch(
        "SELECT symbol, content, language FROM chunks TABLESAMPLE SYSTEM (5) REPEATABLE ($1) "
        "WHERE symbol IS NOT NULL AND kind IN ('function', 'method', 'class') LIMIT 5000",
        seed,
    )
    rng = random.Random(seed)
    identifiers = sorted({r["symbol"].split(".")[-1] if rng.random() < 0.5 else r["symbol"] for r in rows})
    sentences = []
    for r in rows:
        m = re.search(r'"""\s*(.+?[.!?])(\s|""")', r["content"], re.S)
        if r["language"] == "python" and m and 4 <= len(m.group(1).split()) <= 30:
            sentences.append(" ".join(m.group(1).split()))
    rng.shuffle(identifiers)
    rng.shuffle(sentences)
    mixed = identifiers[: n // 2] + sentences[: n - n // 2]
    rng.shuffle(mixed)
    return mixed


class _McpSearch:
    """`search_code` through one FastMCP client session, answering as CodeSearch.search does."""

    def __init__(self, client: Client[Any]) -> None:
        self.client = client

    async def search(self, request: SearchRequest) -> SearchResponse:
        args = {k: v for k, v in dataclasses.asdict(request).items() if v is not None}
        result = await self.client.call_tool("search_code", args)
        return SearchResponse.model_validate(result.structured_content)


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def cmd_latency(args: argparse.Namespace, settings: Settings) -> None:
    app = await _started(settings)
    stack = contextlib.AsyncExitStack()
    try:
        project = await app.registry.require(args.project)
        if args.queries_file:
            queries = [q for q in Path(args.queries_file).read_text().splitlines() if q.strip()][: args.queries]
        else:
            queries = await _latency_queries(app, project, args.queries, args.seed)
        client: Client[Any] | None = None
        if args.mcp:
            client = await stack.enter_async_context(Client(build_server(app, manage_app=False)))
        search: _McpSearch | CodeSearch = _McpSearch(client) if client else CodeSearch.from_app(app)
        filters: list[dict[str, str]] = [{}]
        if args.filters:
            filters += [{"language": "python"}, {"path_glob": args.filters}]
        for extra in filters:
            for q in queries[:10]:  # load the model, open pools, fill caches
                await search.search(SearchRequest(q, project_id=project.id, **extra))  # type: ignore[arg-type]
            # First pass: these queries never ran (cold pages); second pass: the same, warm.
            for label in ("first pass", "second pass"):
                timings: list[float] = []
                modes: set[str] = set()
                for q in queries:
                    t0 = time.perf_counter()
                    response = await search.search(SearchRequest(q, project_id=project.id, **extra))  # type: ignore[arg-type]
                    timings.append((time.perf_counter() - t0) * 1000)
                    modes.add(response.mode)
                print(
                    f"{len(queries)} queries, {label}, {extra or 'no filters'}, {response.total_chunks} chunks "
                    f"(mode {'/'.join(sorted(modes))}, coverage {response.embedding_coverage:.0%}): "
                    f"p50 {statistics.median(timings):.1f} ms, p95 {_percentile(timings, 95):.1f} ms, "
                    f"max {max(timings):.1f} ms; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
                    flush=True,
                )
    finally:
        await stack.aclose()
        await app.close()


async def cmd_index(args: argparse.Namespace, settings: Settings) -> None:
    root = corpus_root(args.corpus)
    app = await _started(settings)
    try:
        project = await _project(app, args.project)
        result = await app.index(project, root, name="corpus-10k")
        print(f"{result.total_files} files, {result.total_chunks} chunks, {result.duration_seconds:.0f} s")
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="embedded PostgreSQL data dir (default: CODEBASE_MCP_DATA_DIR)")
    parser.add_argument("--corpus", help="corpus root (default: built by make-corpus.sh)")
    parser.add_argument("--seed", type=int, default=7)
    sub = parser.add_subparsers(dest="command", required=True)
    quality = sub.add_parser("quality", help="python -m bench.quality run --languages python")
    quality.add_argument("--max-files", type=int, default=150, help="files per library")
    quality.add_argument("--sets", default="doc", help="query sets: doc,ident,docs,tests")
    quality.add_argument("--json", help="write the results here")
    latency = sub.add_parser("latency")
    latency.add_argument("--project", required=True)
    latency.add_argument("--queries", type=int, default=200)
    latency.add_argument("--filters", help="also time language=python and this path glob")
    latency.add_argument("--queries-file", help="the queries, one a line (default: sampled from the project)")
    latency.add_argument("--mcp", action="store_true", help="through an MCP client (the search_code tool)")
    index = sub.add_parser("index")
    index.add_argument("--project", required=True)
    args = parser.parse_args()
    if args.command == "quality":
        cmd_quality(args)
        return
    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else Settings()
    command = {"latency": cmd_latency, "index": cmd_index}[args.command]
    asyncio.run(command(args, settings))


if __name__ == "__main__":
    main()
