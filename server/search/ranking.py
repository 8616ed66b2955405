"""Pure ranking: blending each candidate's signals into one score, and dropping repeats.

    score = w·cosine + (1 − w)·text_rank / max(text_rank over this query's candidates) + identifier

Chunks without a vector yet are found by full text only; their missing cosine is interpolated
between the weakest and the best vector candidate's by their normalised text rank, so the best
lexical match still ranks near the top while weak ones do not crowd out real hits. The identifier
boost is at least 1, so the definition an identifier-like query names comes first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from server.indexer.types import ChunkKind

VECTOR_WEIGHT = 0.85  # w in the blend (bench/README.md)
# Identifier boost: the symbol is the identifier or ends with `.identifier` ...
EXACT_NAME_BOOST = 1.5  # ... in the same case
CASE_INSENSITIVE_NAME_BOOST = 1.0  # ... in another case
DEFINITION_BOOST = 0.25  # added when the chunk is a definition (not module code, a section or a window)
WHOLE_NAME_BOOST = 0.1  # added when the whole symbol matches, not only its last part
# Chunk kinds that are definitions (everything the chunker emits except these).
NON_DEFINITION_KINDS: frozenset[ChunkKind] = frozenset({"module", "section", "window"})


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
