"""Splits a file into searchable chunks.

Code in a language with a tree-sitter grammar is cut along its definitions: every function,
method, class, struct, interface, trait, enum, impl block ... is one chunk, carrying the comments,
decorators and attributes directly above it. A class-like chunk is an outline (header, docstring,
fields and each member's signature with its body replaced by `...`); each member is a chunk of
its own, qualified by its container (`Parser.parse`). Code between definitions (imports,
constants, scripts) becomes `module` chunks, neighbouring statements merged up to a size limit.

Only the top level and class bodies are visited, never function bodies, and text is sliced by
line or byte offsets, so the cost is mostly tree-sitter's parse.

Markdown and reStructuredText are cut at headings (`section`), anything else into overlapping
line windows (`window`). Definitions and sections that are too large are split into consecutive
parts with the same symbol and truthful line ranges.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import tree_sitter

from server.indexer.languages import TREE_SITTER_LANGUAGES
from server.indexer.types import Chunk

MAX_CHUNK_LINES = 200  # a definition longer than this is split into parts
MAX_CHUNK_CHARS = 8_000  # ... and so is one larger than this
MODULE_CHUNK_LINES = 80  # module-level code between definitions is merged up to this
WINDOW_LINES = 60  # plain-text windows
WINDOW_OVERLAP = 10
MAX_NESTING = 24  # deeper containers/namespaces are left inside their parent's chunk
_SIGNATURE_CHARS = 200  # of the signature repeated at the top of a definition's later parts

_FUNCTION_KINDS = frozenset({"function", "method"})
# Closing lines left between definitions (`}  // namespace x`, `#endif`, `end`) make no chunk alone.
_CLOSING_LINE = re.compile(r"[ \t]*(?:[})\];,]+[ \t]*(?:(?://|#|/\*).*)?|#[ \t]*(?:endif|else)\b.*|end)[ \t]*")

# (module, function) giving each grammar's language pointer.
_GRAMMAR_MODULES: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "kotlin": ("tree_sitter_kotlin", "language"),
    "swift": ("tree_sitter_swift", "language"),
    "scala": ("tree_sitter_scala", "language"),
    "bash": ("tree_sitter_bash", "language"),
}


@dataclass(frozen=True, slots=True)
class _Grammar:
    kinds: dict[str, str]  # definition node type -> chunk kind
    containers: frozenset[str] = frozenset()  # class-like: members are chunked separately
    wrappers: frozenset[str] = frozenset()  # wrap one definition: decorators, export, template<>
    transparent: frozenset[str] = frozenset()  # walked through: namespaces, #if blocks, errors
    attachable: frozenset[str] = frozenset({"comment"})  # joins the definition right below it
    comment: str = "//"


_C_KINDS = {
    "function_definition": "function",
    "struct_specifier": "struct",
    "union_specifier": "union",
    "enum_specifier": "enum",
    "type_definition": "type",
}
_C_TRANSPARENT = frozenset({"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef", "ERROR"})
_JS_KINDS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "function_expression": "function",
    "class_declaration": "class",
    "class": "class",
    "method_definition": "method",
    "lexical_declaration": "function",  # only `const f = () => ...` / `= class {}`: see _describe
    "variable_declaration": "function",
}
_TS_KINDS = {
    **_JS_KINDS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
}
_JS_WRAPPERS = frozenset({"export_statement"})
_JS_TRANSPARENT = frozenset({"ERROR"})
_TS_TRANSPARENT = frozenset(
    {"ERROR", "expression_statement", "internal_module", "module", "statement_block", "ambient_declaration"}
)
_JS_ATTACHABLE = frozenset({"comment", "decorator"})

_GRAMMARS: dict[str, _Grammar] = {
    "python": _Grammar(
        kinds={"function_definition": "function", "class_definition": "class"},
        containers=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        transparent=frozenset({"ERROR"}),
        comment="#",
    ),
    "javascript": _Grammar(
        kinds=_JS_KINDS,
        containers=frozenset({"class_declaration", "class"}),
        wrappers=_JS_WRAPPERS,
        transparent=_JS_TRANSPARENT,
        attachable=_JS_ATTACHABLE,
    ),
    "typescript": _Grammar(
        kinds=_TS_KINDS,
        containers=frozenset({"class_declaration", "class", "abstract_class_declaration"}),
        wrappers=_JS_WRAPPERS,
        transparent=_TS_TRANSPARENT,
        attachable=_JS_ATTACHABLE,
    ),
    "go": _Grammar(
        kinds={"function_declaration": "function", "method_declaration": "method", "type_declaration": "type"},
        transparent=frozenset({"ERROR"}),
    ),
    "rust": _Grammar(
        kinds={
            "function_item": "function",
            "struct_item": "struct",
            "enum_item": "enum",
            "union_item": "union",
            "trait_item": "trait",
            "impl_item": "impl",
            "macro_definition": "macro",
            "type_item": "type",
        },
        containers=frozenset({"trait_item", "impl_item"}),
        transparent=frozenset({"mod_item", "declaration_list", "ERROR"}),
        attachable=frozenset({"line_comment", "block_comment", "attribute_item"}),
    ),
    "java": _Grammar(
        kinds={
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "record",
            "annotation_type_declaration": "interface",
            "method_declaration": "method",
            "constructor_declaration": "method",
            "compact_constructor_declaration": "method",
        },
        containers=frozenset({"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"}),
        transparent=frozenset({"enum_body_declarations", "ERROR"}),
        attachable=frozenset({"line_comment", "block_comment"}),
    ),
    "c": _Grammar(kinds=_C_KINDS, transparent=_C_TRANSPARENT),
    "cpp": _Grammar(
        kinds={**_C_KINDS, "class_specifier": "class"},
        containers=frozenset({"class_specifier", "struct_specifier", "union_specifier"}),
        wrappers=frozenset({"template_declaration"}),
        transparent=_C_TRANSPARENT
        | {"namespace_definition", "declaration_list", "linkage_specification", "access_specifier"},
    ),
    "csharp": _Grammar(
        kinds={
            "class_declaration": "class",
            "struct_declaration": "struct",
            "interface_declaration": "interface",
            "record_declaration": "record",
            "enum_declaration": "enum",
            "method_declaration": "method",
            "constructor_declaration": "method",
            "destructor_declaration": "method",
            "operator_declaration": "method",
            "conversion_operator_declaration": "method",
        },
        containers=frozenset(
            {"class_declaration", "struct_declaration", "interface_declaration", "record_declaration"}
        ),
        transparent=frozenset({"namespace_declaration", "declaration_list", "ERROR"}),
    ),
    "ruby": _Grammar(
        kinds={"class": "class", "module": "module", "method": "function", "singleton_method": "function"},
        containers=frozenset({"class", "module"}),
        transparent=frozenset({"singleton_class", "body_statement", "ERROR"}),
        comment="#",
    ),
    "php": _Grammar(
        kinds={
            "function_definition": "function",
            "class_declaration": "class",
            "interface_declaration": "interface",
            "trait_declaration": "trait",
            "enum_declaration": "enum",
            "method_declaration": "method",
        },
        containers=frozenset({"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"}),
        transparent=frozenset({"namespace_definition", "compound_statement", "ERROR"}),
    ),
    "kotlin": _Grammar(
        kinds={
            "class_declaration": "class",
            "object_declaration": "object",
            "companion_object": "object",
            "function_declaration": "function",
        },
        containers=frozenset({"class_declaration", "object_declaration", "companion_object"}),
        transparent=frozenset({"ERROR"}),
        attachable=frozenset({"line_comment", "block_comment"}),
    ),
    "swift": _Grammar(
        kinds={
            "class_declaration": "class",
            "protocol_declaration": "interface",
            "function_declaration": "function",
            "init_declaration": "method",
            "deinit_declaration": "method",
            "subscript_declaration": "method",
        },
        containers=frozenset({"class_declaration", "protocol_declaration"}),
        transparent=frozenset({"ERROR"}),
        attachable=frozenset({"comment", "multiline_comment"}),
    ),
    "scala": _Grammar(
        kinds={
            "class_definition": "class",
            "object_definition": "object",
            "trait_definition": "trait",
            "enum_definition": "enum",
            "function_definition": "function",
        },
        containers=frozenset({"class_definition", "object_definition", "trait_definition", "enum_definition"}),
        transparent=frozenset({"package_clause", "template_body", "ERROR"}),
        attachable=frozenset({"comment", "block_comment"}),
    ),
    "bash": _Grammar(kinds={"function_definition": "function"}, transparent=frozenset({"ERROR"}), comment="#"),
}
_GRAMMARS["tsx"] = _GRAMMARS["typescript"]

_BODY_TYPES = frozenset(
    {
        "block", "statement_block", "compound_statement", "function_body", "body_statement", "class_body",
        "declaration_list", "template_body", "field_declaration_list", "enum_body", "interface_body",
        "enum_class_body", "protocol_body", "enum_member_declaration_list", "enum_declaration_list",
    }
)  # fmt: skip
_NAME_TYPES = frozenset(
    {"identifier", "type_identifier", "constant", "simple_identifier", "name", "property_identifier", "word"}
)

# ---------------------------------------------------------------------------------------------
# Parsers


_local = threading.local()  # tree-sitter parsers are not thread-safe: one set per thread


def _parser(language: str) -> tree_sitter.Parser:
    parsers: dict[str, tree_sitter.Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        module_name, function = _GRAMMAR_MODULES[language]
        module = importlib.import_module(module_name)
        parser = parsers[language] = tree_sitter.Parser(tree_sitter.Language(getattr(module, function)()))
    return parser


# ---------------------------------------------------------------------------------------------
# Describing definition nodes


@dataclass(slots=True)
class _Def:
    node: tree_sitter.Node  # outermost node, wrappers (decorators, export) included
    core: tree_sitter.Node  # the definition itself
    kind: str
    name: str | None
    body: tree_sitter.Node | None
    qualified: bool = False  # the name already says its container (Go receivers, C++ A::f)


def _text(node: tree_sitter.Node | None) -> str | None:
    if node is None or node.text is None:
        return None
    return node.text.decode("utf-8", "replace")


def _name_of(node: tree_sitter.Node) -> str | None:
    name = node.child_by_field_name("name")
    if name is None:
        for child in node.named_children:
            if child.type in _NAME_TYPES:
                name = child
                break
    return _text(name)


def _body_of(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is None:
        for child in reversed(node.named_children):
            if child.type in _BODY_TYPES:
                return child
    return body


def _generic(node: tree_sitter.Node, kind: str) -> _Def:
    return _Def(node, node, kind, _name_of(node), _body_of(node))


def _describe_variable(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    """`const f = () => {}`, `let C = class {}`: a definition named by its single declarator."""
    declarators = [c for c in node.named_children if c.type == "variable_declarator"]
    if len(declarators) != 1:
        return None
    value = declarators[0].child_by_field_name("value")
    if value is None:
        return None
    kind = {
        "arrow_function": "function",
        "function_expression": "function",
        "function": "function",
        "generator_function": "function",
        "class": "class",
    }.get(value.type)
    if kind is None:
        return None
    return _Def(node, value, kind, _text(declarators[0].child_by_field_name("name")), _body_of(value))


def _strip_type(node: tree_sitter.Node | None) -> str | None:
    """`*T`, `Vec<T>`, `G[K]`, `crate::m::T` -> the bare type name."""
    text = _text(node)
    if text is None:
        return None
    text = re.split(r"[<\[(]", text.lstrip("*&").strip(), maxsplit=1)[0]
    return re.split(r"::|\.", text)[-1].strip() or None


def _describe_go_method(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    name = _text(node.child_by_field_name("name"))
    receiver = node.child_by_field_name("receiver")
    type_name = None
    if receiver is not None:
        for param in receiver.named_children:
            type_name = _strip_type(param.child_by_field_name("type"))
            if type_name:
                break
    symbol = f"{type_name}.{name}" if type_name and name else name
    return _Def(node, node, "method", symbol, node.child_by_field_name("body"), qualified=True)


def _describe_go_type(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    specs = [c for c in node.named_children if c.type in ("type_spec", "type_alias")]
    if not specs:
        return None
    kind = "type"
    if len(specs) == 1:
        type_node = specs[0].child_by_field_name("type")
        kind = {"struct_type": "struct", "interface_type": "interface"}.get(type_node.type if type_node else "", "type")
    names = [n for n in (_text(s.child_by_field_name("name")) for s in specs) if n]
    return _Def(node, node, kind, ", ".join(names) or None, None)


def _describe_c_function(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    declarator = node.child_by_field_name("declarator")
    for _ in range(16):  # pointer_declarator -> function_declarator -> identifier ...
        if declarator is None or declarator.type in (
            "identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name",
        ):  # fmt: skip
            break
        inner = declarator.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in declarator.named_children if "declarator" in c.type), None)
        declarator = inner
    name = _text(declarator)
    if name is not None and "::" in name:  # out-of-line member: `void Parser::parse()`
        return _Def(node, node, "method", name.replace("::", "."), _body_of(node), qualified=True)
    return _Def(node, node, "function", name, _body_of(node))


def _describe_c_record(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    """struct/union/enum/class specifiers count only with a body (not `struct S *p;`)."""
    body = node.child_by_field_name("body")
    if body is None:
        return None
    return _Def(node, node, g.kinds[node.type], _text(node.child_by_field_name("name")), body)


def _describe_c_typedef(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    type_node = node.child_by_field_name("type")
    if type_node is None or type_node.child_by_field_name("body") is None:
        return None
    kind = {"struct_specifier": "struct", "union_specifier": "union", "enum_specifier": "enum"}.get(type_node.type)
    if kind is None:
        return None
    name = _text(node.child_by_field_name("declarator")) or _text(type_node.child_by_field_name("name"))
    return _Def(node, node, kind, name, None)


def _describe_rust_impl(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    name = _strip_type(node.child_by_field_name("type"))
    return _Def(node, node, "impl", name, node.child_by_field_name("body"))


def _describe_kotlin_class(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    kind = "class"
    for child in node.children:
        if child.type == "interface":
            kind = "interface"
        elif child.type == "modifiers" and any(
            m.type == "class_modifier" and m.text == b"enum" for m in child.named_children
        ):
            kind = "enum"
    return _Def(node, node, kind, _name_of(node), _body_of(node))


def _describe_kotlin_companion(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    return _Def(node, node, "object", _name_of(node) or "Companion", _body_of(node))


def _describe_swift_class(node: tree_sitter.Node, g: _Grammar) -> _Def | None:
    declared = _text(node.child_by_field_name("declaration_kind")) or "class"
    kind = {"actor": "class", "extension": "extension"}.get(declared, declared)
    return _Def(node, node, kind, _strip_type(node.child_by_field_name("name")), _body_of(node))


_Describer = Callable[[tree_sitter.Node, _Grammar], "_Def | None"]
_SPECIAL: dict[str, dict[str, _Describer]] = {
    "javascript": {"lexical_declaration": _describe_variable, "variable_declaration": _describe_variable},
    "go": {"method_declaration": _describe_go_method, "type_declaration": _describe_go_type},
    "c": {
        "function_definition": _describe_c_function,
        "struct_specifier": _describe_c_record,
        "union_specifier": _describe_c_record,
        "enum_specifier": _describe_c_record,
        "type_definition": _describe_c_typedef,
    },
    "rust": {"impl_item": _describe_rust_impl},
    "kotlin": {"class_declaration": _describe_kotlin_class, "companion_object": _describe_kotlin_companion},
    "swift": {"class_declaration": _describe_swift_class},
}
_SPECIAL["typescript"] = _SPECIAL["tsx"] = _SPECIAL["javascript"]
_SPECIAL["cpp"] = {**_SPECIAL["c"], "class_specifier": _describe_c_record}


def _describe(node: tree_sitter.Node, g: _Grammar, special: dict[str, _Describer]) -> _Def | None:
    t = node.type
    if t in g.wrappers:
        inner = (
            node.child_by_field_name("definition")
            or node.child_by_field_name("declaration")
            or node.child_by_field_name("value")
        )
        if inner is None:
            inner = next((c for c in reversed(node.named_children) if c.type in g.kinds or c.type in g.wrappers), None)
        if inner is None:
            return None
        found = _describe(inner, g, special)
        if found is not None:
            found.node = node
            if found.name is None and t == "export_statement":
                found.name = "default"
        return found
    describer = special.get(t)
    if describer is not None:
        return describer(node, g)
    kind = g.kinds.get(t)
    return None if kind is None else _generic(node, kind)


# ---------------------------------------------------------------------------------------------
# Cutting


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


def _split_long(content: str) -> list[str]:
    """A window that is one enormous line (minified code, data) is cut by characters."""
    if len(content) <= MAX_CHUNK_CHARS:
        return [content]
    return [content[i : i + MAX_CHUNK_CHARS] for i in range(0, len(content), MAX_CHUNK_CHARS)]


class _CodeChunker:
    def __init__(self, text: str, language: str, tree: tree_sitter.Tree, src: bytes) -> None:
        self.language = language
        self.g = _GRAMMARS[language]
        self.special = _SPECIAL.get(language, {})
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
            found = _describe(node, g, self.special)
            if found is not None:
                first = attach if attach is not None and start_row <= last_end + 1 else node
                self.emit(found, first, end_row, prefix, depth, elisions)
            elif node_type in g.transparent and depth < MAX_NESTING:
                self.walk(node.named_children, prefix, depth + 1, elisions)
            attach = None
            last_end, last_was_code = end_row, True

    def emit(
        self,
        found: _Def,
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

    def emit_rows(self, start: int, end: int, kind: str, symbol: str | None, signature_row: int) -> None:
        lines = self.lines[start : end + 1]
        ranges = _plan_windows(lines, MAX_CHUNK_LINES, MAX_CHUNK_CHARS)
        header = ""
        if len(ranges) > 1:
            signature = self.lines[signature_row].strip()[:_SIGNATURE_CHARS]
            header = f"{self.g.comment} (continued) {signature}\n"
        for i, (a, b) in enumerate(ranges):
            content = "\n".join(lines[a:b])
            for piece in _split_long(content):
                self.chunks.append(
                    Chunk(start + a + 1, start + b, (header if i else "") + piece, self.language, kind, symbol)
                )

    def outline(
        self,
        first: tree_sitter.Node,
        node: tree_sitter.Node,
        end_row: int,
        kind: str,
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
            for piece in _split_long("\n".join(out_lines[a:b])):
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
                for piece in _split_long(content):
                    self.chunks.append(Chunk(start + a + 1, start + b, piece, self.language, "module"))


# ---------------------------------------------------------------------------------------------
# Text


def _windows(
    lines: list[str], language: str, kind: str = "window", symbol: str | None = None, offset: int = 0
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
            for piece in _split_long("\n".join(lines[a:b])):
                chunks.append(Chunk(offset + a + 1, offset + b, piece, language, kind, symbol))
        if end >= n:
            break
        start = max(end - WINDOW_OVERLAP, start + 1) if end - start > WINDOW_OVERLAP else end
    return chunks


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


def _markdown_headings(lines: list[str]) -> list[tuple[int, str]]:
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


def _rst_headings(lines: list[str]) -> list[tuple[int, str]]:
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
        return _windows(lines, language)
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
            chunks.extend(_windows(body, language, "section", title, start))
    return chunks


# ---------------------------------------------------------------------------------------------
# Entry point


def _chunk_code(text: str, language: str) -> list[Chunk]:
    src = text.encode("utf-8", "replace")
    tree = _parser(language).parse(src)
    return _CodeChunker(text, language, tree, src).run()


def chunk_file(text: str, language: str | None, rel_path: str) -> list[Chunk]:
    """Chunks of one file's text, in line order. Never raises; an empty file has none."""
    if not text or text.isspace():
        return []
    lang = language or "text"
    try:
        if lang in TREE_SITTER_LANGUAGES:
            chunks = _chunk_code(text, lang)
            if chunks:
                return chunks
        lines = text.split("\n")
        if lang == "markdown":
            return _sections(lines, lang, _markdown_headings(lines))
        if lang == "rst":
            return _sections(lines, lang, _rst_headings(lines))
        return _windows(lines, lang)
    except Exception:  # a grammar or odd input must never stop indexing: fall back to windows
        return _windows(text.split("\n"), lang)
