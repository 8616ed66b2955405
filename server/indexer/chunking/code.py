"""The code splitter: cuts a file along the definitions in its tree-sitter syntax tree.

Every function, method, class, struct, interface, trait, enum, impl block ... is one chunk,
carrying the comments, decorators and attributes directly above it. A class-like chunk is an
outline (header, docstring, fields and each member's signature with its body replaced by `...`);
each member is a chunk of its own, qualified by its container (`Parser.parse`). Code between
definitions (imports, constants, scripts) becomes `module` chunks, neighbouring statements merged
up to a size limit. Definitions that are too large are split into consecutive parts with the same
symbol and truthful line ranges.

Only the top level and class bodies are visited, never function bodies, and text is sliced by
line or byte offsets, so the cost is mostly tree-sitter's parse.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence

import tree_sitter

from server.indexer.chunking.describers import SPECIAL, Definition, describe
from server.indexer.chunking.grammars import GRAMMARS
from server.indexer.chunking.limits import MAX_CHUNK_CHARS, MAX_CHUNK_LINES, MODULE_CHUNK_LINES, split_long
from server.indexer.chunking.text import line_windows
from server.indexer.types import Chunk, ChunkKind

MAX_NESTING = 24  # deeper containers/namespaces are left inside their parent's chunk
_SIGNATURE_CHARS = 200  # of the signature repeated at the top of a definition's later parts

_FUNCTION_KINDS: frozenset[ChunkKind] = frozenset({"function", "method"})
# Closing lines left between definitions (`}  // namespace x`, `#endif`, `end`) make no chunk alone.
_CLOSING_LINE = re.compile(r"[ \t]*(?:[})\];,]+[ \t]*(?:(?://|#|/\*).*)?|#[ \t]*(?:endif|else)\b.*|end)[ \t]*")

_local = threading.local()  # tree-sitter parsers are not thread-safe: one set per thread


def _parser(language: str) -> tree_sitter.Parser:
    parsers: dict[str, tree_sitter.Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        grammar = GRAMMARS[language]
        module = importlib.import_module(grammar.module)
        parser = parsers[language] = tree_sitter.Parser(tree_sitter.Language(getattr(module, grammar.function)()))
    return parser


def _end_row(node: tree_sitter.Node) -> int:
    """Last row a node covers (some grammars end a node at column 0 of the next line)."""
    end_row, end_col = node.end_point
    start_row: int = node.start_point[0]
    return int(end_row) - 1 if end_col == 0 and end_row > start_row else int(end_row)


def _plan_windows(lines: Sequence[str], max_lines: int, max_chars: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges over `lines` within both limits (a single longer line
    stands alone), cut after a blank line when there is one in the last quarter of a window."""
    n = len(lines)
    if n <= max_lines and sum(map(len, lines)) + n <= max_chars:
        return [(0, n)]
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end, size = start, 0
        while end < n and end - start < max_lines and (end == start or size + len(lines[end]) < max_chars):
            size += len(lines[end]) + 1
            end += 1
        if end < n:
            floor = start + (end - start) * 3 // 4
            for k in range(end - 1, max(floor, start), -1):
                if not lines[k].strip():
                    end = k + 1
                    break
        ranges.append((start, end))
        start = end
    return ranges


