"""Pure text helpers: removing doc comments without moving lines, and turning docs into queries."""

from __future__ import annotations

import re
from collections.abc import Iterable

_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")
_JSDOC_LINK = re.compile(r"\{@(?:link|linkcode|linkplain)\s+([^}|\s]+)(?:[|\s][^}]*)?\}")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[`?([^\]`]+)`?\](?!\()")
_RST_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[,.;:!?)]*")


def blank_byte_ranges(source: bytes, ranges: Iterable[tuple[int, int]]) -> bytes:
    """Remove the bytes of each [start, end) range except its newlines, so every line keeps its
    number; a line left holding only whitespace by a removal becomes empty."""
    spans = sorted(set(ranges))
    out = bytearray()
    cursor = 0
    touched: set[int] = set()  # line numbers (0-based) a removal changed
    line = 0
    for start, end in spans:
        start = max(start, cursor)
        if start >= end:
            continue
        piece = source[cursor:start]
        out += piece
        line += piece.count(b"\n")
        removed = source[start:end]
        touched.update(range(line, line + removed.count(b"\n") + 1))
        out += b"\n" * removed.count(b"\n")
        line += removed.count(b"\n")
        cursor = end
    out += source[cursor:]
    lines = bytes(out).split(b"\n")
    for i in touched:
        if i < len(lines) and not lines[i].strip():
            lines[i] = b""
    return b"\n".join(lines)


def strip_markup(text: str) -> str:
    """Inline markup a person would not type: JSDoc links, Markdown/rustdoc links, reST roles, backticks."""
    text = _JSDOC_LINK.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _RST_ROLE.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    return text.replace("``", "").replace("`", "").replace("**", "").strip()


def first_sentence(doc: str) -> str:
    """The first sentence of the doc's first paragraph, on one line, markup removed. A paragraph
    ends at a blank line or at a JSDoc/rustdoc tag line (`@param`, `# Examples`)."""
    lines: list[str] = []
    for raw in doc.strip().split("\n"):
        line = raw.strip()
        if not line:
            if lines:
                break
            continue
        if line.startswith("@") or (line.startswith("#") and lines):
            break
        lines.append(line)
    paragraph = strip_markup(" ".join(lines))
    paragraph = re.sub(r"\s+", " ", paragraph)
    match = _SENTENCE.match(paragraph)
    return (match.group(1) if match else paragraph).strip()


def is_prose(sentence: str, *, min_words: int = 4, max_words: int = 40) -> bool:
    """A sentence worth asking: enough words, mostly words rather than code or paths."""
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    lowered = sentence.lower()
    if lowered.startswith(("todo", "fixme", "xxx", "copyright", "spdx", "eslint", "istanbul", "license",
                           "deprecated", "@", "generated", "this file", "note:")):  # fmt: skip
        return False
    return sum(1 for w in words if _WORD.fullmatch(w)) / len(words) >= 0.6


def normalise(text: str) -> str:
    """The form used to find duplicate query texts."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
