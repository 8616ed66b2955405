"""Splits a file into searchable chunks: one splitter per kind of file behind one interface.

Code in a language with a tree-sitter grammar (`chunking.grammars`) is cut along its definitions
(`chunking.code`); Markdown and reStructuredText at their headings, anything else into
overlapping line windows (`chunking.text`).
"""

from __future__ import annotations

from typing import Protocol

from server.indexer.chunking.code import CodeSplitter
from server.indexer.chunking.grammars import GRAMMARS
from server.indexer.chunking.text import SectionSplitter, WindowSplitter, markdown_headings, rst_headings
from server.indexer.types import Chunk


class Splitter(Protocol):
    def split(self, text: str) -> list[Chunk]:
        """Chunks of a file's (non-empty) text, in line order."""
        ...


def splitter_for(language: str) -> Splitter:
    if language in GRAMMARS:
        return CodeSplitter(language)
    if language == "markdown":
        return SectionSplitter(language, markdown_headings)
    if language == "rst":
        return SectionSplitter(language, rst_headings)
    return WindowSplitter(language)


def chunk_file(text: str, language: str | None) -> list[Chunk]:
    """Chunks of one file's text, in line order. Never raises; an empty file has none."""
    if not text or text.isspace():
        return []
    lang = language or "text"
    try:
        return splitter_for(lang).split(text)
    except Exception:  # a grammar or odd input must never stop indexing: fall back to windows
        return WindowSplitter(lang).split(text)
