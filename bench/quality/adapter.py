"""Everything the suite knows about the engine, in one place.

* `indexable(root)`: the files the engine's scanner would index (the sample is drawn from them).
* `Engine.index`: the product's own pipeline (`App.index`), every tier, then ANALYZE.
* `Engine.product`: the public search path (`CodeSearch.search`, as the `search_code` tool
  calls it); each query's ranked (path, start, end).
* `Engine.features` + `rerank`: each query's candidates gathered ONCE, as `CodeSearch.search`
  gathers them, with their per-signal features, then re-ranked offline under any weights, so a
  sweep never queries again.

Features today: per candidate `cosine` (transformer tier), `static_cosine`, `text_raw`
(Σ idf·ts_rank), `identifier` (boost when the query names the symbol), the `from_*` flags, and the
chunk's `kind`, `role`, `path`, `symbol`; per query its `intent`. A configuration is a mapping over
the fields of `server.search.ranking.Weights` (tier and text weights, role priors), plus

    identifier   multiplier of the identifier boost (the product: 1)
    priors       multiplier of the role priors of docs- and test-seeking queries (the product: 1)
    code_priors  multiplier of the role priors of code-seeking queries (the product: 1)
    rrf          k of reciprocal-rank fusion of the three rankings, instead of the blend

The query-time transformer re-rank only embeds candidates that have no transformer vector yet;
the suite indexes every tier fully, so it changes nothing here and `rerank` leaves it out.

To add a feature: read it per candidate in `_features_of` (a new column of `Cand.values`), use it
in `rerank` (a new key of the mapping, neutral by default), and extend `GRID`. Candidate features
are cached on disk, keyed by the index's state and the engine's search source code.
"""

from __future__ import annotations

import dataclasses
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

from bench.quality import fastrank
from server.app import App
from server.db.registry import Project
from server.indexer.roles import Role
from server.indexer.scanner import DEFAULT_MAX_FILE_SIZE, scan_repository
from server.indexer.tokens import query_tokens
from server.indexer.types import ChunkKind
from server.search.candidates import CandidateQuery, Filters, fetch_candidates
from server.search.engine import CodeSearch
from server.search.intent import Intent, intent_of, lexical_query
from server.search.names import set_coverage
from server.search.ranking import DEFAULT_WEIGHTS, Candidate, Weights, dedupe, fuse
from server.search.request import SearchRequest, identifier_of
from server.search.textplan import TEXT_MATCH_BUDGET, plan_identifier, plan_text_query
from server.settings import Settings

LIMIT = 10
Hit = tuple[str, int, int]  # (path, start line, end line)

PRODUCT_WEIGHTS: dict[str, float] = {
    **dataclasses.asdict(DEFAULT_WEIGHTS),
    "identifier": 1.0,
    "priors": 1.0,
    "code_priors": 1.0,
}
_TIERS = ("transformer", "static", "text", "name")  # blend terms, not scaled by `priors`


def _tiers(transformer: float, static: float, text: float, **extra: float) -> dict[str, float]:
    return {**PRODUCT_WEIGHTS, "transformer": transformer, "static": static, "text": text, **extra}


