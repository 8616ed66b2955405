"""Name coverage of a query: the share of its IDF weight among a chunk's symbol tokens."""

from __future__ import annotations

import uuid

import pytest

from server.indexer.tokens import query_tokens
from server.search.names import coverage, set_coverage, symbol_terms
from server.search.ranking import Candidate


def weights(query: str, idf: dict[str, float] | None = None) -> dict[str, float]:
    return {t: (idf or {}).get(t, 1.0) for t in query_tokens(query)}


def test_symbol_terms_are_index_tokens_with_stems() -> None:
    assert symbol_terms("Flask.register_blueprint") == {"flask", "registerblueprint", "regist", "blueprint"}
    assert symbol_terms(None) == frozenset()


def test_stemmed_words_of_a_sentence_reach_a_snake_case_name() -> None:
    q = weights("Parsed link headers")
    assert coverage(symbol_terms("parse_header_links"), q) == pytest.approx(1.0)
    assert coverage(symbol_terms("format_links"), q) == pytest.approx(1 / 3)
    assert coverage(symbol_terms("render"), q) == 0.0


def test_rare_words_weigh_more_than_common_ones() -> None:
    q = weights("return the blueprint", {"return": 0.2, "the": 0.1, "blueprint": 3.0})
    assert coverage(symbol_terms("register_blueprint"), q) == pytest.approx(3.0 / 3.3)
    assert coverage(symbol_terms("return_value"), q) == pytest.approx(0.2 / 3.3)


def test_no_terms_no_coverage() -> None:
    assert coverage(symbol_terms("anything"), {}) == 0.0


def test_set_coverage_sets_each_candidates_name_share() -> None:
    c = Candidate(
        id=1, file_id=1, repository_id=uuid.UUID(int=1), rel_path="lib/links.js", start_line=1, end_line=3,
        symbol="parseHeaderLinks", kind="function", language="javascript", role="code", content_hash="h",
        cosine=0.5, static_cosine=None, text_raw=0.0, from_vector=True, from_text=False,
    )  # fmt: skip
    set_coverage([c], weights("parse links"))
    assert c.name == pytest.approx(1.0)
