"""Search quality and latency on the standard corpus (bench/../shared/bench/make-corpus.sh).

Quality: a retrieval set built from the corpus itself. Python files are sampled, copied with every
docstring replaced by `pass` (line numbers kept) and indexed with embeddings; each query is the
first sentence of a function's original docstring and its answer is that function's chunk. Reported:
MRR@10, Recall@1 and Recall@10 for full text only, vectors only, reciprocal-rank fusion and the
weighted blend over a sweep of vector weights, plus the weight chosen leave-one-library-out.

Latency: p50/p95 of CodeSearch.search (query embedding included) over mixed identifier and
natural-language queries on a fully indexed project.

    python bench/search_bench.py quality --max-files 400 [--project bench-quality-400]
    python bench/search_bench.py latency --project bench-full [--queries 200]
    python bench/search_bench.py index --project bench-full          # full corpus, embeddings too

The database: CODEBASE_MCP_DATA_DIR (embedded server) or DATABASE_URL, as for the server.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import inspect
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import numpy as np

from server.app import App
from server.db.registry import Project
from server.indexer.tokens import query_tokens
from server.search.candidates import VECTOR_CANDIDATES, CandidateQuery, Filters, fetch_candidates
from server.search.engine import CodeSearch
from server.search.ranking import VECTOR_WEIGHT, Candidate, dedupe, fuse
from server.search.request import SearchRequest
from server.search.textplan import TEXT_MATCH_BUDGET, plan_text_query
from server.settings import Settings

MAKE_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make-corpus.sh"
WEIGHTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
TOP = 10
DEFINITION_KINDS = frozenset({"function", "method"})


def corpus_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    out = subprocess.run(["bash", str(MAKE_CORPUS)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


# --- the retrieval set --------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    text: str
    rel_path: str
    def_line: int  # line of `def`, unchanged by stripping
    library: str


def _first_sentence(doc: str) -> str:
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ").strip()
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).strip()


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def strip_docstrings(source: str) -> str | None:
    """Each docstring becomes `pass` plus the newlines it spanned, so line numbers stay put."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    lines = source.split("\n")
    nodes = [d for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
             ast.AsyncFunctionDef)) and (d := _docstring_node(n)) is not None]  # fmt: skip
    for d in sorted(nodes, key=lambda d: (d.lineno, d.col_offset), reverse=True):
        assert d.end_lineno is not None and d.end_col_offset is not None
        first, last = d.lineno - 1, d.end_lineno - 1
        head = lines[first].encode()[: d.col_offset].decode()
        tail = lines[last].encode()[d.end_col_offset :].decode()
        lines[first : last + 1] = [head + "pass" + tail] + [""] * (last - first)
    out = "\n".join(lines)
    try:
        ast.parse(out)
    except SyntaxError:
        return None
    return out


def queries_of(rel_path: str, source: str, library: str) -> list[Query]:
    """Top-level functions and methods of top-level classes with a usable docstring and a body."""
    tree = ast.parse(source)
    found: list[Query] = []
    candidates: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            candidates += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            candidates.append(node)
    for fn in candidates:
        assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        doc = ast.get_docstring(fn, clean=False)
        if not doc or len(fn.body) < 2 or (fn.end_lineno or 0) - fn.lineno < 3:
            continue  # nothing left to find once the docstring is gone
        sentence = _first_sentence(doc)
        if not 4 <= len(sentence.split()) <= 40:
            continue
        found.append(Query(sentence, rel_path, fn.lineno, library))
    return found


def build_retrieval_set(root: Path, dest: Path, max_files: int, seed: int) -> list[Query]:
    """Copy `max_files` sampled .py files (docstrings stripped) under `dest`; return their queries."""
    rng = random.Random(seed)
    libraries = sorted(p.name for p in root.iterdir() if p.is_dir())
    per_library = max(1, max_files // len(libraries))
    queries: list[Query] = []
    if dest.exists():
        shutil.rmtree(dest)
    for library in libraries:
        files = sorted((root / library).rglob("*.py"))
        rng.shuffle(files)
        taken = 0
        for path in files:
            if taken == per_library:
                break
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            stripped = strip_docstrings(source)
            rel = path.relative_to(root).as_posix()
            if stripped is None:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stripped, encoding="utf-8")
            queries += queries_of(rel, source, library)
            taken += 1
    counts: dict[str, int] = {}
    for q in queries:
        counts[q.text] = counts.get(q.text, 0) + 1
    return [q for q in queries if counts[q.text] == 1]  # ambiguous sentences say nothing


