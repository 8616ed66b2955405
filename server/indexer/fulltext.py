"""Each chunk's full-text document, built in the indexer and COPYed as a binary `tsvector`.

The document weighs where a token occurs: the chunk's qualified symbol (`A`), the file's path
(`B`) and the chunk's text (`D`), with tokens from `server.indexer.tokens` (the rule queries
follow too). Building it here instead of in a generated column halves the store phase: the
server neither parses token text nor stores it twice.

`ts_rank` over single terms (the only way search ranks) counts a lexeme's positions per weight
and ignores where they are, so positions are numbered per lexeme (1, 2, … in weight order A, B, D),
at most 256 per lexeme as PostgreSQL allows. Phrase operators are never used on this column.

Wire format (PostgreSQL's `tsvector_recv`): int32 lexeme count, then per lexeme its UTF-8 text,
a NUL byte, uint16 position count and that many uint16 positions (weight in the top two bits).
The server sorts lexemes itself.
"""

from __future__ import annotations

import struct
from collections import Counter

MAX_POSITIONS = 256  # per lexeme (PostgreSQL's MAXNUMPOS)
MAX_LEXEME_BYTES = 2046  # PostgreSQL's limit per lexeme
_WEIGHT_A, _WEIGHT_B, _WEIGHT_D = 3 << 14, 2 << 14, 0
_CACHE_LIMIT = 50_000  # lexemes remembered (see server/indexer/tokens.py)

_positions: dict[tuple[int, int, int], bytes] = {}
_lexemes: dict[str, bytes] = {}


def _positions_of(counts: tuple[int, int, int]) -> bytes:
    blob = _positions.get(counts)
    if blob is None:
        weights: list[int] = []
        for weight, n in zip((_WEIGHT_A, _WEIGHT_B, _WEIGHT_D), counts, strict=True):
            weights.extend([weight] * n)
        weights = weights[:MAX_POSITIONS]
        blob = struct.pack(f"!H{len(weights)}H", len(weights), *(i + 1 | w for i, w in enumerate(weights)))
        if len(_positions) < _CACHE_LIMIT:
            _positions[counts] = blob
    return blob


def _lexeme(token: str) -> bytes:
    raw = _lexemes.get(token)
    if raw is None:
        raw = token.encode("utf-8", "replace")[:MAX_LEXEME_BYTES] + b"\0"
        if len(_lexemes) >= _CACHE_LIMIT:
            _lexemes.clear()
        _lexemes[token] = raw
    return raw


def tsvector_binary(symbol_tokens: str, path_tokens: str, body_tokens: str) -> bytes:
    """The binary `tsvector` of one chunk from space-separated tokens of each part."""
    symbol = Counter(symbol_tokens.split())
    path = Counter(path_tokens.split())
    body = Counter(body_tokens.split())
    lexemes = symbol.keys() | path.keys() | body.keys()
    lexemes.discard("")
    out = [struct.pack("!i", len(lexemes))]
    for token in lexemes:
        out.append(_lexeme(token))
        out.append(_positions_of((symbol.get(token, 0), path.get(token, 0), body.get(token, 0))))
    return b"".join(out)
