"""Pure parts of the search engine: globs, identifiers, text-query planning, fusion, dedupe, context."""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import numpy as np
import pytest

from server.indexer.roles import Role
from server.indexer.types import ChunkKind
from server.search.candidates import CandidateQuery, Filters, build_candidate_sql
from server.search.context import _context_from_chunks
from server.search.ranking import DEFAULT_WEIGHTS, Candidate, Weights, dedupe, fuse, identifier_boost
from server.search.request import MAX_LIMIT, SearchError, SearchRequest, glob_to_regex, identifier_of
from server.search.textplan import TermStats, plan_identifier, plan_text_query

REPO = uuid.UUID(int=1)


def cand(id: int, *, file_id: int = 1, lines: tuple[int, int] = (1, 5), cosine: float | None = 0.5,
         text_raw: float = 0.0, symbol: str | None = None, kind: ChunkKind = "function",
         content_hash: str | None = None, from_vector: bool = True, from_text: bool = False, identifier: float = 0.0,
         role: Role = "code", static_cosine: float | None = None) -> Candidate:  # fmt: skip
    return Candidate(
        id=id, file_id=file_id, repository_id=REPO, rel_path=f"f{file_id}.py", start_line=lines[0],
        end_line=lines[1], symbol=symbol, kind=kind, language="python", role=role,
        content_hash=content_hash or f"h{id}", cosine=cosine, static_cosine=static_cosine, text_raw=text_raw,
        from_vector=from_vector, from_text=from_text, identifier=identifier,
    )  # fmt: skip


NO_PRIORS = Weights(
    code_seeking_test=0.0, code_seeking_docs=0.0, code_seeking_non_definition=0.0, docs_seeking_docs=0.0,
    docs_seeking_test=0.0, test_seeking_test=0.0, test_seeking_docs=0.0,
)  # fmt: skip


def blend(vector_weight: float) -> Weights:
    """Transformer cosine and normalised text only, weighted w and 1 − w."""
    return dataclasses.replace(NO_PRIORS, transformer=vector_weight, static=0.0, text=1.0 - vector_weight)


# --- path globs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "matching", "not_matching"),
    [
        ("src/**/*.py", ["src/a.py", "src/x/y/b.py"], ["lib/src/a.py", "src/a.pyc", "src/a.js"]),
        ("*.py", ["a.py", "deep/dir/b.py"], ["a.pyx", "a.py/x.js"]),
        ("src/*.py", ["src/a.py"], ["src/x/a.py"]),
        ("tests/", ["tests/a.py", "tests/x/y.txt"], ["src/tests.py"]),
        ("file?.go", ["x/file1.go"], ["x/file10.go", "x/file/.go"]),
        ("[ab]*.rs", ["a1.rs", "z/b.rs"], ["c.rs"]),
        ("[!ab]*.rs", ["c.rs"], ["a.rs"]),
        ("docs/a+b (1).md", ["docs/a+b (1).md"], ["docs/aab (1).md", "docs/a+b 1.md"]),
        ("**/migrations/*.py", ["app/migrations/0001.py", "migrations/x.py"], ["app/migrations/sub/x.py"]),
    ],
)
def test_glob_to_regex(glob: str, matching: list[str], not_matching: list[str]) -> None:
    regex = re.compile(glob_to_regex(glob))
    for path in matching:
        assert regex.match(path), (glob, path)
    for path in not_matching:
        assert not regex.match(path), (glob, path)


@pytest.mark.parametrize("glob", ["a[b", "[]", "   "])
def test_malformed_glob_is_a_clear_error(glob: str) -> None:
    with pytest.raises(SearchError, match="path_glob"):
        glob_to_regex(glob)


def test_glob_regex_escapes_regex_syntax() -> None:
    regex = glob_to_regex("a.b$(c)|{d}^.txt")
    assert re.fullmatch(regex, "x/a.b$(c)|{d}^.txt")
    assert not re.fullmatch(regex, "x/aXb$(c)|{d}^.txt")


