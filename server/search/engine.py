"""Hybrid code search: HNSW cosine similarity and PostgreSQL full text over code-aware tokens.

One query gathers candidates from three sides — the nearest vectors (HNSW), the best full-text
matches (GIN) and, for identifier-like queries, chunks whose symbol is the identifier — and
computes for every candidate the signal its side did not provide. They are then blended:

    score = w·cosine + (1 − w)·text_rank / max(text_rank over this query's candidates) + identifier
    text_rank = Σ over query terms of idf(term)·ts_rank(tsv, term)

Measured with bench/search_bench.py (600 docstring → function queries over 10,780 chunks of
django, sqlalchemy and sympy, docstrings removed from the index, full-text budget scaled to a
133K-chunk corpus): MRR@10 full text 0.317 (0.358 with the text-only budget), vectors 0.386,
reciprocal-rank fusion 0.393, blend 0.474 at w = 0.85 (the weight also chosen leave-one-library-
out). IDF comes from PostgreSQL's statistics of the tsv column; without it (one ts_rank_cd over
all terms) full text alone scored 0.05 and the best blend 0.418.

Chunks without a vector yet are found by full text only; their missing cosine is interpolated
between the weakest and the best vector candidate's by their normalised text rank, so the best
lexical match still ranks near the top while weak ones do not crowd out real hits.

Full-text cost is bounded: ranking must read each matching row's tsvector, so only the rarer
query terms select rows (about TEXT_MATCH_BUDGET of them, ranked on those terms), and only the
final candidates are ranked on every term.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from server.app import App
from server.db.cluster import Conn
from server.db.registry import EmbedderMismatchError, Project
from server.embeddings import EmbeddingError
from server.indexer.tokens import MAX_TOKEN_CHARS, query_tokens
from server.search.models import ContextSource, ScoreParts, SearchHit, SearchMode, SearchResponse

VECTOR_WEIGHT = 0.85
VECTOR_CANDIDATES = 60  # 50, 80 and 120 measured within 0.002 MRR of each other
TEXT_CANDIDATES = 60
IDENTIFIER_CANDIDATES = 50
TEXT_MATCH_BUDGET = 1_000  # rows whose tsvector is ranked, by the planner's estimate ...
TEXT_ONLY_MATCH_BUDGET = 3_000  # ... and when full text works alone (no query embedding, no HNSW)
TEXT_MATCH_CAP_FACTOR = 2  # hard stop at this many times the budget (estimates can be low)
IDENTIFIER_MATCH_BUDGET = 5_000  # rows checked for a symbol match; beyond it the name is too common
RANK_TERMS = 10  # query terms taking part in ranking, highest IDF first
# ts_rank normalization flags: raw ranks (0) beat dividing by 1 + log(length) (1) alone and tie in
# the blend (bench/search_bench.py).
TEXT_NORMALIZATION = 0
HNSW_MIN_EF_SEARCH = 40
STATS_TTL_SECONDS = 120.0
STATS_RETRY_SECONDS = 5.0
COUNTS_TTL_SECONDS = 60.0
COUNTS_MIN_INTERVAL_SECONDS = 2.0
MAX_LIMIT = 50
MAX_CONTEXT_LINES = 20
MAX_QUERY_CHARS = 1_000
# Chunk kinds that are definitions (everything the chunker emits except these).
NON_DEFINITION_KINDS = frozenset({"module", "section", "window"})


class SearchError(ValueError):
    """A request that cannot be served; the message says why and what to do."""


# --- request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    project_id: str | None = None
    repository: str | None = None  # name or id
    language: str | None = None
    path_glob: str | None = None
    limit: int = 10
    context_lines: int = 2

    def validated(self) -> SearchRequest:
        query = self.query.strip()
        if not query:
            raise SearchError("query is empty: describe the code you look for, or give an identifier")
        if len(query) > MAX_QUERY_CHARS:
            raise SearchError(f"query is {len(query)} characters long; at most {MAX_QUERY_CHARS} are allowed")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if not 0 <= self.context_lines <= MAX_CONTEXT_LINES:
            raise SearchError(f"context_lines must be between 0 and {MAX_CONTEXT_LINES}, got {self.context_lines}")
        language = (self.language or "").strip().lower() or None
        glob = (self.path_glob or "").strip() or None
        if glob is not None:
            glob_to_regex(glob)  # raises SearchError on a malformed pattern
        repository = (self.repository or "").strip() or None
        return SearchRequest(query, self.project_id, repository, language, glob, self.limit, self.context_lines)


# --- pure helpers: globs, identifiers, text queries, fusion ----------------------------------


def glob_to_regex(glob: str) -> str:
    """Anchored regex for a path glob: `*` and `?` stay inside one path segment, `**` crosses
    segments (`src/**/*.py` matches `src/a.py`), `[abc]`/`[!abc]` are classes, and a pattern
    without `/` matches the file name at any depth (`*.py`). The regex uses only syntax that
    Python and PostgreSQL read alike, and every literal character is escaped."""
    pattern = glob.strip().replace("\\", "/")
    if not pattern:
        raise SearchError("path_glob is empty")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern.startswith(("[!", "[^"), i) else i + 1)
            if end == -1:
                raise SearchError(f"path_glob {glob!r}: '[' without a closing ']'")
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            members = body[1:] if negate else body
            if not members:
                raise SearchError(f"path_glob {glob!r}: empty character class")
            escaped = "".join("\\" + c if c in "\\[]^" else c for c in members)  # '-' keeps meaning a range
            out.append(f"[{'^/' if negate else ''}{escaped}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "^" + "".join(out) + "$"


_IDENTIFIER = re.compile(r"[^\W\d][\w$]*(?:(?:\.|::|#|->)[^\W\d][\w$]*)*(?:\(\))?")
_SEPARATOR = re.compile(r"::|#|->")


def identifier_of(query: str) -> str | None:
    """`Foo.bar`, `Foo::bar`, `parse_config()`, `IndexingJobCreate` → the dotted identifier, else None."""
    text = query.strip()
    if not _IDENTIFIER.fullmatch(text):
        return None
    return _SEPARATOR.sub(".", text.removesuffix("()"))


def identifier_boost(symbol: str | None, kind: str, identifier: str) -> float:
    """Ranks the definition named by the query above everything else (any boost is ≥ 1)."""
    if not symbol:
        return 0.0
    if symbol == identifier or symbol.endswith("." + identifier):
        boost = 1.5
    else:
        low, ident = symbol.lower(), identifier.lower()
        if not (low == ident or low.endswith("." + ident)):
            return 0.0
        boost = 1.0
    if kind not in NON_DEFINITION_KINDS:
        boost += 0.25
    if symbol.lower() == identifier.lower():
        boost += 0.1  # the whole name, not only its last part
    return boost


@dataclass(frozen=True, slots=True)
class TermStats:
    """Document frequencies of lexemes as PostgreSQL's ANALYZE sampled them."""

    rows: float
    freq: Mapping[str, float]
    floor: float  # terms not listed occur in fewer than this share of rows