class _CodeChunker:
    def __init__(self, text: str, language: str, tree: tree_sitter.Tree, src: bytes) -> None:
        self.language = language
        self.g = GRAMMARS[language]
        self.special = SPECIAL.get(language, {})
        self.lines = text.split("\n")
        self.src = src
        self.tree = tree
        self.chunks: list[Chunk] = []
        self.claimed: list[tuple[int, int]] = []  # top-level definition rows, for module chunks

    def run(self) -> list[Chunk]:
        self.walk(self.tree.root_node.named_children, None, 0, None)
        self.module_chunks()
        self.chunks.sort(key=lambda c: (c.start_line, -c.end_line))
        return self.chunks

    def walk(
        self,
        nodes: list[tree_sitter.Node],
        prefix: str | None,
        depth: int,
        elisions: list[tree_sitter.Node] | None,
    ) -> None:
        """Chunk the definitions among sibling nodes. `elisions` is set inside a container and
        collects the member bodies to cut out of its outline."""
        g = self.g
        attach: tree_sitter.Node | None = None  # first comment/attribute of the run just above
        last_end = -2
        last_was_code = False
        for node in nodes:
            node_type = node.type
            start_row: int = node.start_point[0]
            end_row = _end_row(node)
            if node_type in g.attachable:
                if last_was_code and start_row == last_end:
                    attach = None  # a trailing comment belongs to the code before it
                elif attach is None or start_row > last_end + 1:
                    attach = node
                last_end, last_was_code = end_row, False
                continue
            found = describe(node, g, self.special)
            if found is not None:
                first = attach if attach is not None and start_row <= last_end + 1 else node
                self.emit(found, first, end_row, prefix, depth, elisions)
            elif node_type in g.transparent and depth < MAX_NESTING:
                self.walk(node.named_children, prefix, depth + 1, elisions)
            attach = None
            last_end, last_was_code = end_row, True

    def emit(
        self,
        found: Definition,
        first: tree_sitter.Node,
        end_row: int,
        prefix: str | None,
        depth: int,
        elisions: list[tree_sitter.Node] | None,
    ) -> None:
        kind, name = found.kind, found.name
        if prefix is not None and kind == "function":
            kind = "method"
        symbol = name if prefix is None or name is None or found.qualified else f"{prefix}.{name}"
        start_row: int = first.start_point[0]
        body = found.body
        if elisions is not None:
            if body is None and kind in _FUNCTION_KINDS:
                return  # a declaration without body (abstract, interface): the outline shows it
            if body is not None:
                elisions.append(body)
        if prefix is None and elisions is None:
            self.claimed.append((start_row, end_row))
        if body is not None and found.core.type in self.g.containers and depth < MAX_NESTING:
            position = len(self.chunks)  # the outline goes before its members
            members: list[tree_sitter.Node] = []
            self.walk(body.named_children, symbol or prefix or "", depth + 1, members)
            if members:
                self.chunks[position:position] = self.outline(first, found.node, end_row, kind, symbol, members)
                return
        self.emit_rows(start_row, end_row, kind, symbol, found.core.start_point[0])

    def emit_rows(self, start: int, end: int, kind: ChunkKind, symbol: str | None, signature_row: int) -> None:
        lines = self.lines[start : end + 1]
        ranges = _plan_windows(lines, MAX_CHUNK_LINES, MAX_CHUNK_CHARS)
        header = ""
        if len(ranges) > 1:
            signature = self.lines[signature_row].strip()[:_SIGNATURE_CHARS]
            header = f"{self.g.comment} (continued) {signature}\n"
        for i, (a, b) in enumerate(ranges):
            content = "\n".join(lines[a:b])
            for piece in split_long(content):
                self.chunks.append(
                    Chunk(start + a + 1, start + b, (header if i else "") + piece, self.language, kind, symbol)
                )

    def outline(
        self,
        first: tree_sitter.Node,
        node: tree_sitter.Node,
        end_row: int,
        kind: ChunkKind,
        symbol: str | None,
        members: list[tree_sitter.Node],
    ) -> list[Chunk]:
        """The container's text with each member's body replaced by a placeholder."""
        src = self.src
        begin = first.start_byte - first.start_point[1]  # start of the first line
        finish = src.find(b"\n", node.end_byte)
        finish = len(src) if finish < 0 else finish
        out_lines = [""]
        out_rows = [first.start_point[0]]

        def add(segment: bytes, row: int) -> None:
            parts = segment.decode("utf-8", "replace").split("\n")
            out_lines[-1] += parts[0]
            for i, part in enumerate(parts[1:], 1):
                out_lines.append(part)
                out_rows.append(row + i)

        cursor, row = begin, out_rows[0]
        for body in members:
            if body.start_byte < cursor:
                continue  # nested inside an earlier elision
            add(src[cursor : body.start_byte], row)
            head = src[body.start_byte : body.start_byte + 1]
            out_lines[-1] += "{ ... }" if head == b"{" else "= ..." if head == b"=" else "..."
            cursor, row = body.end_byte, body.end_point[0]
        add(src[cursor:finish], row)

        chunks: list[Chunk] = []
        for a, b in _plan_windows(out_lines, MAX_CHUNK_LINES, MAX_CHUNK_CHARS):
            first_row = out_rows[a]
            last_row = end_row if b == len(out_lines) else max(first_row, out_rows[b] - 1)
            for piece in split_long("\n".join(out_lines[a:b])):
                chunks.append(Chunk(first_row + 1, last_row + 1, piece, self.language, kind, symbol))
        return chunks

    def module_chunks(self) -> None:
        """Rows outside top-level definitions, as `module` chunks of neighbouring statements."""
        claimed = sorted(self.claimed)
        row, gaps = 0, []
        for start, end in claimed:
            if start > row:
                gaps.append((row, start - 1))
            row = max(row, end + 1)
        gaps.append((row, len(self.lines) - 1))
        for start, end in gaps:
            while start <= end and not self.lines[start].strip():
                start += 1
            while end >= start and not self.lines[end].strip():
                end -= 1
            if start > end:
                continue
            lines = self.lines[start : end + 1]
            for a, b in _plan_windows(lines, MODULE_CHUNK_LINES, MAX_CHUNK_CHARS):
                while a < b and not lines[a].strip():
                    a += 1
                while b > a and not lines[b - 1].strip():
                    b -= 1
                if all(_CLOSING_LINE.fullmatch(line) or not line.strip() for line in lines[a:b]):
                    continue
                content = "\n".join(lines[a:b])
                for piece in split_long(content):
                    self.chunks.append(Chunk(start + a + 1, start + b, piece, self.language, "module"))


class CodeSplitter:
    """Definitions of a language with a grammar in GRAMMARS; line windows when there are none."""

    def __init__(self, language: str) -> None:
        self.language = language

    def split(self, text: str) -> list[Chunk]:
        src = text.encode("utf-8", "replace")
        tree = _parser(self.language).parse(src)
        chunks = _CodeChunker(text, self.language, tree, src).run()
        return chunks or line_windows(text.split("\n"), self.language)
