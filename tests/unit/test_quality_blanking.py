"""The quality suite's doc-comment blanking and definition finding, per language, on inline samples."""

from __future__ import annotations

import pytest

from bench.quality.analysis import analyse, mirror_path
from bench.quality.model import Definition
from bench.quality.sections import sections_of
from bench.quality.text import blank_byte_ranges, first_sentence, is_prose

pytestmark = pytest.mark.unit


def _removed(before: str, after: str) -> str:
    """The text that blanking took out: per line, what the original has beyond the blanked line."""
    gone = []
    for old, new in zip(before.split("\n"), after.split("\n"), strict=True):
        if old != new:
            assert new.strip() == "" or new in old or new.replace("pass", "") in old, (old, new)
            gone.append(old.strip() if not new.strip() else old.replace(new.strip(), "").strip())
    return "\n".join(gone)


def _by_name(defs: tuple[Definition, ...]) -> dict[str, Definition]:
    return {(f"{d.container}." if d.container else "") + d.name: d for d in defs}


PYTHON = '''"""Module doc."""
import os


@decorator
def parse(text):
    """Parse the given text.

    More words.
    """
    # keep this comment
    return text


class Reader:
    """Reads things from files."""

    def read(self):
        """Read one record."""
        return os.read(0, 1)
'''


def test_python_docstrings_become_pass_and_keep_every_line() -> None:
    f = analyse("pkg/mod.py", PYTHON)
    before, after = PYTHON.split("\n"), f.blanked.split("\n")
    assert len(after) == len(before)
    assert '"""' not in f.blanked and "Parse the given" not in f.blanked and "More words" not in f.blanked
    assert "# keep this comment" in f.blanked and "return text" in f.blanked
    assert after[0] == "pass" and after[6] == "    pass" and after[7:10] == ["", "", ""]
    defs = _by_name(f.definitions)
    assert set(defs) == {"parse", "Reader", "Reader.read"}
    parse = defs["parse"]
    assert (parse.lead, parse.header, parse.end, parse.kind) == (5, 6, 12, "function")
    assert parse.doc is not None and first_sentence(parse.doc) == "Parse the given text."
    assert defs["Reader.read"].kind == "method" and defs["Reader"].kind == "class"


JS = """import x from 'x';
/**
 * Adds two numbers.
 * @param {number} a first
 */
export function add(a, b) {
  // a plain comment stays
  /* so does a block */
  return a + b;
}

/** A widget. */
class Widget {
  /** Render the widget as a string. */
  render() { return ''; }
}

/** Doubles {@link add} results. */
export const twice = (n) => add(n, n);
"""


def test_javascript_jsdoc_is_removed_exactly() -> None:
    f = analyse("lib/a.js", JS)
    assert len(f.blanked.split("\n")) == len(JS.split("\n"))
    assert "/**" not in f.blanked and "Adds two" not in f.blanked and "@param" not in f.blanked
    assert "// a plain comment stays" in f.blanked and "/* so does a block */" in f.blanked
    removed = _removed(JS, f.blanked)
    assert removed.split("\n") == [
        "/**", "* Adds two numbers.", "* @param {number} a first", "*/", "/** A widget. */",
        "/** Render the widget as a string. */", "/** Doubles {@link add} results. */",
    ]  # fmt: skip
    defs = _by_name(f.definitions)
    assert set(defs) == {"add", "Widget", "Widget.render", "twice"}
    assert (defs["add"].header, defs["add"].end) == (6, 10)
    assert defs["add"].doc is not None and first_sentence(defs["add"].doc) == "Adds two numbers."
    assert defs["twice"].doc is not None and first_sentence(defs["twice"].doc) == "Doubles add results."
    assert defs["Widget.render"].doc == "Render the widget as a string."


TS = """/** Options of a parser. */
export interface Options { strict: boolean }

export abstract class Base {
  /** Parse the input eagerly. */
  parse(input: string): void { this.run(input); }
  abstract run(input: string): void;
}
"""


def test_typescript_interfaces_and_methods_with_bodies() -> None:
    f = analyse("src/p.ts", TS)
    defs = _by_name(f.definitions)
    assert set(defs) == {"Options", "Base", "Base.parse"}  # the abstract method has no body
    assert defs["Options"].kind == "interface" and defs["Options"].doc == "Options of a parser."
    assert "Parse the input" not in f.blanked and f.blanked.split("\n")[5].strip().startswith("parse(")