@dataclass(frozen=True, slots=True)
class TextPlan:
    match_query: str  # tsquery selecting rows (the rarer terms)
    terms: list[str]  # every query term, as a tsquery each ...
    idf: list[float]  # ... and its BM25 inverse document frequency
    estimated_rows: float
    budget: int = TEXT_MATCH_BUDGET

    def weighted(self) -> list[tuple[float, str]]:
        """(idf, term) pairs to rank with, highest IDF first, at most RANK_TERMS."""
        return sorted(zip(self.idf, self.terms, strict=True), reverse=True)[:RANK_TERMS]


def _quote(token: str) -> str:
    return f"'{token}'"  # tokens are \w runs: no quote or backslash can occur


def _idf(share: float, rows: float) -> float:
    df = share * rows
    return math.log(1.0 + (rows - df + 0.5) / (df + 0.5))


def plan_text_query(tokens: Sequence[str], stats: TermStats | None, budget: int = TEXT_MATCH_BUDGET) -> TextPlan | None:
    """Rows are selected by the OR of the rarest terms whose estimated matches fit `budget` (if even
    the rarest term is too common, by the AND of the rarest terms until the estimate fits) and
    ranked on every term, weighted by its IDF. Without statistics every term selects and weighs 1."""
    tokens = list(dict.fromkeys(t for t in tokens if t))
    if not tokens:
        return None
    terms = [_quote(t) for t in tokens]
    if stats is None or stats.rows <= 0:
        return TextPlan(" | ".join(terms), terms, [1.0] * len(terms), 0.0, budget=budget)
    # Unlisted terms: half the smallest listed share, as PostgreSQL's own estimator assumes.
    share = {t: stats.freq.get(t, stats.floor / 2) for t in tokens}
    idf = [_idf(share[t], stats.rows) for t in tokens]
    if stats.rows <= budget:
        return TextPlan(" | ".join(terms), terms, idf, stats.rows, budget=budget)
    ordered = sorted(tokens, key=lambda t: share[t])
    chosen: list[str] = []
    total = 0.0
    for token in ordered:
        rows = share[token] * stats.rows
        if chosen and total + rows > budget:
            break
        chosen.append(token)
        total += rows
    if total <= budget:
        return TextPlan(" | ".join(map(_quote, chosen)), terms, idf, total, budget)
    together: list[str] = []
    estimate = stats.rows
    for token in ordered:
        together.append(token)
        estimate *= share[token]
        if estimate <= budget:
            break
    return TextPlan(" & ".join(map(_quote, together)), terms, idf, estimate, budget)


