"""Text splitters: Markdown and reStructuredText cut at their headings (`section` chunks),
anything else into overlapping line windows (`window` chunks). Sections that are too large are
split into windows with the section's heading as their symbol."""

from __future__ import annotations

import re
from collections.abc import Callable

from server.indexer.chunking.limits import MAX_CHUNK_CHARS, MAX_CHUNK_LINES, WINDOW_LINES, WINDOW_OVERLAP, split_long
from server.indexer.types import Chunk, ChunkKind


def line_windows(
    lines: list[str], language: str, kind: ChunkKind = "window", symbol: str | None = None, offset: int = 0
) -> list[Chunk]:
    """Overlapping line windows (within the character limit); `offset` is the first line's row."""
    chunks: list[Chunk] = []
    n = len(lines)
    start = 0
    while start < n:
        end = min(n, start + WINDOW_LINES)
        size = sum(map(len, lines[start:end])) + (end - start)
        while size > MAX_CHUNK_CHARS and end - start > 1:
            end -= 1
            size -= len(lines[end]) + 1
        a, b = start, end
        while a < b and not lines[a].strip():
            a += 1
        while b > a and not lines[b - 1].strip():
            b -= 1
        if a < b:
            for piece in split_long("\n".join(lines[a:b])):
                chunks.append(Chunk(offset + a + 1, offset + b, piece, language, kind, symbol))
        if end >= n:
            break
        start = max(end - WINDOW_OVERLAP, start + 1) if end - start > WINDOW_OVERLAP else end
    return chunks


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


def markdown_headings(lines: list[str]) -> list[tuple[int, str]]:
    """(row where the section starts, heading text)."""
    headings: list[tuple[int, str]] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        fence_match = _FENCE.match(line)
        if fence_match is not None:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0]
            elif marker[0] == fence:
                fence = None
            continue
        if fence is not None:
            continue
        if line.startswith(("#", " #", "  #", "   #")):
            atx = _ATX.match(line)
            if atx is not None:
                headings.append((i, atx.group(2).strip()))
                continue
        if (
            i > 0
            and _SETEXT.match(line)
            and lines[i - 1].strip()
            and not lines[i - 1].startswith((" " * 4, "\t"))
            and (not headings or headings[-1][0] != i - 1)
        ):
            headings.append((i - 1, lines[i - 1].strip()))
    return headings


def rst_headings(lines: list[str]) -> list[tuple[int, str]]:
    headings: list[tuple[int, str]] = []
    for i in range(1, len(lines)):
        under = lines[i]
        if not under or _RST_ADORNMENT.match(under) is None:
            continue
        title = lines[i - 1]
        if not title.strip() or title[0].isspace() or _RST_ADORNMENT.match(title):
            continue
        if len(under.rstrip()) < len(title.rstrip()):
            continue
        start = i - 1
        if i >= 2 and lines[i - 2].rstrip() == under.rstrip():
            start = i - 2  # overline and underline
        if headings and headings[-1][0] >= start - 1 and headings[-1][0] != start:
            continue
        headings.append((start, title.strip()))
    return headings


def _sections(lines: list[str], language: str, headings: list[tuple[int, str]]) -> list[Chunk]:
    if not headings:
        return line_windows(lines, language)
    bounds: list[tuple[int, int, str | None]] = []
    if headings[0][0] > 0:
        bounds.append((0, headings[0][0], None))
    for i, (row, heading) in enumerate(headings):
        end = headings[i + 1][0] if i + 1 < len(headings) else len(lines)
        bounds.append((row, end, heading))
    chunks: list[Chunk] = []
    pending: tuple[int, str | None] | None = None  # a heading with no text of its own yet
    for start, end, title in bounds:
        if pending is not None:
            start, title = pending[0], pending[1]
            pending = None
        body = lines[start:end]
        if title is not None and sum(1 for line in body if line.strip()) <= 1 and end < len(lines):
            pending = (start, title)  # merge a bare heading into the next section
            continue
        if len(body) <= MAX_CHUNK_LINES and sum(map(len, body)) <= MAX_CHUNK_CHARS:
            a, b = 0, len(body)
            while b > a and not body[b - 1].strip():
                b -= 1
            while a < b and not body[a].strip():
                a += 1
            if a < b:
                chunks.append(Chunk(start + a + 1, start + b, "\n".join(body[a:b]), language, "section", title))
        else:
            chunks.extend(line_windows(body, language, "section", title, start))
    return chunks


class WindowSplitter:
    """Overlapping line windows."""

    def __init__(self, language: str) -> None:
        self.language = language

    def split(self, text: str) -> list[Chunk]:
        return line_windows(text.split("\n"), self.language)


class SectionSplitter:
    """Sections between the headings `headings` finds (line windows when it finds none)."""

    def __init__(self, language: str, headings: Callable[[list[str]], list[tuple[int, str]]]) -> None:
        self.language = language
        self.headings = headings

    def split(self, text: str) -> list[Chunk]:
        lines = text.split("\n")
        return _sections(lines, self.language, self.headings(lines))