# --- identifiers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("IndexingJobCreate", "IndexingJobCreate"),
        ("parse_config", "parse_config"),
        ("  Foo.bar ", "Foo.bar"),
        ("Foo::bar", "Foo.bar"),
        ("Foo#bar", "Foo.bar"),
        ("parse_config()", "parse_config"),
        ("where do we retry", None),
        ("3things", None),
        ("a-b", None),
        ("Foo.", None),
    ],
)
def test_identifier_of(query: str, expected: str | None) -> None:
    assert identifier_of(query) == expected


def test_identifier_boost_orders_exact_definitions_first() -> None:
    exact_def = identifier_boost("parse_config", "function", "parse_config")
    member = identifier_boost("Loader.parse_config", "method", "parse_config")
    other_case = identifier_boost("Parse_Config", "function", "parse_config")
    module = identifier_boost("parse_config", "module", "parse_config")
    assert exact_def > member > other_case > 0
    assert exact_def > module > 0
    assert min(exact_def, member, other_case, module) >= 1.0  # above any unboosted blend (≤ 1)
    assert identifier_boost("parse_configs", "function", "parse_config") == 0.0
    assert identifier_boost("reparse_config", "function", "parse_config") == 0.0
    assert identifier_boost(None, "module", "parse_config") == 0.0
    assert identifier_boost("Foo.bar", "method", "Foo.bar") > identifier_boost("Foo.bar", "method", "bar")


def test_plan_identifier_skips_names_too_common_to_check() -> None:
    stats = TermStats(rows=100_000, freq={"get": 0.3, "save": 0.01}, floor=0.01)
    assert plan_identifier("get", stats) is None
    assert plan_identifier("save", stats) == "'save'"
    assert plan_identifier("Model.get", stats) == "'model' & 'get'"  # unlisted 'model' makes it rare
    assert plan_identifier("parse_config", None) == "'parseconfig'"
    assert plan_identifier(None, stats) is None


# --- full-text planning -----------------------------------------------------------------------------------


def test_small_tables_match_on_every_term() -> None:
    plan = plan_text_query(["retry", "the", "http"], TermStats(rows=500, freq={}, floor=0.0))
    assert plan is not None
    assert plan.match_query == "'retry' | 'the' | 'http'"
    assert plan.terms == ["'retry'", "'the'", "'http'"]


def test_common_terms_only_rank_rows_found_by_rare_ones() -> None:
    stats = TermStats(rows=100_000, freq={"the": 0.6, "http": 0.03, "failed": 0.012}, floor=0.008)
    plan = plan_text_query(["where", "the", "retry", "failed", "http"], stats, budget=2_000)
    assert plan is not None
    # unlisted terms (where, retry) are estimated at floor/2 = 400 rows each, failed at 1,200
    assert plan.match_query == "'where' | 'retry' | 'failed'"
    assert plan.terms == ["'where'", "'the'", "'retry'", "'failed'", "'http'"]
    idf = dict(zip(plan.terms, plan.idf, strict=True))
    assert idf["'retry'"] == idf["'where'"] > idf["'failed'"] > idf["'http'"] > idf["'the'"] > 0
    assert plan.estimated_rows <= 2_000


def test_without_statistics_every_term_selects_and_weighs_the_same() -> None:
    plan = plan_text_query(["retry", "http", "retry"], None)
    assert plan is not None
    assert (plan.match_query, plan.terms, plan.idf) == ("'retry' | 'http'", ["'retry'", "'http'"], [1.0, 1.0])


def test_only_common_terms_are_required_together() -> None:
    stats = TermStats(rows=100_000, freq={"self": 0.6, "return": 0.5, "value": 0.1}, floor=0.008)
    plan = plan_text_query(["self", "return", "value"], stats)
    assert plan is not None
    assert plan.match_query == "'value' & 'return' & 'self'"
    assert plan_text_query([], stats) is None


# --- fusion and dedupe ------------------------------------------------------------------------------------


