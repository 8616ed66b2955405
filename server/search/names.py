"""Name coverage: how much of a query a candidate's own name says.

A doc comment's first sentence ("Return the number of rows matched") usually shares words with
the name of the definition it documents (`rowcount`, `ResultProxy.rows_matched`), while the body of
that definition may use them nowhere, and a test or a docs section that mentions them does not
carry them in its name. Full text ranks the symbol's tokens above the body's, but inside one
ts_rank over a document of hundreds of tokens; this is the share of the query's words, weighted
by their inverse document frequency, found among the tokens of the qualified symbol, with the same
stemming as the index (`server/indexer/tokens.py`). (The same share for the file path's tokens
was never chosen by the leave-one-library-out sweep of bench/quality and was dropped.)

    symbol_coverage = Σ idf(t) over query terms t in the symbol's tokens / Σ idf(t) over all terms
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from server.indexer.tokens import code_tokens
from server.search.ranking import Candidate


@lru_cache(maxsize=65_536)
def symbol_terms(symbol: str | None) -> frozenset[str]:
    """The index tokens of a qualified symbol (`Flask.register_blueprint` → flask, registerblueprint,
    regist, blueprint)."""
    return frozenset(code_tokens(symbol).split()) if symbol else frozenset()


def coverage(terms: frozenset[str], weights: Mapping[str, float]) -> float:
    """Share of the query's IDF weight whose terms are among `terms`, in [0, 1]."""
    total = sum(weights.values())
    if total <= 0 or not terms:
        return 0.0
    return sum(w for t, w in weights.items() if t in terms) / total


def set_coverage(candidates: Iterable[Candidate], weights: Mapping[str, float]) -> None:
    """Sets each candidate's `name`: its symbol's coverage of the query terms `weights` (term → IDF)."""
    for c in candidates:
        c.name = coverage(symbol_terms(c.symbol), weights)
