"""Everything the suite knows about the engine, in one place.

* `indexable(root)`: the files the engine's scanner would index (the sample is drawn from them).
* `Engine.index`: the product's own pipeline (`App.index`), full text and vectors.
* `Engine.product`: the public search path (`CodeSearch.search`, as the `search_code` tool
  calls it); each query's ranked (path, start, end).
* `Engine.features` + `rerank`: each query's candidates gathered ONCE with their per-signal
  features, then re-ranked offline under any weights, so a sweep never queries again.

Features today: `cosine` (None: no vector yet), `text_raw` (Σ idf·ts_rank), `identifier` (boost when
the query names the symbol), `kind`, `path`, `symbol`. A weight configuration is a mapping:

    vector       w in  w·cosine + (1 − w)·text  (the product's blend, `fuse`)
    identifier   multiplier of the identifier boost (the product: 1)
    rrf          k of reciprocal-rank fusion of the vector and text rankings, instead of the blend

To add a feature: compute it per candidate in `_features_of` (a new column of `Cand.values`), add
its weight to `extra_score` (a new key in the mapping, default 0), and extend `GRID`. Candidate
features are cached on disk, keyed by the index's state and the engine's search source code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product as cartesian
from pathlib import Path
from typing import Any, cast

import numpy as np

from server.app import App
from server.db.registry import Project
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, scan_repository
from server.indexer.tokens import query_tokens
from server.indexer.types import ChunkKind
from server.search.candidates import CandidateQuery, Filters, fetch_candidates
from server.search.engine import CodeSearch
from server.search.ranking import VECTOR_WEIGHT, Candidate, dedupe, fuse
from server.search.request import SearchRequest, identifier_of
from server.search.textplan import TEXT_MATCH_BUDGET, plan_identifier, plan_text_query
from server.settings import Settings

LIMIT = 10
Hit = tuple[str, int, int]  # (path, start line, end line)
Weights = Mapping[str, float]

PRODUCT_WEIGHTS: dict[str, float] = {"vector": VECTOR_WEIGHT, "identifier": 1.0}
NAMED: dict[str, dict[str, float]] = {
    "current": PRODUCT_WEIGHTS,  # today's ranking, re-ranked from cached features
    "text": {"vector": 0.0, "identifier": 1.0},
    "vector": {"vector": 1.0, "identifier": 1.0},
    "rrf": {"rrf": 60.0, "identifier": 1.0},
}
# The sweep that leave-one-library-out chooses from. Ties go to the earlier entry: the product's
# weights first, and for each vector weight the product's identifier weight before the others.
GRID: list[dict[str, float]] = [PRODUCT_WEIGHTS] + [
    {"vector": v, "identifier": i}
    for v, i in cartesian((0.85, 0.8, 0.9, 0.75, 0.95, 0.7, 1.0, 0.6, 0.5), (1.0, 0.5, 2.0))
    if {"vector": v, "identifier": i} != PRODUCT_WEIGHTS
]
_ROOT = Path(__file__).resolve().parents[2]
_SEARCH_SOURCES = [
    *sorted((_ROOT / "server" / "search").glob("*.py")),
    _ROOT / "server/indexer/tokens.py",
    _ROOT / "bench/quality/adapter.py",
]


def indexable(root: Path) -> list[str]:
    return [f.rel_path for f in scan_repository(root, max_file_size=DEFAULT_MAX_FILE_SIZE).files]


@dataclass(frozen=True, slots=True)
class IndexStats:
    files: int
    chunks: int
    embedded_now: int
    seconds: float


# --- candidates and their features ---------------------------------------------------------------

Chunk = tuple[int, int, str, str, int, int, str | None, str, str, str]
# (id, file_id, repository_id, path, start, end, symbol, kind, language, content_hash)


@dataclass(frozen=True, slots=True)
class Cand:
    chunk: int  # chunk id: its static facts live in FeatureSet.chunks
    values: tuple[float | None, float, bool, bool, float]  # cosine, text_raw, from_vector, from_text, identifier


@dataclass(slots=True)
class FeatureSet:
    """One query set's candidates: static chunk facts once, per-query signal values."""

    chunks: dict[int, Chunk]
    queries: list[list[Cand]]

    def to_json(self) -> dict[str, Any]:
        queries = [[[c.chunk, *c.values] for c in q] for q in self.queries]
        return {"chunks": list(self.chunks.values()), "queries": queries}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSet:
        chunks = {int(c[0]): tuple(c) for c in data["chunks"]}
        queries = [[Cand(int(c[0]), (c[1], c[2], c[3], c[4], c[5])) for c in q] for q in data["queries"]]
        return cls(chunks, queries)


def _candidate(chunk: Chunk, values: tuple[float | None, float, bool, bool, float]) -> Candidate:
    cid, file_id, repo, path, start, end, symbol, kind, language, content_hash = chunk
    c = Candidate(cid, file_id, uuid.UUID(repo), path, start, end, symbol, cast(ChunkKind, kind), language,
                  content_hash, values[0], values[1], values[2], values[3])  # fmt: skip
    c.identifier = values[4]
    return c


def extra_score(c: Candidate, weights: Weights) -> float:
    """What `weights` add to the product's blend (zero at the product's own weights)."""
    return (weights.get("identifier", 1.0) - 1.0) * c.identifier