def test_fuse_blends_cosine_with_normalised_text_rank() -> None:
    a = cand(1, cosine=0.80, text_raw=0.0)
    b = cand(2, cosine=0.70, text_raw=4.0, from_text=True)
    c = cand(3, cosine=0.75, text_raw=2.0, from_text=True)
    ranked = fuse([a, b, c], blend(0.85))
    assert [x.id for x in ranked] == [2, 3, 1]
    assert b.text == 1.0 and c.text == 0.5
    assert b.score == pytest.approx(0.85 * 0.70 + 0.15)
    only_vectors = fuse([a, b, c], blend(1.0))
    assert [x.id for x in only_vectors] == [1, 3, 2]


def test_chunks_without_vectors_get_a_cosine_between_weakest_and_best_by_text_rank() -> None:
    weakest = cand(1, cosine=0.30, text_raw=2.0, from_text=True)
    strong = cand(2, cosine=0.90)
    best_text = cand(3, cosine=None, text_raw=4.0, from_vector=False, from_text=True)
    half_text = cand(4, cosine=None, text_raw=2.0, from_vector=False, from_text=True)
    ranked = fuse([weakest, strong, best_text, half_text], blend(0.85))
    assert best_text.score == pytest.approx(0.85 * 0.90 + 0.15)
    assert half_text.score == pytest.approx(0.85 * 0.60 + 0.15 * 0.5)
    assert [c.id for c in ranked] == [3, 2, 4, 1]


def test_identifier_boost_wins_over_blend() -> None:
    plain = cand(1, cosine=0.99, text_raw=9.0, from_text=True)
    named = cand(2, cosine=0.10, identifier=1.0)
    assert [x.id for x in fuse([plain, named], blend(0.85))] == [2, 1]


def test_static_cosines_are_mapped_onto_the_transformer_scale_per_query() -> None:
    # Static cosines live on another scale (here around 0.1); z-scored over the candidates and given the
    # transformer cosines' mean and spread, the best static match lands at the transformer's best.
    a = cand(1, cosine=0.60, static_cosine=0.05)
    b = cand(2, cosine=0.80, static_cosine=0.15)
    c = cand(3, cosine=None, static_cosine=0.15, from_vector=False)
    fuse([a, b, c], dataclasses.replace(NO_PRIORS, transformer=0.5, static=0.5, text=0.0))
    assert c.static == pytest.approx(b.static) and c.static is not None and a.static is not None
    assert a.static < 0.70 < c.static  # the transformer mean is 0.70
    # Without a transformer vector the mapped static score stands in for the transformer cosine.
    assert c.score == pytest.approx(c.static)


def test_only_static_vectors_rank_by_static_cosine() -> None:
    weak = cand(1, cosine=None, static_cosine=0.10, from_vector=False)
    strong = cand(2, cosine=None, static_cosine=0.30, from_vector=False)
    ranked = fuse([weak, strong], NO_PRIORS)
    assert [x.id for x in ranked] == [2, 1]
    assert strong.static == pytest.approx(0.30)  # no transformer scale to map onto: unchanged


@pytest.mark.parametrize(
    ("intent", "order"),
    [("code", ["code", "test", "docs"]), ("docs", ["docs", "code", "test"]), ("test", ["test", "code", "docs"])],
)
def test_role_priors_order_equal_candidates_by_what_the_query_seeks(intent: str, order: list[str]) -> None:
    roles: list[Role] = ["docs", "test", "code"]
    items = [cand(i, file_id=i, cosine=0.5, role=role) for i, role in enumerate(roles)]
    ranked = fuse(items, DEFAULT_WEIGHTS, intent)  # type: ignore[arg-type]
    assert [c.role for c in ranked] == order


def test_a_clearly_better_docs_answer_still_beats_code_for_a_code_query() -> None:
    code = cand(1, file_id=1, cosine=0.40, role="code")
    docs = cand(2, file_id=2, cosine=0.70, role="docs")
    assert [c.id for c in fuse([code, docs], DEFAULT_WEIGHTS, "code")] == [2, 1]