NAMED: dict[str, dict[str, float]] = {
    "current": PRODUCT_WEIGHTS,  # today's ranking, re-ranked from cached features
    "text": _tiers(0.0, 0.0, 1.0),
    "transformer": _tiers(1.0, 0.0, 0.0),
    "static": _tiers(0.0, 1.0, 0.0),
    "no-priors": {**PRODUCT_WEIGHTS, "priors": 0.0, "code_priors": 0.0},
    "rrf": {**PRODUCT_WEIGHTS, "rrf": 60.0},
}
# The sweep that leave-one-library-out chooses from: tier weights, role priors (multipliers of the
# product's: one for code-seeking queries, one for docs- and test-seeking ones) and name coverage.
# Ties go to the earlier entry: the product's weights first, then the nearest values first.
GRID: list[dict[str, float]] = [PRODUCT_WEIGHTS] + [
    w
    for t, st, tx, pr, nm, cp in cartesian(
        (0.6, 0.5, 0.7), (0.15, 0.1, 0.25), (0.15, 0.1, 0.2), (1.0, 0.5, 2.0), (0.1, 0.0, 0.2), (1.0, 0.5, 2.0)
    )
    if (w := _tiers(t, st, tx, priors=pr, name=nm, code_priors=cp)) != PRODUCT_WEIGHTS
]
_ROOT = Path(__file__).resolve().parents[2]
_SEARCH_SOURCES = [
    *sorted((_ROOT / "server" / "search").glob("*.py")),
    _ROOT / "server/indexer/tokens.py",
    _ROOT / "server/embeddings/query_adapter.py",
    _ROOT / "server/embeddings/data/query-adapter-minilm.npy",
    _ROOT / "server/embeddings/data/minilm-code-lora.npz",
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

Chunk = tuple[int, int, str, str, int, int, str | None, str, str, str, str]
# (id, file_id, repository_id, path, start, end, symbol, kind, language, role, content_hash)
Values = tuple[float | None, float | None, float, bool, bool, bool, float]
# (cosine, static_cosine, text_raw, from_vector, from_text, from_static, identifier)


@dataclass(frozen=True, slots=True)
class Cand:
    chunk: int  # chunk id: its static facts live in FeatureSet.chunks
    values: Values


@dataclass(slots=True)
class FeatureSet:
    """One query set's candidates: static chunk facts once, per-query signal values and intent."""

    chunks: dict[int, Chunk]
    queries: list[list[Cand]]
    intents: list[str]
    terms: list[dict[str, float]]  # per query: its full-text terms and their IDF (name coverage)

    def to_json(self) -> dict[str, Any]:
        queries = [[[c.chunk, *c.values] for c in q] for q in self.queries]
        return {"chunks": list(self.chunks.values()), "queries": queries, "intents": self.intents,
                "terms": self.terms}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSet:
        chunks = {int(c[0]): cast(Chunk, tuple(c)) for c in data["chunks"]}
        queries = [[Cand(int(c[0]), cast(Values, tuple(c[1:]))) for c in q] for q in data["queries"]]
        return cls(chunks, queries, data["intents"], data["terms"])


def _candidate(chunk: Chunk, v: Values) -> Candidate:
    cid, file_id, repo, path, start, end, symbol, kind, language, role, content_hash = chunk
    return Candidate(
        cid, file_id, uuid.UUID(repo), path, start, end, symbol, cast(ChunkKind, kind), language, cast(Role, role),
        content_hash, cosine=v[0], static_cosine=v[1], text_raw=v[2], from_vector=v[3], from_text=v[4],
        from_static=v[5], identifier=v[6],
    )  # fmt: skip


def weights_of(weights: Mapping[str, float]) -> Weights:
    """The product's `Weights` with these values, role priors scaled by `priors`."""
    fields = {f.name for f in dataclasses.fields(Weights)}
    unknown = set(weights) - fields - {"identifier", "priors", "code_priors", "rrf"}
    if unknown:
        raise ValueError(
            f"unknown weights {sorted(unknown)}; known: {sorted(fields)}, identifier, priors, code_priors, rrf"
        )
    values = {k: float(v) for k, v in weights.items() if k in fields}
    scale = weights.get("priors", 1.0)
    code_scale = weights.get("code_priors", scale)
    for name in fields - set(_TIERS):
        factor = code_scale if name.startswith("code_seeking") else scale
        values[name] = values.get(name, getattr(DEFAULT_WEIGHTS, name)) * factor
    return dataclasses.replace(DEFAULT_WEIGHTS, **values)


def rerank(features: FeatureSet, i: int, weights: Mapping[str, float], limit: int = LIMIT) -> list[Hit]:
    """Query `i`'s candidates ranked under `weights`, deduplicated as the product does."""
    cands = [_candidate(features.chunks[c.chunk], c.values) for c in features.queries[i]]
    set_coverage(cands, features.terms[i])
    intent = cast(Intent, features.intents[i])
    ranked = fuse(cands, weights_of(weights), intent)
    if "rrf" in weights:
        ranked = _rrf(ranked, weights)
    factor = weights.get("identifier", 1.0)
    if factor != 1.0:
        for c in ranked:
            c.score += (factor - 1.0) * c.identifier
        ranked.sort(key=lambda c: (-c.score, c.rel_path, c.start_line))
    return [(c.rel_path, c.start_line, c.end_line) for c in dedupe(ranked, limit)]


def prepared(features: FeatureSet) -> list[fastrank.Prepared]:
    """Every query's candidates made ready for `fast_rerank`."""
    return [
        fastrank.prepare([_candidate(features.chunks[c.chunk], c.values) for c in q], cast(Intent, intent), terms)
        for q, intent, terms in zip(features.queries, features.intents, features.terms, strict=True)
    ]


def blend_of(weights: Mapping[str, float]) -> fastrank.Blend:
    """A configuration (not `rrf`) as `fast_rerank` takes it."""
    return fastrank.Blend.of(weights_of(weights), weights.get("identifier", 1.0))


def fast_rerank(p: fastrank.Prepared, blend: fastrank.Blend, limit: int = LIMIT) -> list[Hit]:
    """`rerank` for the blend's weights, vectorised: what sweeps use."""
    return [(c.rel_path, c.start_line, c.end_line) for c in fastrank.ranked(p, blend, limit)]


def _rrf(cands: list[Candidate], weights: Mapping[str, float]) -> list[Candidate]:
    """Σ 1/(k + rank) over the transformer, static and full-text rankings, plus the identifier
    boost and the role prior that `fuse` computed."""
    k = weights["rrf"]
    rankings = [
        sorted((c for c in cands if c.cosine is not None), key=lambda c: -(c.cosine or 0.0)),
        sorted((c for c in cands if c.static_cosine is not None), key=lambda c: -(c.static_cosine or 0.0)),
        sorted((c for c in cands if c.from_text), key=lambda c: -c.text_raw),
    ]
    for c in cands:
        c.score = c.identifier + c.prior
    for ranking in rankings:
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
        state = (*rows[0].values(), self.app.query_adapter is not None, self.app.embedder.name)
        h = hashlib.sha256(repr(state).encode())
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
        """Every query's candidates as `CodeSearch.search` gathers them on a fully embedded index,
        cached by index state."""
        key = hashlib.sha256(("\n".join(texts) + await self.fingerprint(project_id)).encode()).hexdigest()[:16]
        path = self.cache / f"{project_id}-{label}-{key}.json.gz"
        if path.exists():
            return FeatureSet.from_json(json.loads(gzip.decompress(path.read_bytes())))
        assert self.search is not None
        project = await self._project(project_id)
        pool = await self.app.cluster.pool(project.database_name)
        identifiers = [identifier_of(text) for text in texts]
        intents = [intent_of(t, identifier=i is not None) for t, i in zip(texts, identifiers, strict=True)]
        vectors: list[Any] = list(await self.search.query_vectors(list(texts), intents)) if texts else []
        found = FeatureSet({}, [], [], [])
        async with pool.acquire() as conn:
            stats = await self.search.term_stats(project, conn)
            for text, vector, identifier, intent in zip(texts, vectors, identifiers, intents, strict=True):
                plan = plan_text_query(query_tokens(lexical_query(text, intent)), stats, TEXT_MATCH_BUDGET)
                query = CandidateQuery(
                    vector=np.asarray(vector, dtype=np.float32),
                    static_vector=self.search.embed_static(text),
                    static_search=False,  # as search does once every chunk has a transformer vector
                    text=plan,
                    identifier=identifier,
                    identifier_query=plan_identifier(identifier, stats),
                    filters=Filters(),
                )
                cands = await fetch_candidates(conn, query)
                found.queries.append([_features_of(c, found.chunks) for c in cands])
                found.intents.append(intent)
                found.terms.append(plan.term_weights() if plan else {})
        self.cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps(found.to_json()).encode()))
        return found


def _features_of(c: Candidate, chunks: dict[int, Chunk]) -> Cand:
    if c.id not in chunks:
        chunks[c.id] = (c.id, c.file_id, str(c.repository_id), c.rel_path, c.start_line, c.end_line, c.symbol,
                        c.kind, c.language, c.role, c.content_hash[:16])  # fmt: skip
    return Cand(c.id, (c.cosine, c.static_cosine, c.text_raw, c.from_vector, c.from_text, c.from_static, c.identifier))
