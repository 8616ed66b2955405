"""The quality suite's query extraction, gold rule, sampling, metrics and leave-one-library-out choice."""

from __future__ import annotations

import pytest

from bench.quality import queries
from bench.quality.analysis import FileAnalysis, analyse
from bench.quality.metrics import lolo_choice, lolo_ranks, metrics, objective
from bench.quality.model import Definition, Query, Section, Target
from bench.quality.queries import doc_queries, docs_queries, ident_queries, sample
from bench.quality.suite import Library

pytestmark = pytest.mark.unit

LIB = Library("demo", "1.0", "js", "npm", frozenset({"javascript", "typescript"}))
SRC_TS = """/** Parse a config file into options. */
export function parseConfig(path: string) {
  const text = read(path);
  return JSON.parse(text);
}

/** Shared words in two places. */
export function left() {
  return 1;
  // end
}

export class Loader {
  load() { return 1; }
}
"""
DIST_JS = """/** Parse a config file into options. */
export function parseConfig(path) {
  const text = read(path);
  return JSON.parse(text);
}

/** Shared words in two places. */
export function right() {
  return 2;
  // end
}
"""
TEST_PY = """def test_parseConfig():
    assert True


def test_parseConfig_empty():
    assert True


def test_other():
    pass
"""
README = "# Demo\n\n## Loading config files\n\nCall parseConfig.\n\n## Usage\n\nText.\n"


def _files() -> list[FileAnalysis]:
    return [
        analyse("src/config.ts", SRC_TS),
        analyse("dist/config.js", DIST_JS),
        analyse("tests/test_config.py", TEST_PY),
        analyse("README.md", README),
    ]


def test_doc_queries_merge_copies_and_drop_ambiguous_sentences() -> None:
    qs = doc_queries(LIB, _files())
    assert [q.text for q in qs] == ["Parse a config file into options."]
    assert [t.path for t in qs[0].targets] == ["dist/config.js", "src/config.ts"]  # copies of one definition
    # "Shared words ..." documents `left` and `right`: two different definitions, no right answer.


def test_ident_queries_only_for_names_defined_once() -> None:
    qs = {q.text: q for q in ident_queries(LIB, _files(), seed=1)}
    assert "parseConfig" in qs and len(qs["parseConfig"].targets) == 2
    assert "Loader" in qs and ("load" in qs or "Loader.load" in qs)
    assert not any(t.startswith("test") for t in qs)  # test functions are not looked up by name
    assert "left" in qs and "right" in qs


def test_docs_queries_skip_generic_headings() -> None:
    qs = docs_queries(LIB, _files(), seed=3)
    assert [q.about for q in qs] == ["Loading config files"]
    assert qs[0].text.endswith(("loading config files", "loading config files documentation"))
    assert qs[0].targets == (Target("README.md", 3, 6, None, False),)


def test_tests_queries_find_tests_named_after_a_definition() -> None:
    qs = queries.tests_queries(LIB, _files())
    assert [(q.text, len(q.targets)) for q in qs] == [("tests for parseConfig", 2)]


def _definition(kind: str, lead: int, header: int, end: int) -> Definition:
    return Definition("a.py", "python", "f", None, kind, lead, header, end, None)


def test_gold_rule_for_definitions_and_sections() -> None:
    method = Target.of_definition(_definition("method", 10, 11, 20))
    assert method.answered_by("a.py", 10, 20) and method.answered_by("a.py", 15, 20)  # a later part counts
    assert not method.answered_by("a.py", 1, 20)  # the class outline around it
    assert not method.answered_by("b.py", 11, 20)
    cls = Target.of_definition(_definition("class", 1, 1, 20))
    assert cls.answered_by("a.py", 1, 20) and not cls.answered_by("a.py", 10, 20)  # its method is not the class
    section = Target.of_section(Section("README.md", "Install", 5, 9, 3))
    assert section.answered_by("README.md", 1, 6) and section.answered_by("README.md", 9, 30)
    assert not section.answered_by("README.md", 10, 30)


def test_rank_in_is_the_first_answering_result() -> None:
    q = Query("doc", "demo", "js", "x", (Target("a.py", 5, 9), Target("b.py", 1, 3)))
    assert q.rank_in([("c.py", 1, 9), ("b.py", 1, 3), ("a.py", 5, 9)]) == 2
    assert q.rank_in([("c.py", 1, 9)]) is None
    assert Query.from_json(q.to_json()) == q


def test_sample_keeps_gold_files_and_fills_to_the_budget() -> None:
    files = [f"f{i}.py" for i in range(100)]
    qs = {"doc": [Query("doc", "demo", "js", f"q{i}", (Target(f"f{i}.py", 1, 2),)) for i in range(50)]}
    got = sample("demo", files, qs, max_files=20, cap=30, seed=5)  # type: ignore[arg-type]
    assert len(got.files) == 20
    assert len(got.queries["doc"]) == 12  # GOLD_SHARE of the budget holds gold files
    assert all(q.targets[0].path in got.files for q in got.queries["doc"])
    again = sample("demo", files, qs, max_files=20, cap=30, seed=5)  # type: ignore[arg-type]
    assert again == got
    everything = sample("demo", files, qs, max_files=None, cap=30, seed=5)  # type: ignore[arg-type]
    assert len(everything.files) == 100 and len(everything.queries["doc"]) == 30


def test_metrics() -> None:
    m = metrics([1, 2, None, 11, 4])
    assert m.n == 5
    assert m.mrr == pytest.approx((1 + 0.5 + 0.25) / 5)
    assert m.r1 == pytest.approx(0.2) and m.r10 == pytest.approx(0.6)
    assert metrics([]).n == 0


def test_lolo_chooses_on_the_other_libraries_only() -> None:
    # "a" is best everywhere but on lib3, where "b" is.
    libs = ["lib1", "lib2", "lib3", "lib4"]
    table = {
        "a": {lib: {"doc": [2 if lib == "lib3" else 1]} for lib in libs},
        "b": {lib: {"doc": [1 if lib == "lib3" else 2]} for lib in libs},
    }
    chosen = lolo_choice(table, ["a", "b"], libs)
    assert chosen == dict.fromkeys(libs, "a")  # lib3 never votes for itself
    assert lolo_ranks(table, chosen)["lib3"]["doc"] == [2]
    # Each (library, set) cell weighs the same, whatever its size.
    sized: dict[str, dict[str, dict[str, list[int | None]]]] = {"c": {"x": {"doc": [1] * 9, "ident": [None]}}}
    assert objective(sized, "c", ["x"]) == pytest.approx(0.5)
    tie = {"a": {"x": {"doc": [1]}, "y": {"doc": [1]}}, "b": {"x": {"doc": [1]}, "y": {"doc": [1]}}}
    assert lolo_choice(tie, ["a", "b"], ["x", "y"]) == {"x": "a", "y": "a"}
