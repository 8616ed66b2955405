"""Pure ranking: blending each candidate's signals into one score, and dropping repeats.

    score = w_t·T + w_s·S + w_x·text + w_n·name + identifier + prior(intent, role, kind)

* T is the transformer cosine (`chunks.embedding`), S the static-tier cosine mapped onto the
  transformer's scale for this query: static cosines are z-scored over the candidates and given the
  transformer cosines' mean and spread (raw static cosines live on another scale, and mixing them
  raw is worse than either tier alone). A candidate without a transformer vector uses S for T
  until the query-time re-rank embeds it; one without any vector gets a stand-in between the
  weakest and the best semantic score, by its text rank.
* text is the full-text rank divided by the best full-text rank among this query's candidates.
* name is the share of the query's IDF weight found among the tokens of the chunk's qualified
  symbol (`server/search/names.py`).
* identifier (≥ 1) puts the definition an identifier-like query names first.
* prior orders roles by what the query seeks (`server/search/intent.py`): implementation before
  tests and docs for code-seeking queries; docs and tests where those are sought.

The default weights were chosen leave-one-library-out on the retrieval suite (bench/quality).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from server.indexer.roles import Role
from server.indexer.types import ChunkKind
from server.search.intent import Intent

# Identifier boost: the symbol is the identifier or ends with `.identifier` ...
EXACT_NAME_BOOST = 1.5  # ... in the same case
CASE_INSENSITIVE_NAME_BOOST = 1.0  # ... in another case
DEFINITION_BOOST = 0.25  # added when the chunk is a definition (not module code, a section or a window)
WHOLE_NAME_BOOST = 0.1  # added when the whole symbol matches, not only its last part
# Chunk kinds that are definitions (everything the chunker emits except these).
NON_DEFINITION_KINDS: frozenset[ChunkKind] = frozenset({"module", "section", "window"})


@dataclass(frozen=True, slots=True)
class Weights:
    """Every weight of the blend; `DEFAULT_WEIGHTS` is what search uses (bench/README.md)."""

    transformer: float = 0.60
    static: float = 0.15
    text: float = 0.15
    name: float = 0.10
    # Added to the score, by what the query seeks and what the chunk is.
    code_seeking_test: float = -0.08
    code_seeking_docs: float = -0.12
    code_seeking_non_definition: float = -0.02
    docs_seeking_docs: float = 0.16
    docs_seeking_test: float = -0.08
    test_seeking_test: float = 0.24
    test_seeking_docs: float = -0.08

    def prior(self, intent: Intent, role: Role, kind: ChunkKind) -> float:
        if intent == "code":
            if role == "test":
                return self.code_seeking_test
            if role == "docs":
                return self.code_seeking_docs
            return self.code_seeking_non_definition if kind in NON_DEFINITION_KINDS else 0.0
        if intent == "docs":
            return self.docs_seeking_docs if role == "docs" else self.docs_seeking_test if role == "test" else 0.0
        return self.test_seeking_test if role == "test" else self.test_seeking_docs if role == "docs" else 0.0


DEFAULT_WEIGHTS = Weights()


def identifier_boost(symbol: str | None, kind: ChunkKind, identifier: str) -> float:
    """Ranks the definition named by the query above everything else (any boost is ≥ 1)."""
    if not symbol:
        return 0.0
    if symbol == identifier or symbol.endswith("." + identifier):
        boost = EXACT_NAME_BOOST
    else:
        low, ident = symbol.lower(), identifier.lower()
        if not (low == ident or low.endswith("." + ident)):
            return 0.0
        boost = CASE_INSENSITIVE_NAME_BOOST
    if kind not in NON_DEFINITION_KINDS:
        boost += DEFINITION_BOOST
    if symbol.lower() == identifier.lower():
        boost += WHOLE_NAME_BOOST
    return boost


@dataclass(slots=True)
class Candidate:
    id: int
    file_id: int
    repository_id: uuid.UUID
    rel_path: str
    start_line: int
    end_line: int
    symbol: str | None
    kind: ChunkKind
    language: str
    role: Role
    content_hash: str
    cosine: float | None  # transformer tier; None while the chunk has no transformer vector
    static_cosine: float | None  # static tier
    text_raw: float
    from_vector: bool
    from_text: bool
    from_static: bool = False
    identifier: float = 0.0
    name: float = 0.0  # symbol coverage of the query (names.coverage)
    # Set by `fuse`:
    text: float = 0.0
    static: float | None = None  # static cosine on the transformer's scale
    prior: float = 0.0
    score: float = 0.0


def _spread(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def fuse(
    candidates: Iterable[Candidate],
    weights: Weights = DEFAULT_WEIGHTS,
    intent: Intent = "code",
    *,
    semantic: bool = True,
) -> list[Candidate]:
    """Blend into `score` and sort best first (ties: earlier file position first). With
    `semantic=False` (no query vector) only full text, the identifier boost and the prior count."""
    items = list(candidates)
    top_text = max((c.text_raw for c in items), default=0.0)
    statics = [c.static_cosine for c in items if c.static_cosine is not None]
    transformers = [c.cosine for c in items if c.cosine is not None]
    s_mean, s_sd = _spread(statics) if len(statics) >= 2 else (0.0, 0.0)
    t_mean, t_sd = _spread(transformers) if len(transformers) >= 2 else (s_mean, s_sd)
    for c in items:
        c.text = c.text_raw / top_text if top_text > 0 else 0.0
        if c.static_cosine is None:
            c.static = None
        elif s_sd > 0:
            c.static = t_mean + t_sd * (c.static_cosine - s_mean) / s_sd
        else:
            c.static = t_mean if transformers else c.static_cosine
    known = [v for c in items for v in ((c.cosine if c.cosine is not None else c.static),) if v is not None]
    floor, top = min(known, default=0.0), max(known, default=0.0)
    for c in items:
        c.prior = weights.prior(intent, c.role, c.kind)
        if not semantic:
            c.score = c.text + weights.name * c.name + c.identifier + c.prior
            continue
        t = c.cosine if c.cosine is not None else c.static
        if t is None:  # no vector of either tier yet: lexical evidence stands in
            t = floor + (top - floor) * c.text
        s = c.static if c.static is not None else t
        lexical = weights.text * c.text + weights.name * c.name
        c.score = weights.transformer * t + weights.static * s + lexical + c.identifier + c.prior
    items.sort(key=lambda c: (-c.score, c.rel_path, c.start_line))
    return items


def dedupe(ranked: Iterable[Candidate], limit: int) -> list[Candidate]:
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
