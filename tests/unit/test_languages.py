from __future__ import annotations

import pytest

from server.indexer.languages import (
    KNOWN_LANGUAGES,
    TREE_SITTER_LANGUAGES,
    canonical_language,
    detect_language,
    is_code,
    language_from_shebang,
)
from server.search.request import SearchError, SearchRequest


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/app.py", "python"),
        ("stubs/mod.pyi", "python"),
        ("web/index.js", "javascript"),
        ("web/index.MJS", "javascript"),
        ("web/app.ts", "typescript"),
        ("web/App.tsx", "tsx"),
        ("cmd/main.go", "go"),
        ("src/lib.rs", "rust"),
        ("src/Main.java", "java"),
        ("src/x.c", "c"),
        ("include/x.h", "c"),
        ("src/x.cpp", "cpp"),
        ("src/x.HPP", "cpp"),
        ("src/X.cs", "csharp"),
        ("lib/x.rb", "ruby"),
        ("web/index.php", "php"),
        ("app/Main.kt", "kotlin"),
        ("app/Main.swift", "swift"),
        ("src/Main.scala", "scala"),
        ("scripts/run.sh", "bash"),
        ("README.md", "markdown"),
        ("docs/index.rst", "rst"),
        ("notes.txt", "text"),
        ("package.json", "json"),
        ("ci.yml", "yaml"),
        ("pyproject.toml", "toml"),
        ("setup.cfg", "ini"),
        ("pom.xml", "xml"),
        ("templates/base.html", "html"),
        ("templates/page.jinja2", "html"),
        ("static/site.css", "css"),
        ("static/site.scss", "scss"),
        ("db/schema.sql", "sql"),
        ("locale/fr/LC_MESSAGES/django.po", "po"),
        ("app_template/models.py-tpl", "python"),
    ],
)
def test_detects_language_by_extension_case_insensitively(path: str, expected: str) -> None:
    assert detect_language(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Dockerfile", "dockerfile"),
        ("docker/Dockerfile.dev", "dockerfile"),
        ("Makefile", "makefile"),
        ("GNUmakefile", "makefile"),
        ("Gemfile", "ruby"),
        ("Rakefile", "ruby"),
        ("CMakeLists.txt", "cmake"),
        ("LICENSE", "text"),
        ("sub/.gitignore", "text"),
    ],
)
def test_detects_language_by_file_name(path: str, expected: str) -> None:
    assert detect_language(path) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"#!/usr/bin/env python3\nprint(1)\n", "python"),
        (b"#!/usr/bin/python3.11 -u\n", "python"),
        (b"#!/usr/bin/env -S python3 -u\n", "python"),
        (b"#!/usr/bin/env node\n", "javascript"),
        (b"#!/bin/bash\nset -e\n", "bash"),
        (b"#!/bin/sh\n", "bash"),
        (b"#! /usr/bin/zsh\n", "bash"),
        (b"#!/usr/bin/env ruby\n", "ruby"),
        (b"#!/usr/bin/php\n", "php"),
        (b"#!/usr/bin/env unknown-thing\n", None),
        (b"print('no shebang')\n", None),
    ],
)
def test_detects_language_by_shebang_when_the_name_does_not_tell(head: bytes, expected: str | None) -> None:
    assert detect_language("bin/tool", head) == expected
    assert language_from_shebang(head) == expected


def test_name_wins_over_shebang_and_unknown_names_give_none() -> None:
    assert detect_language("tool.rb", b"#!/usr/bin/env python3\n") == "ruby"
    assert detect_language("data/blob.xyz") is None
    assert detect_language("bin/tool") is None


def test_tree_sitter_languages_are_the_sixteen_with_grammars() -> None:
    assert {
        "python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp", "csharp",
        "ruby", "php", "kotlin", "swift", "scala", "bash",
    } == TREE_SITTER_LANGUAGES  # fmt: skip


def test_is_code_separates_programs_from_prose_and_data() -> None:
    assert all(is_code(language) for language in TREE_SITTER_LANGUAGES)
    assert is_code("sql")
    for language in ("markdown", "rst", "text", "json", "yaml", "toml", "po", "html", "css", None):
        assert not is_code(language)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("python", "python"), ("Python", "python"), (" py ", "python"), ("ts", "typescript"), ("c++", "cpp"),
     ("C#", "csharp"), ("golang", "go"), ("shell", "bash"), ("md", "markdown"), ("text", "text"), ("yaml", "yaml")],
)  # fmt: skip
def test_filter_values_map_to_stored_language_names(typed: str, stored: str) -> None:
    assert canonical_language(typed) == stored


def test_every_detected_language_is_known() -> None:
    for name in ("a.py", "b.tsx", "Dockerfile", "c.unknownext", "README", "x.proto", "y.tf", "z.ipynb"):
        assert (detect_language(name) or "text") in KNOWN_LANGUAGES
    assert canonical_language("klingon") is None


def test_an_unknown_language_filter_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(SearchError) as err:
        SearchRequest("retry", language="pyhton").validated()
    message = str(err.value)
    assert message.startswith("unknown language 'pyhton' (did you mean python")
    assert message.endswith(", ".join(sorted(KNOWN_LANGUAGES)))
    with pytest.raises(SearchError, match=r"^unknown language 'zzzz'\. Known languages: bash, c, "):
        SearchRequest("retry", language="zzzz").validated()
    assert SearchRequest("retry", language="C++").validated().language == "cpp"
    assert SearchRequest("retry", language="  ").validated().language is None