RUST = """//! Crate docs.
use std::fmt;

/// Appends an element to the back.
///
/// # Panics
#[inline]
pub fn push(v: &mut Vec<u8>, x: u8) {
    // not a doc comment
    v.push(x);
}

impl<T> Stack<T> {
    /// Returns the number of elements.
    pub fn len(&self) -> usize { self.0.len() }
}

/** Block doc of a struct. */
pub struct Stack<T>(Vec<T>);
"""


def test_rust_doc_comments_are_removed_and_attributes_stay() -> None:
    f = analyse("src/lib.rs", RUST)
    lines = f.blanked.split("\n")
    assert len(lines) == len(RUST.split("\n"))
    assert "Crate docs" not in f.blanked and "Appends" not in f.blanked and "Block doc" not in f.blanked
    assert lines[6] == "#[inline]" and "// not a doc comment" in f.blanked
    defs = _by_name(f.definitions)
    assert set(defs) == {"push", "Stack.len", "Stack"}
    push = defs["push"]
    assert (push.lead, push.header, push.end) == (7, 8, 11)  # the attribute leads, the blanked doc does not
    assert push.doc is not None and first_sentence(push.doc) == "Appends an element to the back."
    assert defs["Stack"].doc == "Block doc of a struct." and defs["Stack"].is_container


C = """#include <stdio.h>
/* File banner, not above a function. */

/*
 * Encode an object as JSON.
 */
static int
encode(void *obj)
{
    /* inside: stays */
    return 0;
}
// Decode one value.
int decode(const char *s) { return s[0]; }
#ifdef FAST
int fast(void) { return 1; }
#endif
"""


def test_c_comment_blocks_directly_above_functions_are_blanked() -> None:
    f = analyse("src/codec.c", C)
    assert len(f.blanked.split("\n")) == len(C.split("\n"))
    assert "File banner" in f.blanked and "inside: stays" in f.blanked
    assert "Encode an object" not in f.blanked and "Decode one value" not in f.blanked
    defs = _by_name(f.definitions)
    assert set(defs) == {"encode", "decode", "fast"}
    assert (defs["encode"].header, defs["encode"].end) == (7, 12)
    assert defs["encode"].doc == "Encode an object as JSON."
    assert defs["fast"].doc is None


def test_blank_byte_ranges_keeps_newlines_and_the_rest_of_a_line() -> None:
    src = b"a = 1  /* x\ny */ b\nc\n"
    out = blank_byte_ranges(src, [(7, 16)])
    assert out == b"a = 1  \n b\nc\n"
    assert blank_byte_ranges(b"  /** d */\nf()\n", [(2, 10)]) == b"\nf()\n"


def test_first_sentence_and_prose_filter() -> None:
    assert first_sentence("Return the `Foo` for [bar](http://x).  Then more.") == "Return the Foo for bar."
    assert first_sentence("Sum of\n values in :func:`total`\n\n Details.") == "Sum of values in total"
    assert first_sentence("@param x the value") == ""
    assert is_prose("Return the sum of two values.")
    assert not is_prose("Too short.")
    assert not is_prose('"msgpack/_packer.pyx":63 cdef int x = 0; y = f(x)')


def test_sections_of_markdown_and_rst() -> None:
    md = "# Title\n\nIntro.\n\n## Install it\n\n```\n# not a heading\n```\ntext\n"
    got = [(s.heading, s.start, s.end, s.body_lines) for s in sections_of("README.md", md)]
    assert got == [("Title", 1, 4, 1), ("Install it", 5, 10, 4)]
    rst = "=====\nGuide\n=====\n\nHello.\n\n1. Making queries\n-----------------\nText\n"
    got_rst = [(s.heading, s.start, s.end) for s in sections_of("docs/guide.txt", rst)]
    assert got_rst == [("Guide", 1, 6), ("Making queries", 7, 9)]


def test_mirror_path_joins_source_and_build_copies() -> None:
    assert mirror_path("src/internal/map.ts") == mirror_path("dist/cjs/internal/map.js") == "internal/map"
    assert mirror_path("dist/types/internal/map.d.ts") == "internal/map"
    assert mirror_path("lib/sqlalchemy/sql/schema.py") == "sqlalchemy/sql/schema.py"