def plan_identifier(identifier: str | None, stats: TermStats | None) -> str | None:
    """tsquery finding chunks that may define `identifier` (all its parts' whole tokens), or None when
    there is none or it is so common that checking every match would be slow (`get`, `self`)."""
    if not identifier:
        return None
    parts = [p.replace("_", "").lower() for p in identifier.split(".")]
    if not all(0 < len(p) <= MAX_TOKEN_CHARS for p in parts):
        return None
    if stats is not None and stats.rows > IDENTIFIER_MATCH_BUDGET:
        estimate = stats.rows
        for part in parts:
            estimate *= stats.freq.get(part, stats.floor / 2)
        if estimate > IDENTIFIER_MATCH_BUDGET:
            return None
    return " & ".join(map(_quote, parts))


@dataclass(slots=True)
class Candidate:
    id: int
    file_id: int
    repository_id: uuid.UUID
    rel_path: str
    start_line: int
    end_line: int
    symbol: str | None
    kind: str
    language: str
    content_hash: str
    cosine: float | None
    text_raw: float
    from_vector: bool
    from_text: bool
    identifier: float = 0.0
    text: float = 0.0
    score: float = 0.0


def fuse(candidates: Iterable[Candidate], vector_weight: float) -> list[Candidate]:
    """Blend into `score` and sort best first (ties: earlier file position first)."""
    items = list(candidates)
    top_text = max((c.text_raw for c in items), default=0.0)
    vector_cosines = [c.cosine for c in items if c.from_vector and c.cosine is not None]
    floor, top = min(vector_cosines, default=0.0), max(vector_cosines, default=0.0)
    for c in items:
        c.text = c.text_raw / top_text if top_text > 0 else 0.0
        # No vector yet: lexical evidence stands in, between the weakest and the best vector candidate.
        cosine = c.cosine if c.cosine is not None else floor + (top - floor) * c.text
        c.score = vector_weight * cosine + (1.0 - vector_weight) * c.text + c.identifier
    items.sort(key=lambda c: (-c.score, c.rel_path, c.start_line))
    return items


def dedupe(ranked: Sequence[Candidate], limit: int) -> list[Candidate]:
    """Best first. Dropped: a chunk overlapping a better one of the same file, and another part of
    a long definition already shown (same file, symbol and kind). A chunk whose content repeats a
    better one's (another file) is only used if results would run short."""
    kept: list[Candidate] = []
    repeats: list[Candidate] = []
    hashes: set[str] = set()
    spans: dict[int, list[tuple[int, int]]] = {}
    definitions: set[tuple[int, str, str]] = set()
    for c in ranked:
        if any(c.start_line <= end and start <= c.end_line for start, end in spans.get(c.file_id, ())):
            continue
        if c.symbol is not None and (c.file_id, c.symbol, c.kind) in definitions:
            continue
        spans.setdefault(c.file_id, []).append((c.start_line, c.end_line))
        if c.symbol is not None:
            definitions.add((c.file_id, c.symbol, c.kind))
        if c.content_hash in hashes:
            repeats.append(c)
            continue
        hashes.add(c.content_hash)
        kept.append(c)
        if len(kept) == limit:
            break
    return (kept + repeats)[:limit]


# --- SQL ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    repository_ids: list[uuid.UUID] | None = None
    language: str | None = None
    path_regex: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.repository_ids or self.language or self.path_regex)


