"""What a file is for: implementation `code`, `test` code, or `docs`.

Decided at index time from the path alone, by each ecosystem's conventions, and stored with every
chunk so that search can rank implementation first for code-seeking queries and filter by scope.

* test: `tests/`, `__tests__/`, `spec/` folders at any depth; a top-level `test/` or `src/test/`
  (Maven, Gradle); `test_*.py`, `*_test.py`, `conftest.py`; `*_test.go`; `*.test.ts`, `*.spec.js`
  and the like; `*_spec.rb`, `*_test.rb`; `*Test.java`, `*Tests.cs`, `*Spec.scala`, `*IT.java`;
  `*_test.c`, `*_unittest.cc`; `*.bats`; `testdata/` and `fixtures/` folders beside tests.
* docs: prose formats (Markdown, reStructuredText, AsciiDoc, plain text), anything under a
  `docs/`, `doc/`, `documentation/` or `examples/` folder, and README/CHANGELOG-style files.
* code: everything else (implementation, configuration, build files).

A `test/` folder below the top level is not enough on its own: libraries ship test *frameworks*
as implementation (`django/test/client.py`, `sqlalchemy/testing/`), so there the file name must
follow a test convention too.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal, get_args

Role = Literal["code", "test", "docs"]
ROLES: tuple[Role, ...] = get_args(Role)

_TEST_DIRS = frozenset({"tests", "__tests__", "__test__", "spec", "specs", "testdata", "test_data", "testcases"})
_DOCS_DIRS = frozenset({"docs", "doc", "documentation", "examples", "example", "_docs", "docsrc"})
_PROSE_LANGUAGES = frozenset({"markdown", "rst"})
_PROSE_SUFFIXES = (".txt", ".text", ".adoc", ".asciidoc", ".tex")
_DOCS_NAMES = re.compile(
    r"(readme|changelog|changes|history|news|contributing|authors|license|licence|copying|notice|"
    r"code_of_conduct|security|upgrading|migration|faq|todo)([._-].*)?",
    re.IGNORECASE,
)
_TEST_NAMES = re.compile(
    r"""(
        test_.+\.py | .+_tests?\.py | conftest\.py            # Python
      | .+_test\.go                                          # Go
      | .+[._-](test|spec)\.(js|jsx|mjs|cjs|ts|tsx|mts|cts)  # JS/TS
      | .+_(spec|test)\.rb                                   # Ruby
      | .+(Test|Tests|IT)\.(java|kt|kts|scala|groovy|cs|swift|php)
      | .+(Spec|Suite)\.(scala|groovy|kt)                   # ScalaTest, Spock, Kotest
      | Test[A-Z].*\.(java|kt|cs)
      | .+_(test|tests|unittest)\.(c|cc|cpp|cxx|h|hpp)      # C/C++
      | test_.+\.(c|cc|cpp|cxx|rs|sh|js|ts)
      | .+\.bats
    )""",
    re.VERBOSE,
)


def classify(rel_path: str, language: str | None) -> Role:
    """The role of the file at `rel_path` (POSIX, relative to the repository root)."""
    parts = rel_path.split("/")
    name, folders = parts[-1], [p.lower() for p in parts[:-1]]
    if _TEST_NAMES.fullmatch(name):
        return "test"
    if any(f in _TEST_DIRS for f in folders):
        return "test"
    if folders[:1] == ["test"] or ("src", "test") in itertools.pairwise(folders):
        return "test"
    if language in _PROSE_LANGUAGES or any(f in _DOCS_DIRS for f in folders):
        return "docs"
    if language in (None, "text") and (name.lower().endswith(_PROSE_SUFFIXES) or _DOCS_NAMES.fullmatch(name)):
        return "docs"  # notes.txt, README, CHANGES, LICENSE; not .gitignore
    return "code"
