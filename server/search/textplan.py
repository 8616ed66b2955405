"""Text-query planning: which full-text terms select rows and how each term weighs in the rank.

    text_rank = Σ over query terms of idf(term)·ts_rank(tsv, term)

IDF comes from PostgreSQL's statistics of the tsv column (`load_term_stats`), so no table of
document frequencies has to be kept.

Full-text cost is bounded: ranking must read each matching row's tsvector, so only the rarer
query terms select rows (about TEXT_MATCH_BUDGET of them, ranked on those terms), and only the
final candidates are ranked on every term. Identifier-like queries get a second tsquery that
finds the chunks that may define the identifier, unless its name is too common to check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.db.cluster import Conn
from server.indexer.tokens import MAX_TOKEN_CHARS, identifier_lexeme

TEXT_MATCH_BUDGET = 1_000  # rows whose tsvector is ranked, by the planner's estimate ...
TEXT_ONLY_MATCH_BUDGET = 3_000  # ... and when full text works alone (no query embedding, no HNSW)
IDENTIFIER_MATCH_BUDGET = 5_000  # rows checked for a symbol match; beyond it the name is too common
RANK_TERMS = 10  # query terms taking part in ranking, highest IDF first

_STATS_SQL = """
SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs,
       (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) AS rows
FROM (SELECT 1) one
LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = 'chunks' AND s.attname = 'tsv'
"""


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

    def term_weights(self) -> dict[str, float]:
        """Every query term (unquoted) and its IDF."""
        return {t.strip("'"): w for t, w in zip(self.terms, self.idf, strict=True)}

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
    parts = [identifier_lexeme(p) for p in identifier.split(".")]
    if not all(0 < len(p) <= MAX_TOKEN_CHARS for p in parts):
        return None
    if stats is not None and stats.rows > IDENTIFIER_MATCH_BUDGET:
        estimate = stats.rows
        for part in parts:
            estimate *= stats.freq.get(part, stats.floor / 2)
        if estimate > IDENTIFIER_MATCH_BUDGET:
            return None
    return " & ".join(map(_quote, parts))


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