class _Params:
    """Numbered query parameters: user text only ever travels as a parameter."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _filter_sql(filters: Filters, params: _Params) -> tuple[str, str]:
    """(JOIN clause, WHERE clause) for the filters; the files join only when a path filter needs it."""
    clauses = ["TRUE"]
    if filters.repository_ids:
        clauses.append(f"c.repository_id = ANY({params.add(filters.repository_ids)}::uuid[])")
    if filters.language:
        clauses.append(f"c.language = {params.add(filters.language)}")
    if filters.path_regex:
        clauses.append(f"f.rel_path ~ {params.add(filters.path_regex)}")
    join = " JOIN files f ON f.id = c.file_id" if filters.path_regex else ""
    return join, " AND ".join(clauses)


def build_candidate_sql(
    *,
    vector: npt.NDArray[np.float32] | None,
    text: TextPlan | None,
    identifier: str | None,
    identifier_query: str | None,
    filters: Filters,
    vector_candidates: int = VECTOR_CANDIDATES,
    text_candidates: int = TEXT_CANDIDATES,
    normalization: int = TEXT_NORMALIZATION,
) -> tuple[str, list[Any]]:
    params = _Params()
    join, where = _filter_sql(filters, params)
    ctes: list[str] = []
    qvec = params.add(vector) if vector is not None else None
    norm = params.add(normalization) if text else None
    placeholders: dict[str, tuple[str, str]] = {}

    def rank(tsv: str) -> str:
        """Σ idf(term)·ts_rank(tsv, term): ts_rank saturates repeats and weighs symbol > path > body.
        Each term is parsed once (an InitPlan), not once per row."""
        assert text is not None
        parts = []
        for w, t in text.weighted():
            if t not in placeholders:
                placeholders[t] = (params.add(w), params.add(t))
            pw, pt = placeholders[t]
            parts.append(f"{pw}::float8 * ts_rank({tsv}, (SELECT to_tsquery('simple', {pt}::text)), {norm})")
        return "(" + " + ".join(parts) + ")"

    if qvec:
        ctes.append(
            f"""vec AS MATERIALIZED (
                SELECT c.id, c.embedding <=> {qvec} AS distance
                FROM chunks c{join}
                WHERE {where}
                ORDER BY c.embedding <=> {qvec} LIMIT {params.add(vector_candidates)})"""
        )
    # When even the rarest terms are everywhere they cannot pick candidates worth ranking; vectors can.
    if text and (qvec is None or text.estimated_rows <= text.budget):
        match = params.add(text.match_query)
        # Each rank call reads (detoasts) the row's tsvector again: one plain ts_rank on the rare terms
        # picks the candidates, and only they get the per-term IDF rank below.
        ctes.append(
            f"""lex AS MATERIALIZED (
                SELECT m.id, ts_rank(m.tsv, (SELECT to_tsquery('simple', {match}::text)), {norm}) AS rank
                FROM (SELECT c.id, c.tsv FROM chunks c{join}
                      WHERE c.tsv @@ to_tsquery('simple', {match}::text) AND {where}
                      LIMIT {params.add(TEXT_MATCH_CAP_FACTOR * text.budget)}) m
                ORDER BY rank DESC LIMIT {params.add(text_candidates)})"""
        )
    if identifier and identifier_query:
        ident = params.add(identifier.lower())
        # The GIN index finds chunks holding the name's tokens; the symbol test keeps definitions.
        ctes.append(
            f"""ident AS MATERIALIZED (
                SELECT c.id FROM chunks c{join}
                WHERE c.tsv @@ to_tsquery('simple', {params.add(identifier_query)})
                  AND (lower(c.symbol) = {ident}::text
                       OR right(lower(c.symbol), length({ident}::text) + 1) = '.' || {ident}::text)
                  AND {where}
                LIMIT {params.add(IDENTIFIER_CANDIDATES)})"""
        )
    if not ctes:
        return "", []
    names = [cte.split(" ", 1)[0] for cte in ctes]
    cosine = f"1 - COALESCE(vec.distance, c.embedding <=> {qvec})" if qvec else "NULL::float8"
    # Rows were picked by their rare terms (cheap); every candidate is scored on all terms.
    text_rank = rank("c.tsv") if text else "0::float8"
    joins = "".join(f" LEFT JOIN {name} ON {name}.id = c.id" for name in ("vec", "lex") if name in names)
    # No `embedding IS NOT NULL` filter above: it would steer the planner away from the HNSW index.
    union = " UNION ".join(f"SELECT id FROM {n}" + (" WHERE distance IS NOT NULL" if n == "vec" else "") for n in names)
    sql = f"""
        WITH {", ".join(ctes)}, ids AS ({union})
        SELECT c.id, c.file_id, c.repository_id, f.rel_path, c.start_line, c.end_line, c.symbol, c.kind,
               c.language, c.content_hash, ({cosine})::float8 AS cosine, ({text_rank})::float8 AS text_rank,
               {"vec.id IS NOT NULL" if "vec" in names else "FALSE"} AS from_vector,
               {"lex.id IS NOT NULL" if "lex" in names else "FALSE"} AS from_text
        FROM ids JOIN chunks c ON c.id = ids.id JOIN files f ON f.id = c.file_id{joins}
        WHERE NOT f.is_deleted
    """
    return sql, params.values


_STATS_SQL = """
SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs,
       (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) AS rows