def rerank(features: FeatureSet, i: int, weights: Weights, limit: int = LIMIT) -> list[Hit]:
    """Query `i`'s candidates ranked under `weights`, deduplicated as the product does."""
    cands = [_candidate(features.chunks[c.chunk], c.values) for c in features.queries[i]]
    if "rrf" in weights:
        return [(c.rel_path, c.start_line, c.end_line) for c in dedupe(_rrf(cands, weights), limit)]
    ranked = fuse(cands, weights.get("vector", VECTOR_WEIGHT))
    extra = [extra_score(c, weights) for c in ranked]
    if any(extra):
        for c, e in zip(ranked, extra, strict=True):
            c.score += e
        ranked.sort(key=lambda c: (-c.score, c.rel_path, c.start_line))
    return [(c.rel_path, c.start_line, c.end_line) for c in dedupe(ranked, limit)]


def _rrf(cands: list[Candidate], weights: Weights) -> list[Candidate]:
    """Σ 1/(k + rank) over the vector and the full-text ranking, plus the weighted identifier boost."""
    k = weights["rrf"]
    vec = sorted((c for c in cands if c.from_vector), key=lambda c: -(c.cosine or 0.0))
    txt = sorted((c for c in cands if c.from_text), key=lambda c: -c.text_raw)
    for c in cands:
        c.score = weights.get("identifier", 1.0) * c.identifier
    for ranking in (vec, txt):
        for rank, c in enumerate(ranking, start=1):
            c.score += 1.0 / (k + rank)
    return sorted(cands, key=lambda c: (-c.score, c.rel_path, c.start_line))


# --- the engine ------------------------------------------------------------------------------


class Engine:
    def __init__(self, settings: Settings, cache: Path) -> None:
        self.app = App(settings)
        self.cache = cache
        self.search: CodeSearch | None = None

    async def __aenter__(self) -> Engine:
        await self.app.start(workers=False)
        self.search = CodeSearch.from_app(self.app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.close()

    async def _project(self, project_id: str) -> Project:
        return (await self.app.resolver.resolve(project_id, None, create=True)).project

    async def index(self, project_id: str, root: Path, name: str) -> IndexStats:
        """Index, then ANALYZE: the pipeline leaves term statistics to autovacuum, and until it runs
        search ranks full text without IDF weights; every configuration must see the same state."""
        started = time.monotonic()
        result = await self.app.index(await self._project(project_id), root, name=name)
        await self._pool_fetch(project_id, "ANALYZE chunks")
        return IndexStats(result.total_files, result.total_chunks, result.chunks_embedded, time.monotonic() - started)

    async def _pool_fetch(self, project_id: str, sql: str) -> list[Any]:
        assert self.app.cluster is not None
        pool = await self.app.cluster.pool((await self._project(project_id)).database_name)
        return list(await pool.fetch(sql))

    async def indexed_paths(self, project_id: str) -> set[str]:
        rows = await self._pool_fetch(project_id, "SELECT rel_path FROM files WHERE NOT is_deleted")
        return {r["rel_path"] for r in rows}

    async def fingerprint(self, project_id: str) -> str:
        """Changes whenever the index or the engine's search code does."""
        rows = await self._pool_fetch(
            project_id,
            "SELECT count(*) AS n, coalesce(max(id), 0) AS top, count(embedding) AS vectors FROM chunks",
        )
        h = hashlib.sha256(repr(tuple(rows[0].values())).encode())
        for src in _SEARCH_SOURCES:
            h.update(src.read_bytes())
        return h.hexdigest()[:16]

    async def product(self, project_id: str, texts: Sequence[str]) -> list[list[Hit]]:
        assert self.search is not None
        out = []
        for text in texts:
            request = SearchRequest(text, project_id=project_id, limit=LIMIT, context_lines=0)
            response = await self.search.search(request)
            out.append([(h.file_path, h.start_line, h.end_line) for h in response.results])
        return out

    async def features(self, project_id: str, texts: Sequence[str], label: str) -> FeatureSet:
        """Every query's candidates as `CodeSearch.search` gathers them, cached by index state."""
        key = hashlib.sha256(("\n".join(texts) + await self.fingerprint(project_id)).encode()).hexdigest()[:16]
        path = self.cache / f"{project_id}-{label}-{key}.json.gz"
        if path.exists():
            return FeatureSet.from_json(json.loads(gzip.decompress(path.read_bytes())))
        assert self.search is not None and self.app.cluster is not None
        project = await self._project(project_id)
        pool = await self.app.cluster.pool(project.database_name)
        vectors: list[Any] = list(await self.app.embedder.embed(list(texts))) if texts else []
        found = FeatureSet({}, [])
        async with pool.acquire() as conn:
            stats = await self.search.term_stats(project, conn)
            for text, vector in zip(texts, vectors, strict=True):
                identifier = identifier_of(text)
                query = CandidateQuery(
                    vector=np.asarray(vector, dtype=np.float32),
                    text=plan_text_query(query_tokens(text), stats, TEXT_MATCH_BUDGET),
                    identifier=identifier,
                    identifier_query=plan_identifier(identifier, stats),
                    filters=Filters(),
                )
                cands = await fetch_candidates(conn, query)
                found.queries.append([_features_of(c, found.chunks) for c in cands])
        self.cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps(found.to_json()).encode()))
        return found


def _features_of(c: Candidate, chunks: dict[int, Chunk]) -> Cand:
    if c.id not in chunks:
        chunks[c.id] = (c.id, c.file_id, str(c.repository_id), c.rel_path, c.start_line, c.end_line, c.symbol,
                        c.kind, c.language, c.content_hash[:16])  # fmt: skip
    return Cand(c.id, (c.cosine, c.text_raw, c.from_vector, c.from_text, c.identifier))
