"""The product's blend (`server.search.ranking.fuse` + `dedupe`) over cached features, vectorised,
so a sweep over hundreds of weight configurations stays cheap.

Everything in `fuse` that does not depend on the weights (normalised text, the static cosine on
the transformer's scale, the stand-in for a chunk without vectors, name coverage) is
computed once per query by `fuse` itself; a configuration then only costs a dot product, a sort and
the dedupe walk. `adapter.rerank` stays the reference: `bench.quality` checks that both agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.indexer.roles import Role
from server.indexer.types import ChunkKind
from server.search.intent import Intent
from server.search.names import set_coverage
from server.search.ranking import Candidate, Weights, dedupe, fuse

# Per candidate, the blend's terms in this order; the weights' vector follows it.
_TERMS = ("transformer", "static", "text", "name")
# Role priors: which `Weights` field applies to a candidate, by the query's intent.
_PRIORS = (
    "code_seeking_test", "code_seeking_docs", "code_seeking_non_definition", "docs_seeking_docs",
    "docs_seeking_test", "test_seeking_test", "test_seeking_docs",
)  # fmt: skip
_ZERO = Weights(**{f.name: 0.0 for f in dataclasses.fields(Weights)})


@dataclass(slots=True)
class Prepared:
    """One query's candidates: the blend's terms, identifier boost and prior field per candidate."""

    cands: list[Candidate]
    terms: npt.NDArray[np.float64]  # (candidates, len(_TERMS))
    identifier: npt.NDArray[np.float64]
    prior: npt.NDArray[np.int64]  # index into _PRIORS, -1: none
    order_key: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]  # (path rank, start line) for ties


_PROBE = dataclasses.replace(_ZERO, **{p: float(i + 1) for i, p in enumerate(_PRIORS)})


def _prior_index(intent: Intent, role: Role, kind: ChunkKind) -> int:
    """Which prior field `Weights.prior` uses for this candidate (-1: none)."""
    return int(_PROBE.prior(intent, role, kind)) - 1


def prepare(cands: list[Candidate], intent: Intent, term_weights: Mapping[str, float]) -> Prepared:
    set_coverage(cands, term_weights)
    basis = []
    for term in _TERMS:  # fuse with one term's weight 1 and no priors gives that term per candidate
        weights = dataclasses.replace(_ZERO, **{term: 1.0})
        by_id = {c.id: c.score - c.identifier for c in fuse([dataclasses.replace(c) for c in cands], weights, intent)}
        basis.append([by_id[c.id] for c in cands])
    paths = {p: i for i, p in enumerate(sorted({c.rel_path for c in cands}))}
    return Prepared(
        cands,
        np.array(basis, dtype=np.float64).T.reshape(len(cands), len(_TERMS)),
        np.array([c.identifier for c in cands], dtype=np.float64),
        np.array([_prior_index(intent, c.role, c.kind) for c in cands], dtype=np.int64),
        (np.array([paths[c.rel_path] for c in cands]), np.array([c.start_line for c in cands])),
    )


@dataclass(frozen=True, slots=True)
class Blend:
    """One configuration as vectors: the terms' weights, the prior fields' values, the identifier factor."""

    terms: npt.NDArray[np.float64]
    priors: npt.NDArray[np.float64]  # by _PRIORS index; the last entry (index -1) is 0: no prior
    identifier: float = 1.0

    @classmethod
    def of(cls, weights: Weights, identifier: float = 1.0) -> Blend:
        terms = np.array([getattr(weights, t) for t in _TERMS], dtype=np.float64)
        priors = np.array([getattr(weights, p) for p in _PRIORS] + [0.0], dtype=np.float64)
        return cls(terms, priors, identifier)


def ranked(p: Prepared, blend: Blend, limit: int) -> list[Candidate]:
    if not p.cands:
        return []
    score = p.terms @ blend.terms + blend.identifier * p.identifier + blend.priors[p.prior]
    order = np.lexsort((p.order_key[1], p.order_key[0], -score))
    return dedupe((p.cands[i] for i in order), limit)
