from __future__ import annotations

import itertools
import random
import textwrap

import pytest

from server.indexer.chunker import chunk_file
from server.indexer.chunking.limits import (
    MAX_CHUNK_CHARS,
    MAX_CHUNK_LINES,
    MODULE_CHUNK_LINES,
    WINDOW_LINES,
    WINDOW_OVERLAP,
)
from server.indexer.languages import TREE_SITTER_LANGUAGES
from server.indexer.types import Chunk


def chunks_of(source: str, language: str | None) -> list[Chunk]:
    return chunk_file(textwrap.dedent(source).lstrip("\n"), language)


def summary(chunks: list[Chunk]) -> set[tuple[str, str | None, int, int]]:
    return {(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks}


def by_symbol(chunks: list[Chunk], symbol: str) -> Chunk:
    (found,) = [c for c in chunks if c.symbol == symbol]
    return found


# One snippet per grammar: (language, source, expected (kind, symbol, first line, last line)).
SNIPPETS: list[tuple[str, str, set[tuple[str, str | None, int, int]]]] = [
    (
        "python",
        '''
        """Module doc."""
        import os

        # comment on f
        @decorator
        async def f(x):
            def inner():
                pass
            return inner

        class A(Base):
            """Doc."""
            x: int = 1

            @property
            def m(self) -> int:
                return 1
        ''',
        {
            ("module", None, 1, 2),
            ("function", "f", 4, 9),
            ("class", "A", 11, 17),
            ("method", "A.m", 15, 17),
        },
    ),
    (
        "javascript",
        """
        import x from "y";
        /** Doc. */
        export function f(a) { return a; }
        class A extends B {
          constructor() { super(); }
          get y() { return 1; }
        }
        const arrow = (x) => x * 2;
        """,
        {
            ("module", None, 1, 1),
            ("function", "f", 2, 3),
            ("class", "A", 4, 7),
            ("method", "A.constructor", 5, 5),
            ("method", "A.y", 6, 6),
            ("function", "arrow", 8, 8),
        },
    ),
    (
        "typescript",
        """
        interface Shape { area(): number }
        type Id = string;
        enum Color { Red, Green }
        export abstract class Base {
          private n: number = 1;
          abstract area(): number;
          describe(): string {
            return "shape";
          }
        }
        namespace NS { export function g() {} }
        """,
        {
            ("interface", "Shape", 1, 1),
            ("type", "Id", 2, 2),
            ("enum", "Color", 3, 3),
            ("class", "Base", 4, 10),
            ("method", "Base.describe", 7, 9),
            ("function", "g", 11, 11),
        },
    ),
    (
        "tsx",
        """
        export const Button = (props: Props) => <button>{props.label}</button>;
        export function App() {
          return <Button label="hi" />;
        }
        """,
        {("function", "Button", 1, 1), ("function", "App", 2, 4)},
    ),
    (
        "go",
        """
        package main

        import "fmt"

        // T is documented.
        type T struct { A int }

        type I interface { M() }

        func (t *T) M() { fmt.Println(t.A) }

        func F() {}
        """,
        {
            ("module", None, 1, 3),
            ("struct", "T", 5, 6),
            ("interface", "I", 8, 8),
            ("method", "T.M", 10, 10),
            ("function", "F", 12, 12),
        },
    ),
    (
        "rust",
        """
        use std::fmt;
        /// A point.
        #[derive(Debug)]
        pub struct Point { x: i32 }
        enum E { A }
        trait Shape { fn area(&self) -> f64; }
        impl Point {
            /// Makes one.
            pub fn new() -> Self { Point { x: 0 } }
        }
        fn main() {}
        """,
        {
            ("module", None, 1, 1),
            ("struct", "Point", 2, 4),
            ("enum", "E", 5, 5),
            ("trait", "Shape", 6, 6),
            ("impl", "Point", 7, 10),
            ("method", "Point.new", 8, 9),
            ("function", "main", 11, 11),
        },
    ),
    (
        "java",
        """
        package a.b;
        import java.util.List;
        /** Doc. */
        @Entity
        public class A extends B {
            private int x;
            public A() { }
            @Override
            public String toString() { return ""; }
            interface I { void m(); }
        }
        """,
        {
            ("module", None, 1, 2),
            ("class", "A", 3, 11),
            ("method", "A.A", 7, 7),
            ("method", "A.toString", 8, 9),
            ("interface", "A.I", 10, 10),
        },
    ),
    (
        "c",
        """
        #include <stdio.h>
        /* Doc. */
        static int *f(int a) { return 0; }
        struct S { int a; };
        typedef struct { int b; } T;
        enum E { A, B };
        int main(void) { return 0; }
        """,
        {
            ("module", None, 1, 1),
            ("function", "f", 2, 3),
            ("struct", "S", 4, 4),
            ("struct", "T", 5, 5),
            ("enum", "E", 6, 6),
            ("function", "main", 7, 7),
        },
    ),
    (
        "cpp",
        """
        #include <vector>
        namespace ns {
        class A : public B {
         public:
          int m(int x) const { return x; }
        };
        template <typename T>
        T maxv(T a, T b) { return a; }
        void A::s() {}
        }  // namespace ns
        """,
        {
            ("module", None, 1, 2),
            ("class", "A", 3, 6),
            ("method", "A.m", 5, 5),
            ("function", "maxv", 7, 8),
            ("method", "A.s", 9, 9),
        },
    ),
    (
        "csharp",
        """
        using System;
        namespace Foo.Bar {
          /// <summary>Doc.</summary>
          [Serializable]
          public class A : B {
            public int X { get; set; }
            public void M(int y) { }
          }
          interface I { void N(); }
          enum E { A }
        }
        """,
        {
            ("module", None, 1, 2),
            ("class", "A", 3, 8),
            ("method", "A.M", 7, 7),
            ("interface", "I", 9, 9),
            ("enum", "E", 10, 10),
        },
    ),
    (
        "ruby",
        """
        require "x"
        # A module.
        module M
          class A < B
            def initialize(x)
              @x = x
            end
            def self.build; new(1); end
          end
        end
        def top(a) = a
        """,
        {
            ("module", None, 1, 1),
            ("module", "M", 2, 10),
            ("class", "M.A", 4, 9),
            ("method", "M.A.initialize", 5, 7),
            ("method", "M.A.build", 8, 8),
            ("function", "top", 11, 11),
        },
    ),
    (
        "php",
        """
        <?php
        namespace App\\Models;
        /** Doc. */
        final class User extends Model {
            private int $x = 1;
            public function __construct() {}
        }
        trait T { function t() {} }
        function helper($a) { return $a; }
        """,
        {
            ("module", None, 1, 2),
            ("class", "User", 3, 7),
            ("method", "User.__construct", 6, 6),
            ("trait", "T", 8, 8),
            ("method", "T.t", 8, 8),
            ("function", "helper", 9, 9),
        },
    ),
    (
        "kotlin",
        """
        package a.b

        /** Doc. */
        data class A(val x: Int) : B() {
            val y = 1
            fun m(): Int { return 1 }
        }
        interface I {
            fun n()
        }
        object O { fun o() {} }
        fun top(a: Int) = a
        """,
        {
            ("module", None, 1, 1),
            ("class", "A", 3, 7),
            ("method", "A.m", 6, 6),
            ("interface", "I", 8, 10),
            ("object", "O", 11, 11),
            ("method", "O.o", 11, 11),
            ("function", "top", 12, 12),
        },
    ),
    (
        "swift",
        """
        import Foundation
        /// Doc.
        class A: B {
            var x: Int = 1
            func m(_ a: Int) -> Int { return a }
        }
        struct S { let y: Int }
        protocol P { func p() }
        func top() {}
        """,
        {
            ("module", None, 1, 1),
            ("class", "A", 2, 6),
            ("method", "A.m", 5, 5),
            ("struct", "S", 7, 7),
            ("interface", "P", 8, 8),
            ("function", "top", 9, 9),
        },
    ),
    (
        "scala",
        """
        package a.b
        /** Doc. */
        case class A(x: Int) extends B {
          val y = 1
          def n(): Unit = {
            println()
          }
        }
        trait T { def t: Int }
        object O { def o() = 1 }
        """,
        {
            ("module", None, 1, 1),
            ("class", "A", 2, 8),
            ("method", "A.n", 5, 7),
            ("trait", "T", 9, 9),
            ("object", "O", 10, 10),
            ("method", "O.o", 10, 10),
        },
    ),
    (
        "bash",
        """
        #!/bin/bash
        set -e
        # Says hi.
        greet() {
          echo hi
        }
        function bye {
          echo bye
        }
        greet
        """,
        {
            ("module", None, 1, 2),
            ("function", "greet", 3, 6),
            ("function", "bye", 7, 9),
            ("module", None, 10, 10),
        },
    ),
]


def test_every_grammar_has_a_snippet() -> None:
    assert {language for language, _, _ in SNIPPETS} == TREE_SITTER_LANGUAGES


@pytest.mark.parametrize(("language", "source", "expected"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_definitions_become_chunks_with_symbols_kinds_and_lines(
    language: str, source: str, expected: set[tuple[str, str | None, int, int]]
) -> None:
    chunks = chunks_of(source, language)
    assert summary(chunks) == expected
    lines = textwrap.dedent(source).lstrip("\n").split("\n")
    for chunk in chunks:
        assert chunk.language == language
        # A definition's chunk is its source lines (outlines are shorter; see below).
        if chunk.kind not in {"class", "impl", "module", "object", "trait", "struct", "interface", "enum"}:
            assert chunk.content == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
    starts = [(c.start_line, -c.end_line) for c in chunks]
    assert starts == sorted(starts)


def test_leading_comments_and_decorators_join_the_definition() -> None:
    chunks = chunks_of(
        """
        import os
        x = 1  # trailing comment stays with x

        # About f.
        # Second line.
        @cache
        def f():
            pass

        # Separated by a blank line: not attached.

        def g():
            pass
        """,
        "python",
    )
    f = by_symbol(chunks, "f")
    assert f.content.startswith("# About f.\n# Second line.\n@cache\ndef f():")
    assert by_symbol(chunks, "g").content.startswith("def g():")


def test_class_chunk_holds_signatures_not_method_bodies() -> None:
    chunks = chunks_of(
        '''
        class Repository:
            """Stores things."""

            table = "things"

            def __init__(self, pool):
                self.pool = pool
                self.secret_body_marker = 42

            async def fetch(self, key: str) -> bytes:
                """Fetch one."""
                return await self.pool.get(key, unique_fetch_marker=True)
        ''',
        "python",
    )
    outline = by_symbol(chunks, "Repository")
    assert outline.kind == "class"
    assert (outline.start_line, outline.end_line) == (1, 12)
    assert '"""Stores things."""' in outline.content
    assert 'table = "things"' in outline.content
    assert "def __init__(self, pool):" in outline.content
    assert "async def fetch(self, key: str) -> bytes:" in outline.content
    assert "secret_body_marker" not in outline.content
    assert "unique_fetch_marker" not in outline.content
    assert "..." in outline.content
    init = by_symbol(chunks, "Repository.__init__")
    assert init.kind == "method" and "secret_body_marker" in init.content
    fetch = by_symbol(chunks, "Repository.fetch")
    assert (fetch.start_line, fetch.end_line) == (10, 12)
    assert "unique_fetch_marker" in fetch.content


def test_brace_language_outline_elides_bodies_with_braces() -> None:
    chunks = chunks_of(
        """
        public class Service {
            private final Repo repo;
            public Result handle(Request r) {
                return repo.lookup(r.id(), "body_marker");
            }
        }
        """,
        "java",
    )
    outline = by_symbol(chunks, "Service")
    assert "public Result handle(Request r) { ... }" in outline.content
    assert "body_marker" not in outline.content
    assert "body_marker" in by_symbol(chunks, "Service.handle").content


def test_nested_functions_stay_in_their_parent() -> None:
    chunks = chunks_of(
        """
        def outer():
            def helper():
                return 1
            class Local:
                pass
            return helper()
        """,
        "python",
    )
    assert summary(chunks) == {("function", "outer", 1, 6)}


def test_nested_classes_are_qualified() -> None:
    chunks = chunks_of(
        """
        class Outer:
            class Inner:
                def deep(self):
                    return 1
        """,
        "python",
    )
    assert summary(chunks) == {
        ("class", "Outer", 1, 4),
        ("class", "Outer.Inner", 2, 4),
        ("method", "Outer.Inner.deep", 3, 4),
    }
    assert "return 1" not in by_symbol(chunks, "Outer").content


def test_huge_function_is_split_into_consecutive_parts() -> None:
    body = "\n".join(f"    value_{i} = compute({i})" for i in range(2 * MAX_CHUNK_LINES + 50))
    source = f"import math\n\n\ndef enormous(a, b):\n{body}\n    return a\n"
    chunks = chunk_file(source, "python")
    parts = [c for c in chunks if c.symbol == "enormous"]
    assert len(parts) == 3
    assert all(p.kind == "function" for p in parts)
    assert parts[0].start_line == 4 and parts[-1].end_line == 5 + 2 * MAX_CHUNK_LINES + 50
    for before, after in itertools.pairwise(parts):
        assert after.start_line == before.end_line + 1
    for part in parts:
        assert part.end_line - part.start_line + 1 <= MAX_CHUNK_LINES
        assert len(part.content) <= MAX_CHUNK_CHARS + 300
    assert parts[0].content.startswith("def enormous(a, b):")
    # Later parts say what they continue, then hold exactly their source lines.
    lines = source.split("\n")
    for part in parts[1:]:
        header, rest = part.content.split("\n", 1)
        assert header.startswith("#") and "def enormous(a, b):" in header
        assert rest == "\n".join(lines[part.start_line - 1 : part.end_line])


def test_function_with_huge_lines_is_split_by_characters() -> None:
    body = "\n".join(f"    s{i} = '{'x' * 900}'" for i in range(40))
    chunks = chunk_file(f"def wide():\n{body}\n", "python")
    assert len(chunks) > 3
    assert all(len(c.content) <= MAX_CHUNK_CHARS + 300 for c in chunks)
    assert {c.symbol for c in chunks} == {"wide"}


def test_small_top_level_statements_are_merged_into_module_chunks() -> None:
    statements = "\n".join(f"CONSTANT_{i} = {i}" for i in range(30))
    source = f"import os\nimport sys\n{statements}\n\n\ndef f():\n    pass\n\n\nprint(f())\n"
    chunks = chunk_file(source, "python")
    assert summary(chunks) == {
        ("module", None, 1, 32),
        ("function", "f", 35, 36),
        ("module", None, 39, 39),
    }
    long_script = "\n".join(f"print({i})" for i in range(3 * MODULE_CHUNK_LINES))
    modules = chunk_file(long_script, "python")
    assert all(c.kind == "module" for c in modules)
    assert len(modules) == 3
    assert [(c.start_line, c.end_line) for c in modules] == [
        (1, MODULE_CHUNK_LINES),
        (MODULE_CHUNK_LINES + 1, 2 * MODULE_CHUNK_LINES),
        (2 * MODULE_CHUNK_LINES + 1, 3 * MODULE_CHUNK_LINES),
    ]


def test_code_without_definitions_and_closing_lines() -> None:
    assert summary(chunk_file("import os\nimport sys\n", "python")) == {("module", None, 1, 2)}
    # A namespace's closing brace alone makes no chunk.
    chunks = chunks_of(
        """
        namespace ns {
        int f() { return 1; }
        }
        """,
        "cpp",
    )
    assert summary(chunks) == {("module", None, 1, 1), ("function", "f", 2, 2)}


def test_markdown_is_split_at_headings_outside_code_fences() -> None:
    chunks = chunks_of(
        """
        Intro paragraph.

        # Title

        Some text.

        ## Install

        ```bash
        # not a heading
        pip install thing
        ```

        Usage
        -----

        Call it.
        """,
        "markdown",
    )
    assert summary(chunks) == {
        ("section", None, 1, 1),
        ("section", "Title", 3, 5),
        ("section", "Install", 7, 12),
        ("section", "Usage", 14, 17),
    }


def test_bare_heading_merges_into_the_next_section() -> None:
    chunks = chunk_file("# Title\n\n## Part\n\nText.\n", "markdown")
    assert summary(chunks) == {("section", "Title", 1, 5)}


def test_rst_is_split_at_underlined_and_overlined_titles() -> None:
    chunks = chunks_of(
        """
        =====
        Title
        =====

        Intro.

        Section One
        -----------

        Text one.
        """,
        "rst",
    )
    assert summary(chunks) == {("section", "Title", 1, 5), ("section", "Section One", 7, 10)}


def test_other_text_becomes_overlapping_windows() -> None:
    lines = [f"line {i}" for i in range(1, 151)]
    chunks = chunk_file("\n".join(lines) + "\n", "yaml")
    assert all(c.kind == "window" and c.symbol is None and c.language == "yaml" for c in chunks)
    step = WINDOW_LINES - WINDOW_OVERLAP
    assert [(c.start_line, c.end_line) for c in chunks] == [
        (1, WINDOW_LINES),
        (1 + step, WINDOW_LINES + step),
        (1 + 2 * step, 150),
    ]
    for chunk in chunks:
        assert chunk.content == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])


def test_unknown_language_is_windowed_as_text() -> None:
    (chunk,) = chunk_file("just some words\n", None)
    assert (chunk.kind, chunk.language, chunk.start_line, chunk.end_line) == ("window", "text", 1, 1)


def test_one_enormous_line_is_cut_by_characters() -> None:
    chunks = chunk_file("[" + "1, " * 20_000 + "]", "json")
    assert len(chunks) >= 7
    assert all(len(c.content) <= MAX_CHUNK_CHARS and c.start_line == c.end_line == 1 for c in chunks)


def test_empty_and_blank_files_have_no_chunks() -> None:
    for language in ("python", "markdown", None):
        assert chunk_file("", language) == []
        assert chunk_file("\n\n   \n", language) == []


def test_broken_code_still_yields_chunks() -> None:
    chunks = chunk_file("def ok():\n    return 1\n\ndef broken(:\n    pass\nresult = [1, 2\n", "python")
    assert ("function", "ok", 1, 2) in summary(chunks)
    assert max(c.end_line for c in chunks) == 6
    assert "result = [1, 2" in "\n".join(c.content for c in chunks)


def test_odd_input_never_raises() -> None:
    rng = random.Random(7)
    alphabet = "{}()[];:\n\t \"'`#/\\*<>=!?.,abcXYZ019_\x00\u00e9\u4e2d\U0001f600\ufeff"
    for language in [*sorted(TREE_SITTER_LANGUAGES), "markdown", "rst", None]:
        for _ in range(5):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
            chunks = chunk_file(text, language)
            n_lines = text.count("\n") + 1
            for chunk in chunks:
                assert 1 <= chunk.start_line <= chunk.end_line <= n_lines
                assert chunk.content.strip()


def test_module_statement_that_looks_like_a_closer_is_kept() -> None:
    source = "def f():\n    pass\n\nend = 5\n\ndef g():\n    pass\n"
    assert ("module", None, 4, 4) in summary(chunk_file(source, "python"))