FROM (SELECT 1) one
LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = 'chunks' AND s.attname = 'tsv'
"""

# Cheap: the repositories plus the chunks table's write counters, which tell whether counts moved.
_REPOSITORIES_SQL = """
SELECT r.id, r.name, r.root_path,
       (SELECT ARRAY[n_tup_ins, n_tup_upd, n_tup_del] FROM pg_stat_user_tables
        WHERE relid = 'chunks'::regclass) AS writes
FROM repositories r ORDER BY r.name, r.id
"""

# Index-only scans, but proportional to the chunk count: run only when the write counters moved.
_COUNTS_SQL = """
SELECT r.id,
       (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id) AS chunks,
       (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id AND c.embedding IS NULL) AS unembedded
FROM repositories r
"""

_DETAILS_SQL = """
SELECT c.id, c.content, f.content_hash AS file_hash, f.size_bytes, f.mtime_ns
FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id = ANY($1::bigint[])
"""

_NEIGHBOURS_SQL = """
SELECT w.i, c.start_line, c.end_line, c.content
FROM unnest($1::bigint[], $2::int[], $3::int[]) WITH ORDINALITY AS w(file_id, lo, hi, i)
JOIN chunks c ON c.file_id = w.file_id AND c.end_line >= w.lo AND c.start_line <= w.hi
ORDER BY w.i, c.start_line
"""


async def load_term_stats(conn: Conn) -> TermStats | None:
    row = await conn.fetchrow(_STATS_SQL)
    if row is None or row["rows"] is None or row["rows"] < 0:
        return None  # never analyzed: no estimates, every term selects rows
    elems: list[str] | None = row["elems"]
    freqs: list[float] | None = row["freqs"]
    if not elems or not freqs:
        return TermStats(float(row["rows"]), {}, 0.0)
    # For tsvector columns the frequencies end with the minimum and maximum of the list.
    return TermStats(float(row["rows"]), dict(zip(elems, freqs, strict=False)), float(freqs[len(elems)]))


@dataclass(frozen=True, slots=True)
class Repository:
    id: uuid.UUID
    name: str
    root_path: str
    chunks: int
    unembedded: int


@dataclass(frozen=True, slots=True)
class _Counts:
    checked_at: float
    writes: tuple[int, ...]
    by_repository: dict[uuid.UUID, tuple[int, int]]  # id -> (chunks, unembedded)


class RepositoryCounts:
    """Chunk and unembedded-chunk counts per repository, recounted only after writes to `chunks`
    (PostgreSQL's cumulative statistics report them within about a second), at most every
    `min_interval` seconds (while indexing writes never stop), and at least every `ttl` seconds."""

    def __init__(self, ttl: float = COUNTS_TTL_SECONDS, min_interval: float = COUNTS_MIN_INTERVAL_SECONDS) -> None:
        self.ttl = ttl
        self.min_interval = min_interval
        self._cache: dict[str, _Counts] = {}

    async def repositories(self, conn: Conn, key: str) -> list[Repository]:
        rows = await conn.fetch(_REPOSITORIES_SQL)
        writes = tuple(rows[0]["writes"] or ()) if rows else ()
        now = time.monotonic()
        cached = self._cache.get(key)
        age = now - cached.checked_at if cached else 0.0
        if (
            cached is None
            or (cached.writes != writes and age >= self.min_interval)
            or age > self.ttl
            or any(r["id"] not in cached.by_repository for r in rows)
        ):
            counted = await conn.fetch(_COUNTS_SQL)
            cached = _Counts(now, writes, {r["id"]: (r["chunks"], r["unembedded"]) for r in counted})
            self._cache[key] = cached
        return [
            Repository(r["id"], r["name"], r["root_path"], *cached.by_repository.get(r["id"], (0, 0))) for r in rows
        ]


def select_repositories(repositories: Sequence[Repository], wanted: str | None, project_id: str) -> list[Repository]:
    if wanted is None:
        return list(repositories)
    chosen = [r for r in repositories if str(r.id) == wanted.lower() or r.name == wanted or r.root_path == wanted]
    if not chosen:
        known = ", ".join(f"{r.name} ({r.id})" for r in repositories) or "none"
        raise SearchError(f"unknown repository {wanted!r} in project {project_id!r}; known repositories: {known}")
    return chosen


async def fetch_candidates(
    conn: Conn,
    *,
    vector: npt.NDArray[np.float32] | None,
    text: TextPlan | None,
    identifier: str | None,
    identifier_query: str | None,
    filters: Filters,
    vector_candidates: int = VECTOR_CANDIDATES,
    text_candidates: int = TEXT_CANDIDATES,
    normalization: int = TEXT_NORMALIZATION,
) -> list[Candidate]:
    sql, args = build_candidate_sql(
        vector=vector, text=text, identifier=identifier, identifier_query=identifier_query, filters=filters,
        vector_candidates=vector_candidates, text_candidates=text_candidates, normalization=normalization,
    )  # fmt: skip
    if not sql:
        return []
    # A LIMIT over a common term tempts the planner into a sequential scan that evaluates `@@` on
    # every row's (toasted) tsvector; every access path here has an index, so forbid that.
    # Plans must see the actual filter and vector: a generic plan cannot tell a selective path glob
    # (exact search over few rows) from a broad one (HNSW).
    settings = ["SET LOCAL enable_seqscan = off", "SET LOCAL plan_cache_mode = force_custom_plan"]
    if vector is not None:
        settings.append(f"SET LOCAL hnsw.ef_search = {max(HNSW_MIN_EF_SEARCH, int(vector_candidates))}")
        if filters.any:  # filters make HNSW skip rows: keep scanning until enough pass (pgvector ≥ 0.8)
            settings.append("SET LOCAL hnsw.iterative_scan = relaxed_order")
    async with conn.transaction(readonly=True):
        await conn.execute("; ".join(settings))
        rows = await conn.fetch(sql, *args)
    out = [
        Candidate(
            id=r["id"],
            file_id=r["file_id"],
            repository_id=r["repository_id"],
            rel_path=r["rel_path"],
            start_line=r["start_line"],
            end_line=r["end_line"],
            symbol=r["symbol"],
            kind=r["kind"],
            language=r["language"],
            content_hash=r["content_hash"],
            cosine=r["cosine"],
            text_raw=float(r["text_rank"] or 0.0),
            from_vector=r["from_vector"],
            from_text=r["from_text"],
        )
        for r in rows
    ]
    if identifier:
        for c in out:
            c.identifier = identifier_boost(c.symbol, c.kind, identifier)
    return out


# --- context lines -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    source: ContextSource = "none"


def _read_if_unchanged(path: Path, size: int, mtime_ns: int, content_hash: str) -> list[str] | None:
    """The file's lines if it still holds what was indexed (same size and mtime, else same hash)."""
    try:
        st = path.stat()
        if st.st_size != size:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if st.st_mtime_ns != mtime_ns and hashlib.sha256(data).hexdigest() != content_hash:
        return None
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    return text.removesuffix("\n").split("\n")  # as the chunker counts lines; no phantom last line


def _context_from_file(lines: list[str], start: int, end: int, n: int) -> _Context:
    return _Context(lines[max(0, start - 1 - n) : start - 1], lines[end : end + n], "file")


def _context_from_chunks(rows: Sequence[asyncpg.Record], start: int, end: int, n: int) -> _Context:
    """Lines next to [start, end] taken from neighbouring chunks whose text maps 1:1 onto their
    line range (outlines and continued parts do not). Lines no chunk covers, between the hit and a
    covered line, are the blank lines the chunker leaves out; past the last covered line nothing is
    known (end of file, or an outline), so the context stops there."""
    by_line: dict[int, str] = {}
    for r in rows:
        lines = str(r["content"]).split("\n")
        if len(lines) == r["end_line"] - r["start_line"] + 1:
            for offset, text in enumerate(lines):
                by_line.setdefault(r["start_line"] + offset, text)
    above = [line for line in range(max(1, start - n), start) if line in by_line]
    below = [line for line in range(end + 1, end + n + 1) if line in by_line]
    before = [by_line.get(line, "") for line in range(above[0], start)] if above else []
    after = [by_line.get(line, "") for line in range(end + 1, below[-1] + 1)] if below else []
    return _Context(before, after, "index" if before or after else "none")


# --- the service -----------------------------------------------------------------------------------


def _coverage_notice(mode: SearchMode, coverage: float, reason: str | None) -> str | None:
    if reason:
        return reason
    if mode == "text_only":
        return (
            "No embeddings stored yet: results come from full-text search only. Semantic ranking starts "
            "as soon as indexing has embedded chunks."
        )
    if coverage < 1.0:
        return (
            f"Embeddings are still being computed ({coverage:.0%} done): chunks without one are found "
            "by full text only."
        )
    return None


class CodeSearch:
    """Search over the projects of one `App`; caches term statistics per project database."""

    def __init__(self, app: App, *, vector_weight: float = VECTOR_WEIGHT) -> None:
        self.app = app
        self.vector_weight = vector_weight
        self._stats: dict[str, tuple[float, TermStats | None]] = {}
        self._counts = RepositoryCounts()
        self._embedder_checked: dict[str, float] = {}  # database -> when its embedder last matched ours

    async def _pool(self, project: Project) -> asyncpg.Pool:
        assert self.app.cluster is not None, "App.start() first"
        return await self.app.cluster.pool(project.database_name)

    async def term_stats(self, project: Project, conn: Conn) -> TermStats | None:
        now = time.monotonic()
        cached = self._stats.get(project.database_name)
        # Missing statistics (a table not analyzed yet) are looked up again soon.
        if cached is None or now - cached[0] > (STATS_TTL_SECONDS if cached[1] else STATS_RETRY_SECONDS):
            cached = (now, await load_term_stats(conn))
            self._stats[project.database_name] = cached
        return cached[1]

    async def embed_query(self, project: Project, query: str) -> tuple[npt.NDArray[np.float32] | None, str | None]:
        """The query's vector, or None with the reason why semantic ranking is off."""
        try:
            checked = self._embedder_checked.get(project.database_name)
            if checked is None or time.monotonic() - checked > STATS_TTL_SECONDS:
                await self.app.registry.check_embedder(project)
                self._embedder_checked[project.database_name] = time.monotonic()
            vectors = await self.app.embedder.embed([query])
        except EmbedderMismatchError as exc:
            return None, f"Full-text results only: {exc}"
        except EmbeddingError as exc:
            return None, f"Full-text results only: the query could not be embedded ({exc})"
        return np.asarray(vectors[0], dtype=np.float32), None

    async def search(self, request: SearchRequest, *, session_key: str | None = None) -> SearchResponse:
        started = time.perf_counter()
        req = request.validated()
        project = (await self.app.resolver.resolve(req.project_id, session_key, create=False)).project
        pool = await self._pool(project)
        async with pool.acquire() as conn:
            repositories = await self._counts.repositories(conn, project.database_name)
            if not repositories or not any(r.chunks for r in repositories):
                raise SearchError(
                    f"project {project.id!r} has no indexed code yet: index it first with the index_repository "
                    f"or start_indexing_background tool, or `codebase-mcp index PATH --project {project.id}`"
                )
            chosen = select_repositories(repositories, req.repository, project.id)
            total = sum(r.chunks for r in chosen)
            embedded = total - sum(r.unembedded for r in chosen)
            coverage = embedded / total if total else 0.0
            reason: str | None = None
            vector: npt.NDArray[np.float32] | None = None
            if embedded > 0:
                vector, reason = await self.embed_query(project, req.query)
            mode: SearchMode = "hybrid" if vector is not None else "text_only"
            identifier = identifier_of(req.query)
            stats = await self.term_stats(project, conn)
            budget = TEXT_MATCH_BUDGET if vector is not None else TEXT_ONLY_MATCH_BUDGET
            plan = plan_text_query(query_tokens(req.query), stats, budget)
            filters = Filters(
                repository_ids=[r.id for r in chosen] if len(chosen) < len(repositories) else None,
                language=req.language,
                path_regex=glob_to_regex(req.path_glob) if req.path_glob else None,
            )
            candidates = await fetch_candidates(
                conn, vector=vector, text=plan, identifier=identifier,
                identifier_query=plan_identifier(identifier, stats), filters=filters,
            )  # fmt: skip
            ranked = dedupe(fuse(candidates, self.vector_weight if vector is not None else 0.0), req.limit)
            hits = await self._hits(conn, ranked, {r.id: r for r in chosen}, req.context_lines)
        notice = _coverage_notice(mode, coverage, reason)
        if not hits and filters.any:
            notice = (notice + " " if notice else "") + "Nothing matched within the given filters."
        return SearchResponse(
            query=req.query, project_id=project.id, mode=mode, embedding_coverage=round(coverage, 4),
            notice=notice, identifier_query=identifier is not None, total_chunks=total, results=hits,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )  # fmt: skip

    async def _hits(
        self,
        conn: Conn,
        ranked: Sequence[Candidate],
        repositories: Mapping[uuid.UUID, Repository],
        context_lines: int,
    ) -> list[SearchHit]:
        if not ranked:
            return []
        details = {r["id"]: r for r in await conn.fetch(_DETAILS_SQL, [c.id for c in ranked])}
        ranked = [c for c in ranked if c.id in details]  # a file re-indexed in between
        contexts = await self._contexts(conn, ranked, details, repositories, context_lines)
        hits = []
        for c, ctx in zip(ranked, contexts, strict=True):
            repo = repositories[c.repository_id]
            hits.append(
                SearchHit(
                    repository_id=str(repo.id),
                    repository_name=repo.name,
                    file_path=c.rel_path,
                    absolute_path=str(Path(repo.root_path) / c.rel_path),
                    start_line=c.start_line,
                    end_line=c.end_line,
                    symbol=c.symbol,
                    kind=c.kind,
                    language=c.language,
                    score=round(c.score, 6),
                    scores=ScoreParts(
                        cosine=None if c.cosine is None else round(c.cosine, 6),
                        text=round(c.text, 6),
                        text_raw=round(c.text_raw, 6),
                        identifier=c.identifier,
                    ),
                    content=details[c.id]["content"],
                    context_before=ctx.before,
                    context_after=ctx.after,
                    context_source=ctx.source,
                )
            )
        return hits

    async def _contexts(
        self,
        conn: Conn,
        ranked: Sequence[Candidate],
        details: Mapping[int, asyncpg.Record],
        repositories: Mapping[uuid.UUID, Repository],
        n: int,
    ) -> list[_Context]:
        if n == 0:
            return [_Context() for _ in ranked]

        def read_all() -> list[list[str] | None]:
            files: dict[int, list[str] | None] = {}
            for c in ranked:
                if c.file_id not in files:
                    d = details[c.id]
                    path = Path(repositories[c.repository_id].root_path) / c.rel_path
                    files[c.file_id] = _read_if_unchanged(path, d["size_bytes"], d["mtime_ns"], d["file_hash"])
            return [files[c.file_id] for c in ranked]

        texts = await asyncio.to_thread(read_all)
        out = [_context_from_file(t, c.start_line, c.end_line, n) if t is not None else _Context()
               for c, t in zip(ranked, texts, strict=True)]  # fmt: skip
        missing = [i for i, t in enumerate(texts) if t is None]
        if missing:
            rows = await conn.fetch(
                _NEIGHBOURS_SQL,
                [ranked[i].file_id for i in missing],
                [ranked[i].start_line - n for i in missing],
                [ranked[i].end_line + n for i in missing],
            )
            grouped: dict[int, list[asyncpg.Record]] = {}
            for r in rows:
                grouped.setdefault(r["i"], []).append(r)
            for k, i in enumerate(missing, start=1):
                c = ranked[i]
                out[i] = _context_from_chunks(grouped.get(k, []), c.start_line, c.end_line, n)
        return out
