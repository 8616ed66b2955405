"""JavaScript/TypeScript, Rust and C, parsed with tree-sitter: which comments are doc comments,
the copy with them blanked (every line keeps its number), and the definitions a search should find.

Blanked: JS/TS every JSDoc/TSDoc `/** … */` comment; Rust every doc comment (`///`, `//!`,
`/** */`, `/*! */`); C every comment block directly above a function definition (C has no doc
syntax: the block above a function is its doc). Plain comments elsewhere stay.

Definitions: JS/TS top-level functions, classes (their methods), `const f = () => …`, interfaces,
enums and type aliases, also when exported or inside a namespace; Rust functions, structs, enums,
unions, traits (their provided methods), type aliases, macros and the methods of `impl` blocks, at
any `mod` depth (an `impl` block itself is not a definition: its type is defined elsewhere); C
function definitions and struct/union/enum bodies, also inside `#if` blocks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import tree_sitter
import tree_sitter_c
import tree_sitter_javascript
import tree_sitter_rust
import tree_sitter_typescript

from bench.quality.model import Definition
from bench.quality.text import blank_byte_ranges

_LANGUAGES: dict[str, Callable[[], object]] = {
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "rust": tree_sitter_rust.language,
    "c": tree_sitter_c.language,
}
SUFFIX_LANGUAGE = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".rs": "rust", ".c": "c", ".h": "c",
}  # fmt: skip
_local = threading.local()

_JS_FUNCTIONS = {"function_declaration", "generator_function_declaration"}
_JS_CLASSES = {"class_declaration", "abstract_class_declaration", "class"}
_JS_OTHER = {"interface_declaration": "interface", "enum_declaration": "enum", "type_alias_declaration": "type"}
_JS_VALUES = {"arrow_function": "function", "function_expression": "function", "function": "function",
              "generator_function": "function", "class": "class"}  # fmt: skip
_JS_NESTING = {"internal_module", "module", "ambient_declaration", "statement_block", "expression_statement"}
_RUST_KINDS = {"function_item": "function", "struct_item": "struct", "enum_item": "enum", "union_item": "union",
               "trait_item": "trait", "type_item": "type", "macro_definition": "macro"}  # fmt: skip
_C_NESTING = {"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef", "ERROR"}
_C_RECORDS = {"struct_specifier": "struct", "union_specifier": "union", "enum_specifier": "enum"}


def _parser(language: str) -> tree_sitter.Parser:
    parsers: dict[str, tree_sitter.Parser] = _local.__dict__.setdefault("parsers", {})
    if language not in parsers:
        parsers[language] = tree_sitter.Parser(tree_sitter.Language(_LANGUAGES[language]()))
    return parsers[language]


def _text(node: tree_sitter.Node | None) -> str:
    return "" if node is None or node.text is None else node.text.decode("utf-8", "replace")


def _end_row(node: tree_sitter.Node) -> int:
    row, col = node.end_point
    return int(row) - 1 if col == 0 and row > node.start_point[0] else int(row)


def is_doc_comment(language: str, node: tree_sitter.Node) -> bool:
    text = node.text or b""
    if language == "rust":
        if node.type == "line_comment":
            return (text.startswith(b"///") and not text.startswith(b"////")) or text.startswith(b"//!")
        if node.type == "block_comment":
            return (text.startswith(b"/**") and not text.startswith((b"/***", b"/**/"))) or text.startswith(b"/*!")
        return False
    if language == "c":
        return False  # decided by position: see _c_doc_runs
    return node.type == "comment" and text.startswith(b"/**") and not text.startswith(b"/**/")


def clean_comment(text: str) -> str:
    """A comment's words: markers (`/**`, `*/`, leading `*`, `///`, `//!`, `//`) removed per line."""
    out = []
    for raw in text.split("\n"):
        line = raw.strip()
        for marker in ("/**", "/*!", "/*", "///", "//!", "//"):
            if line.startswith(marker):
                line = line[len(marker) :]
                break
        line = line.removesuffix("*/").strip()
        if line.startswith("*") and not line.startswith("**"):
            line = line[1:]
        out.append(line.strip())
    return "\n".join(out).strip()


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    cursor = [node]
    while cursor:
        n = cursor.pop()
        yield n
        cursor.extend(reversed(n.children))