# --- ranking variants ------------------------------------------------------------------------------


Ranker = Callable[[list[Candidate]], list[Candidate]]


def by_text(cands: list[Candidate]) -> list[Candidate]:
    ranked = fuse([c for c in cands if c.from_text], 0.0)
    return dedupe(ranked, TOP)


def by_vector(cands: list[Candidate]) -> list[Candidate]:
    ranked = fuse([c for c in cands if c.from_vector], 1.0)
    return dedupe(ranked, TOP)


def blended(weight: float) -> Ranker:
    return lambda cands: dedupe(fuse(cands, weight), TOP)


def rrf(cands: list[Candidate], k: int = 60) -> list[Candidate]:
    score = {c.id: 0.0 for c in cands}
    vec = sorted((c for c in cands if c.from_vector), key=lambda c: -(c.cosine or 0.0))
    txt = sorted((c for c in cands if c.from_text), key=lambda c: -c.text_raw)
    for ranking in (vec, txt):
        for rank, c in enumerate(ranking, start=1):
            score[c.id] += 1.0 / (k + rank)
    return dedupe(sorted(cands, key=lambda c: -score[c.id]), TOP)


def rank_of(results: Sequence[Candidate], q: Query) -> int | None:
    for i, c in enumerate(results, start=1):
        if c.rel_path == q.rel_path and c.kind in DEFINITION_KINDS and c.start_line <= q.def_line <= c.end_line:
            return i
    return None


@dataclass
class Metrics:
    mrr: float
    r1: float
    r10: float

    def __str__(self) -> str:
        return f"MRR@10 {self.mrr:.3f}  R@1 {self.r1:.3f}  R@10 {self.r10:.3f}"


def metrics(ranks: Sequence[int | None]) -> Metrics:
    n = max(1, len(ranks))
    return Metrics(
        sum(1.0 / r for r in ranks if r) / n,
        sum(1 for r in ranks if r == 1) / n,
        sum(1 for r in ranks if r and r <= TOP) / n,
    )


# --- commands ---------------------------------------------------------------------------------------


def _sample(rng: random.Random, items: list[Query], n: int) -> list[Query]:
    return rng.sample(items, n) if len(items) > n else items


async def _started(settings: Settings) -> App:
    app = App(settings)
    await app.start(workers=False)
    return app


async def _project(app: App, project_id: str) -> Project:
    return (await app.resolver.resolve(project_id, None, create=True)).project


