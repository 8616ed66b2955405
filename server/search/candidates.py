"""The candidate query: one SQL statement gathering candidates from three sides.

The nearest transformer vectors and the nearest static-tier vectors (one HNSW index each), the best
full-text matches (GIN) and, for identifier-like queries, chunks whose symbol is the identifier are
gathered in one statement, which also computes for every candidate the signals its side did not
provide (both cosines of a text match, the full rank of a vector match). `ranking.fuse` then blends
them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pgvector import HalfVector

from server.db.cluster import Conn
from server.indexer.roles import Role
from server.search.ranking import Candidate, identifier_boost
from server.search.textplan import TextPlan

VECTOR_CANDIDATES = 60  # MRR@10 barely moves between 50 and 120 (bench/README.md)
STATIC_CANDIDATES = 60
TEXT_CANDIDATES = 60
IDENTIFIER_CANDIDATES = 50
TEXT_MATCH_CAP_FACTOR = 2  # hard stop at this many times the budget (estimates can be low)
# ts_rank normalization flags: raw ranks (0) beat dividing by 1 + log(length) (1) alone and tie in
# the blend (bench/search_bench.py).
TEXT_NORMALIZATION = 0
HNSW_MIN_EF_SEARCH = 40


@dataclass(frozen=True, slots=True)
class Filters:
    repository_ids: list[uuid.UUID] | None = None
    language: str | None = None
    path_regex: str | None = None
    roles: tuple[Role, ...] | None = None  # the search scope; None: every role

    @property
    def any(self) -> bool:
        return bool(self.repository_ids or self.language or self.path_regex or self.roles)


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
    if filters.roles:
        clauses.append(f"c.role = ANY({params.add(list(filters.roles))}::text[])")
    join = " JOIN files f ON f.id = c.file_id" if filters.path_regex else ""
    return join, " AND ".join(clauses)


@dataclass(frozen=True, slots=True, eq=False)
class CandidateQuery:
    """Everything the candidate SQL depends on, built once per search."""

    vector: npt.NDArray[np.float32] | None = None  # the query's transformer embedding
    static_vector: npt.NDArray[np.float32] | None = None  # the query's static-tier embedding
    static_search: bool = True  # gather static-tier neighbours (False: only score candidates with it)
    text: TextPlan | None = None
    identifier: str | None = None  # the dotted identifier an identifier-like query names
    identifier_query: str | None = None  # tsquery finding chunks that may define it
    filters: Filters = field(default_factory=Filters)
    vector_candidates: int = VECTOR_CANDIDATES
    static_candidates: int = STATIC_CANDIDATES
    text_candidates: int = TEXT_CANDIDATES
    normalization: int = TEXT_NORMALIZATION


def build_candidate_sql(query: CandidateQuery) -> tuple[str, list[Any]]:
    vector, text, identifier, identifier_query = query.vector, query.text, query.identifier, query.identifier_query
    params = _Params()
    join, where = _filter_sql(query.filters, params)
    ctes: list[str] = []
    qvec = params.add(vector) if vector is not None else None
    svec = params.add(HalfVector(query.static_vector)) if query.static_vector is not None else None
    norm = params.add(query.normalization) if text else None
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
                ORDER BY c.embedding <=> {qvec} LIMIT {params.add(query.vector_candidates)})"""
        )
    if svec and query.static_search:
        ctes.append(
            f"""svec AS MATERIALIZED (
                SELECT c.id, c.static_embedding <=> {svec} AS distance
                FROM chunks c{join}
                WHERE {where}
                ORDER BY c.static_embedding <=> {svec} LIMIT {params.add(query.static_candidates)})"""
        )
    # When even the rarest terms are everywhere they cannot pick candidates worth ranking; vectors can.
    if text and ((qvec is None and svec is None) or text.estimated_rows <= text.budget):
        match = params.add(text.match_query)
        # Each rank call reads (detoasts) the row's tsvector again: one plain ts_rank on the rare terms
        # picks the candidates, and only they get the per-term IDF rank below.
        ctes.append(
            f"""lex AS MATERIALIZED (
                SELECT m.id, ts_rank(m.tsv, (SELECT to_tsquery('simple', {match}::text)), {norm}) AS rank
                FROM (SELECT c.id, c.tsv FROM chunks c{join}
                      WHERE c.tsv @@ to_tsquery('simple', {match}::text) AND {where}
                      LIMIT {params.add(TEXT_MATCH_CAP_FACTOR * text.budget)}) m
                ORDER BY rank DESC LIMIT {params.add(query.text_candidates)})"""
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
    if svec:
        distance = f"c.static_embedding <=> {svec}"
        static = f"1 - COALESCE(svec.distance, {distance})" if "svec" in names else f"1 - ({distance})"
    else:
        static = "NULL::float8"
    # Rows were picked by their rare terms (cheap); every candidate is scored on all terms.
    text_rank = rank("c.tsv") if text else "0::float8"
    joins = "".join(f" LEFT JOIN {name} ON {name}.id = c.id" for name in ("vec", "svec", "lex") if name in names)
    # No `embedding IS NOT NULL` filter above: it would steer the planner away from the HNSW index.
    union = " UNION ".join(
        f"SELECT id FROM {n}" + (" WHERE distance IS NOT NULL" if n in ("vec", "svec") else "") for n in names
    )
    sql = f"""
        WITH {", ".join(ctes)}, ids AS ({union})
        SELECT c.id, c.file_id, c.repository_id, f.rel_path, c.start_line, c.end_line, c.symbol, c.kind,
               c.language, c.role, c.content_hash, ({cosine})::float8 AS cosine,
               ({static})::float8 AS static_cosine, ({text_rank})::float8 AS text_rank,
               {"vec.id IS NOT NULL" if "vec" in names else "FALSE"} AS from_vector,
               {"svec.id IS NOT NULL" if "svec" in names else "FALSE"} AS from_static,
               {"lex.id IS NOT NULL" if "lex" in names else "FALSE"} AS from_text
        FROM ids JOIN chunks c ON c.id = ids.id JOIN files f ON f.id = c.file_id{joins}
        WHERE NOT f.is_deleted
    """
    return sql, params.values


def planner_settings(query: CandidateQuery) -> list[str]:
    """The `SET LOCAL` statements the candidate SQL is planned under (tests/integration/test_query_plans.py)."""
    # A LIMIT over a common term tempts the planner into a sequential scan that evaluates `@@` on
    # every row's (toasted) tsvector; every access path here has an index, so forbid that.
    # Plans must see the actual filter and vector: a generic plan cannot tell a selective path glob
    # (exact search over few rows) from a broad one (HNSW).
    settings = ["SET LOCAL enable_seqscan = off", "SET LOCAL plan_cache_mode = force_custom_plan"]
    if query.vector is not None or query.static_vector is not None:
        wanted = max(query.vector_candidates, query.static_candidates)
        settings.append(f"SET LOCAL hnsw.ef_search = {max(HNSW_MIN_EF_SEARCH, int(wanted))}")
        if query.filters.any:  # filters make HNSW skip rows: keep scanning until enough pass (pgvector ≥ 0.8)
            settings.append("SET LOCAL hnsw.iterative_scan = relaxed_order")
    return settings


async def fetch_candidates(conn: Conn, query: CandidateQuery) -> list[Candidate]:
    sql, args = build_candidate_sql(query)
    if not sql:
        return []
    settings = planner_settings(query)
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
            role=r["role"],
            content_hash=r["content_hash"],
            cosine=r["cosine"],
            static_cosine=r["static_cosine"],
            text_raw=float(r["text_rank"] or 0.0),
            from_vector=r["from_vector"],
            from_text=r["from_text"],
            from_static=r["from_static"],
        )
        for r in rows
    ]
    if query.identifier:
        for c in out:
            c.identifier = identifier_boost(c.symbol, c.kind, query.identifier)
    return out