class _File:
    def __init__(self, path: str, language: str, src: bytes) -> None:
        self.path, self.language, self.src = path, language, src
        self.tree = _parser(language).parse(src)
        self.blanked: set[tuple[int, int]] = set()  # node byte spans blanked
        self.out: list[Definition] = []

    # --- doc comments -------------------------------------------------------------------

    def _attachable(self, node: tree_sitter.Node) -> bool:
        if self.language == "rust":
            return node.type in ("line_comment", "block_comment", "attribute_item")
        if self.language == "c":
            return node.type == "comment"
        return node.type in ("comment", "decorator")

    def above(self, node: tree_sitter.Node) -> tuple[int, str | None]:
        """(lead row, doc text) of the comments/attributes directly above `node` (0-based row)."""
        lead = node.start_point[0]
        top = lead
        docs: list[str] = []
        leading = True  # still extending the lead: blanked docs leave empty lines, which stop it
        prev = node.prev_sibling
        while prev is not None and self._attachable(prev) and _end_row(prev) >= top - 1:
            if (prev.start_byte, prev.end_byte) in self.blanked:
                docs.append(_text(prev))
                leading = False
            elif leading:
                lead = prev.start_point[0]
            top = prev.start_point[0]
            prev = prev.prev_sibling
        if self.language in ("javascript", "typescript", "tsx"):
            docs = docs[:1]  # the JSDoc block nearest the definition
        doc = "\n".join(clean_comment(d) for d in reversed(docs)).strip()
        return lead, doc or None

    def blank_docs(self) -> None:
        if self.language == "c":
            return
        for n in _walk(self.tree.root_node):
            if is_doc_comment(self.language, n):
                self.blanked.add((n.start_byte, n.end_byte))

    def blank_c_docs(self, function: tree_sitter.Node) -> None:
        top = function.start_point[0]
        prev = function.prev_sibling
        while prev is not None and prev.type == "comment" and _end_row(prev) >= top - 1:
            self.blanked.add((prev.start_byte, prev.end_byte))
            top = prev.start_point[0]
            prev = prev.prev_sibling

    # --- definitions ----------------------------------------------------------------------

    def add(self, outer: tree_sitter.Node, core: tree_sitter.Node, name: str, container: str | None, kind: str) -> None:
        if not name or name == "default":
            return
        lead, doc = self.above(outer)
        self.out.append(Definition(self.path, self.language, name, container, kind, lead + 1,
                                   core.start_point[0] + 1, _end_row(outer) + 1, doc))  # fmt: skip

    def js(self, nodes: list[tree_sitter.Node], depth: int = 0) -> None:
        for node in nodes:
            core = node
            if node.type == "export_statement":
                inner = node.child_by_field_name("declaration") or node.child_by_field_name("value")
                if inner is None:
                    continue
                core = inner
            t = core.type
            if t in _JS_FUNCTIONS:
                self.add(node, core, _text(core.child_by_field_name("name")), None, "function")
            elif t in _JS_CLASSES:
                self.js_class(node, core, _text(core.child_by_field_name("name")))
            elif t in _JS_OTHER:
                self.add(node, core, _text(core.child_by_field_name("name")), None, _JS_OTHER[t])
            elif t in ("lexical_declaration", "variable_declaration"):
                declarators = [c for c in core.named_children if c.type == "variable_declarator"]
                value = declarators[0].child_by_field_name("value") if len(declarators) == 1 else None
                if value is not None and value.type in _JS_VALUES:
                    name = _text(declarators[0].child_by_field_name("name"))
                    if value.type == "class":
                        self.js_class(node, value, name)
                    else:
                        self.add(node, core, name, None, "function")
            elif t in _JS_NESTING and depth < 8:
                body = core.child_by_field_name("body")
                self.js(body.named_children if body is not None else core.named_children, depth + 1)

    def js_class(self, outer: tree_sitter.Node, core: tree_sitter.Node, name: str) -> None:
        self.add(outer, core, name, None, "class")
        body = core.child_by_field_name("body")
        for member in body.named_children if body is not None and name else ():
            if member.type == "method_definition" and member.child_by_field_name("body") is not None:
                self.add(member, member, _text(member.child_by_field_name("name")), name, "method")

    def rust(self, nodes: list[tree_sitter.Node], container: str | None = None, depth: int = 0) -> None:
        for node in nodes:
            t = node.type
            if t == "function_item":
                self.add(node, node, _text(node.child_by_field_name("name")), container,
                         "method" if container else "function")  # fmt: skip
            elif t in _RUST_KINDS and container is None:
                name = _text(node.child_by_field_name("name"))
                self.add(node, node, name, None, _RUST_KINDS[t])
                body = node.child_by_field_name("body")
                if t == "trait_item" and body is not None:
                    self.rust(body.named_children, name, depth + 1)
            elif t == "impl_item" and container is None:
                body = node.child_by_field_name("body")
                type_name = re.split(r"[<\[(]", _text(node.child_by_field_name("type")).lstrip("&*"), maxsplit=1)[0]
                if body is not None and type_name:
                    self.rust(body.named_children, re.split(r"::", type_name)[-1].strip(), depth + 1)
            elif t == "mod_item" and container is None and depth < 8:
                body = node.child_by_field_name("body")
                if body is not None:
                    self.rust(body.named_children, None, depth + 1)

    def c(self, nodes: list[tree_sitter.Node], depth: int = 0) -> None:
        for node in nodes:
            t = node.type
            if t == "function_definition":
                self.blank_c_docs(node)
                self.add(node, node, _c_function_name(node), None, "function")
            elif t in _C_RECORDS and node.child_by_field_name("body") is not None:
                self.add(node, node, _text(node.child_by_field_name("name")), None, _C_RECORDS[t])
            elif t == "type_definition":
                inner = node.child_by_field_name("type")
                if inner is not None and inner.type in _C_RECORDS and inner.child_by_field_name("body") is not None:
                    self.add(node, node, _text(node.child_by_field_name("declarator")), None, _C_RECORDS[inner.type])
            elif t in _C_NESTING and depth < 8:
                self.c(node.named_children, depth + 1)


def _c_function_name(node: tree_sitter.Node) -> str:
    declarator = node.child_by_field_name("declarator")
    for _ in range(16):
        if declarator is None or declarator.type in ("identifier", "field_identifier"):
            break
        inner = declarator.child_by_field_name("declarator")
        declarator = inner or next((c for c in declarator.named_children if "declarator" in c.type), None)
    return _text(declarator)


def analyse_tree_sitter(path: str, language: str, source: str) -> tuple[str, list[Definition]]:
    """(the source with its doc comments blanked, its definitions)."""
    src = source.encode("utf-8", "surrogatepass")
    f = _File(path, language, src)
    f.blank_docs()
    roots = f.tree.root_node.named_children
    if language == "rust":
        f.rust(roots)
    elif language == "c":
        f.c(roots)
    else:
        f.js(roots)
    blanked = blank_byte_ranges(src, f.blanked).decode("utf-8", "surrogatepass")
    return blanked, f.out
