"""The binary tsvector the indexer COPYs: lexemes, weights and positions as `tsvector_recv` reads them."""

from __future__ import annotations

import struct

import pytest

from server.indexer.fulltext import MAX_POSITIONS, tsvector_binary

pytestmark = pytest.mark.unit

WEIGHTS = {3: "A", 2: "B", 0: "D"}


def decode(blob: bytes) -> dict[str, list[tuple[int, str]]]:
    """Lexeme → [(position, weight)], by PostgreSQL's wire format; fails on trailing bytes or repeats."""
    (count,) = struct.unpack_from("!i", blob)
    offset, out = 4, {}
    for _ in range(count):
        end = blob.index(b"\0", offset)
        lexeme = blob[offset:end].decode()
        (n,) = struct.unpack_from("!H", blob, end + 1)
        raw = struct.unpack_from(f"!{n}H", blob, end + 3)
        offset = end + 3 + 2 * n
        assert lexeme not in out
        out[lexeme] = [(p & 0x3FFF, WEIGHTS[p >> 14]) for p in raw]
    assert offset == len(blob)
    return out


def test_each_lexeme_counts_its_places_in_weight_order() -> None:
    doc = decode(tsvector_binary("parser parse", "src parser py", "parse the parser parse text the"))
    assert doc == {
        "parser": [(1, "A"), (2, "B"), (3, "D")],
        "parse": [(1, "A"), (2, "D"), (3, "D")],
        "src": [(1, "B")],
        "py": [(1, "B")],
        "the": [(1, "D"), (2, "D")],
        "text": [(1, "D")],
    }


def test_body_only_and_empty_parts() -> None:
    assert decode(tsvector_binary("", "", "a b a")) == {"a": [(1, "D"), (2, "D")], "b": [(1, "D")]}
    assert decode(tsvector_binary("", "", "")) == {}
    assert decode(tsvector_binary("x", "", "")) == {"x": [(1, "A")]}
    # the same words again, now from the caches
    assert decode(tsvector_binary("", "", "b a a")) == {"a": [(1, "D"), (2, "D")], "b": [(1, "D")]}


def test_positions_stop_at_postgresqls_limit() -> None:
    doc = decode(tsvector_binary("word", "", " ".join(["word"] * 300 + ["other"] * 300)))
    assert len(doc["word"]) == MAX_POSITIONS and doc["word"][0] == (1, "A") and doc["word"][-1] == (256, "D")
    assert doc["other"] == [(i, "D") for i in range(1, MAX_POSITIONS + 1)]


def test_non_ascii_lexemes_are_utf8() -> None:
    assert decode(tsvector_binary("", "", "café 中文 café")) == {"café": [(1, "D"), (2, "D")], "中文": [(1, "D")]}