async def cmd_quality(args: argparse.Namespace, settings: Settings) -> None:
    root = corpus_root(args.corpus)
    work = Path(args.workdir) / f"quality-{args.max_files}-{args.seed}"
    queries = build_retrieval_set(root, work, args.max_files, args.seed)
    rng = random.Random(args.seed)
    libraries = sorted({q.library for q in queries})
    per_library = args.queries // len(libraries)
    queries = [s for lib in libraries for s in _sample(rng, [q for q in queries if q.library == lib], per_library)]
    print(f"retrieval set: {len(queries)} queries from {args.max_files} files ({work})", flush=True)
    app = await _started(settings)
    try:
        project = await _project(app, args.project or f"bench-quality-{args.max_files}-{args.seed}")
        started = time.monotonic()
        result = await app.index(project, work, name="quality")
        print(
            f"indexed: {result.total_files} files, {result.total_chunks} chunks "
            f"({result.chunks_embedded} embedded now, {time.monotonic() - started:.0f} s)",
            flush=True,
        )
        vectors = await app.embedder.embed([q.text for q in queries])
        search = CodeSearch.from_app(app)
        pool = await app.cluster.pool(project.database_name)
        report: dict[str, object] = {"queries": len(queries), "chunks": result.total_chunks}
        for norm in args.normalizations:
            per_query: list[list[Candidate]] = []
            async with pool.acquire() as conn:
                stats = await search.term_stats(project, conn)
                for q, v in zip(queries, vectors, strict=True):
                    plan = plan_text_query(query_tokens(q.text), stats, args.text_budget)
                    per_query.append(
                        await fetch_candidates(
                            conn,
                            CandidateQuery(
                                vector=np.asarray(v, dtype=np.float32),
                                text=plan,
                                identifier=None,
                                identifier_query=None,
                                filters=Filters(),
                                vector_candidates=args.candidates,
                                text_candidates=args.candidates,
                                normalization=norm,
                            ),
                        )
                    )
            rankers: dict[str, Ranker] = {"text only": by_text, "vector only": by_vector, "rrf k=60": rrf}
            rankers.update({f"blend w={w:.2f}": blended(w) for w in WEIGHTS})
            print(f"\nts_rank normalization {norm}:")
            table: dict[str, str] = {}
            for name, ranker in rankers.items():
                m = metrics([rank_of(ranker(list(c)), q) for c, q in zip(per_query, queries, strict=True)])
                table[name] = str(m)
                print(f"  {name:<14} {m}")
            libraries = sorted({q.library for q in queries})
            print("  leave-one-library-out (weight tuned on the other two, scored on the held-out one):")
            held: list[int | None] = []
            for lib in libraries:
                train = [(c, q) for c, q in zip(per_query, queries, strict=True) if q.library != lib]
                test = [(c, q) for c, q in zip(per_query, queries, strict=True) if q.library == lib]
                best = max(WEIGHTS, key=lambda w: metrics([rank_of(blended(w)(list(c)), q) for c, q in train]).mrr)
                ranks = [rank_of(blended(best)(list(c)), q) for c, q in test]
                held += ranks
                print(f"    {lib:<20} w={best:.2f}  {metrics(ranks)}")
            print(f"    {'all held-out':<20}         {metrics(held)}")
            report[f"normalization {norm}"] = table
        # The product path end to end (defaults, dedupe, identifier handling, context reading).
        product: list[int | None] = []
        for q in queries:
            response = await search.search(SearchRequest(q.text, project_id=project.id, limit=TOP, context_lines=0))
            found = (
                i
                for i, h in enumerate(response.results, start=1)
                if h.file_path == q.rel_path and h.kind in DEFINITION_KINDS and h.start_line <= q.def_line <= h.end_line
            )
            product.append(next(found, None))
        print(f"\nCodeSearch.search (w={VECTOR_WEIGHT}): {metrics(product)}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        await app.close()


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


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def cmd_latency(args: argparse.Namespace, settings: Settings) -> None:
    app = await _started(settings)
    try:
        project = await app.registry.require(args.project)
        queries = await _latency_queries(app, project, args.queries, args.seed)
        search = CodeSearch.from_app(app)
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
    quality = sub.add_parser("quality")
    quality.add_argument("--max-files", type=int, default=400)
    quality.add_argument("--queries", type=int, default=600)
    quality.add_argument("--project")
    quality.add_argument("--workdir", default=str(Path.home() / ".cache" / "codebase-bench"))
    quality.add_argument(
        "--normalizations", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1], help="ts_rank flags"
    )
    quality.add_argument("--candidates", type=int, default=VECTOR_CANDIDATES, help="top-K from each side")
    quality.add_argument(
        "--text-budget", type=int, default=TEXT_MATCH_BUDGET, help="rows full text may rank (scale with corpus size)"
    )
    quality.add_argument("--json", help="write the tables here")
    latency = sub.add_parser("latency")
    latency.add_argument("--project", required=True)
    latency.add_argument("--queries", type=int, default=200)
    latency.add_argument("--filters", help="also time language=python and this path glob")
    index = sub.add_parser("index")
    index.add_argument("--project", required=True)
    args = parser.parse_args()
    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else Settings()
    command = {"quality": cmd_quality, "latency": cmd_latency, "index": cmd_index}[args.command]
    asyncio.run(command(args, settings))


if __name__ == "__main__":
    main()