def test_text_only_mode_ranks_by_text_identifier_and_prior() -> None:
    a = cand(1, cosine=None, text_raw=1.0, from_vector=False, from_text=True)
    b = cand(2, cosine=None, text_raw=2.0, from_vector=False, from_text=True, role="test")
    ranked = fuse([a, b], DEFAULT_WEIGHTS, "code", semantic=False)
    assert b.score == pytest.approx(1.0 + DEFAULT_WEIGHTS.code_seeking_test)
    assert [c.id for c in ranked] == [2, 1]


def test_dedupe_drops_overlaps_and_other_parts_and_defers_copies() -> None:
    ranked = [
        cand(1, file_id=1, lines=(10, 40), symbol="Big", kind="class"),
        cand(2, file_id=1, lines=(20, 25), symbol="Big.m", kind="method"),  # inside 1
        cand(3, file_id=1, lines=(41, 60), symbol="Big", kind="class"),  # part 2 of 1
        cand(4, file_id=2, lines=(1, 9), content_hash="same"),
        cand(5, file_id=3, lines=(1, 9), content_hash="same"),  # copy of 4 in another file
        cand(6, file_id=1, lines=(61, 70)),
    ]
    assert [c.id for c in dedupe(ranked, 10)] == [1, 4, 6, 5]
    assert [c.id for c in dedupe(ranked, 3)] == [1, 4, 6]


# --- context from neighbouring chunks --------------------------------------------------------------------


def rec(start: int, end: int, content: str) -> dict[str, Any]:
    return {"start_line": start, "end_line": end, "content": content}


def test_context_from_chunks_uses_only_lines_that_map_onto_the_file() -> None:
    rows: list[Any] = [
        rec(1, 3, "l1\nl2\nl3"),
        rec(4, 6, "h4\nh5\nh6"),  # the hit
        rec(7, 10, "outline only"),  # an outline: 1 line for 4 — unusable
    ]
    ctx = _context_from_chunks(rows, 4, 6, 2)
    assert ctx.before == ["l2", "l3"]
    assert ctx.after == []
    assert ctx.source == "index"
    assert _context_from_chunks([rows[1]], 4, 6, 2).source == "none"


# --- request validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SearchRequest("   "), "query is empty"),
        (SearchRequest("x", limit=0), "limit must be between 1 and 50"),
        (SearchRequest("x", limit=MAX_LIMIT + 1), "limit"),
        (SearchRequest("x", context_lines=-1), "context_lines"),
        (SearchRequest("x" * 1001), "at most 1000"),
        (SearchRequest("x", path_glob="a[b"), "path_glob"),
    ],
)
def test_invalid_requests(request_: SearchRequest, message: str) -> None:
    with pytest.raises(SearchError, match=re.escape(message)):
        request_.validated()


def test_validated_normalises_optional_filters() -> None:
    req = SearchRequest("  q  ", language=" Python ", path_glob=" ", repository="")
    v = req.validated()
    assert (v.query, v.language, v.path_glob, v.repository) == ("q", "python", None, None)


# --- SQL assembly -------------------------------------------------------------------------------------------


def test_user_text_only_travels_as_parameters() -> None:
    evil = "x'; DROP TABLE chunks; --"
    plan = plan_text_query(["drop", "table"], None)
    sql, args = build_candidate_sql(CandidateQuery(
        vector=np.zeros(4, dtype=np.float32), text=plan, identifier="Foo.bar", identifier_query="'foo' & 'bar'",
        filters=Filters(repository_ids=[REPO], language=evil, path_regex=glob_to_regex(evil)),
    ))  # fmt: skip
    assert "DROP" not in sql and "x'" not in sql
    assert evil in args and glob_to_regex(evil) in args
    assert "hnsw" not in sql  # session settings are applied apart, with SET LOCAL


def test_nothing_to_search_builds_no_query() -> None:
    assert plan_text_query(["", ""], None) is None  # e.g. a query of punctuation only
    built = build_candidate_sql(
        CandidateQuery(vector=None, text=None, identifier=None, identifier_query=None, filters=Filters())
    )
    assert built == ("", [])
