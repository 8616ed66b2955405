from __future__ import annotations

import pytest

from server.indexer.roles import classify
from server.search.intent import intent_of, lexical_query


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("tests/test_app.py", "python"),
        ("src/flask/tests/helpers.py", "python"),
        ("sympy/core/tests/test_basic.py", "python"),
        ("test_blueprints.py", "python"),
        ("pkg/util_test.py", "python"),
        ("conftest.py", "python"),
        ("test/base/test_utils.py", "python"),
        ("internal/server/handler_test.go", "go"),
        ("src/components/Button.test.tsx", "tsx"),
        ("lib/router.spec.js", "javascript"),
        ("src/__tests__/index.js", "javascript"),
        ("spec/models/user_spec.rb", "ruby"),
        ("src/test/java/org/example/ParserTest.java", "java"),
        ("core/src/test/kotlin/Thing.kt", "kotlin"),
        ("Lib.Tests/ParserTests.cs", "csharp"),
        ("src/lexer_test.c", "c"),
        ("tests/integration.rs", "rust"),
        ("modules/ParserSpec.scala", "scala"),
        ("test/cli.bats", "bash"),
        ("pkg/testdata/input.json", "json"),
    ],
)
def test_test_files_by_each_ecosystems_conventions(path: str, language: str) -> None:
    assert classify(path, language) == "test"


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("docs/guide.md", "markdown"),
        ("README.rst", "rst"),
        ("README", "text"),
        ("CHANGES", "text"),
        ("LICENSE", None),
        ("docs/conf.py", "python"),
        ("doc/api/index.html", "html"),
        ("examples/basic/app.py", "python"),
        ("notes.txt", "text"),
    ],
)
def test_docs_files(path: str, language: str | None) -> None:
    assert classify(path, language) == "docs"


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/flask/app.py", "python"),
        # Test frameworks shipped as implementation are code: a nested test/ folder is not enough.
        ("django/test/client.py", "python"),
        ("lib/sqlalchemy/testing/assertions.py", "python"),
        ("sympy/testing/runtests.py", "python"),
        ("src/crypto/PBEKeySpec.java", "java"),
        ("src/Testable.java", "java"),
        ("latest.py", "python"),
        ("pyproject.toml", "toml"),
        (".gitignore", "text"),
        ("security.py", "python"),
        ("src/history.ts", "typescript"),
    ],
)
def test_implementation_and_configuration_are_code(path: str, language: str | None) -> None:
    assert classify(path, language) == "code"


@pytest.mark.parametrize(
    ("query", "intent"),
    [
        ("where are blueprints registered", "code"),
        ("how does the app context get pushed", "code"),
        ("session cookie signing", "code"),
        ("Return the list of free symbols.", "code"),
        ("Test whether the expression is a polynomial.", "code"),
        ("how do I configure logging", "docs"),
        ("how to deploy behind nginx", "docs"),
        ("guide to blueprints", "docs"),
        ("explain the application factory", "docs"),
        ("what is a request context", "docs"),
        ("tests for url_for", "test"),
        ("unit tests of the session interface", "test"),
        ("how is register_blueprint tested", "test"),
    ],
)
def test_query_intent(query: str, intent: str) -> None:
    assert intent_of(query) == intent


def test_identifier_queries_always_seek_code() -> None:
    assert intent_of("tests", identifier=True) == "code"
    assert intent_of("tests") == "test"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("how do I configure logging", "configure logging"),
        ("explain the application factory", "the application factory"),
        ("SILENCED_SYSTEM_CHECKS documentation", "SILENCED_SYSTEM_CHECKS"),
        ("guide to blueprints", "to blueprints"),
        ("what is a request context", "a request context"),
        ("documentation", "documentation"),  # nothing else to match: kept
        ("where are blueprints registered", "where are blueprints registered"),  # code-seeking: as typed
        ("tests for url_for", "tests for url_for"),
    ],
)
def test_full_text_leaves_docs_seeking_phrases_out(query: str, words: str) -> None:
    assert lexical_query(query, intent_of(query)) == words
