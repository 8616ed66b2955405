"""Per-language describers: what a definition node is called, what kind it is, where its body is.

Most definitions are described generically (the `name` and `body` fields, else the first name-like
and last body-like child). The exceptions are described per language: JavaScript/TypeScript
`const f = () => ...`, Go methods (named by their receiver) and type declarations, C/C++
declarators, records and typedefs, Rust impl blocks, Kotlin classes and companions, Swift classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import tree_sitter

from server.indexer.chunking.grammars import BODY_TYPES, NAME_TYPES, Grammar
from server.indexer.types import ChunkKind


@dataclass(slots=True)
class Definition:
    node: tree_sitter.Node  # outermost node, wrappers (decorators, export) included
    core: tree_sitter.Node  # the definition itself
    kind: ChunkKind
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
            if child.type in NAME_TYPES:
                name = child
                break
    return _text(name)


def _body_of(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is None:
        for child in reversed(node.named_children):
            if child.type in BODY_TYPES:
                return child
    return body


def _generic(node: tree_sitter.Node, kind: ChunkKind) -> Definition:
    return Definition(node, node, kind, _name_of(node), _body_of(node))


# Values that make `const f = ...` / `let C = ...` a definition.
_VALUE_KINDS: dict[str, ChunkKind] = {
    "arrow_function": "function",
    "function_expression": "function",
    "function": "function",
    "generator_function": "function",
    "class": "class",
}


def _describe_variable(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    """`const f = () => {}`, `let C = class {}`: a definition named by its single declarator."""
    declarators = [c for c in node.named_children if c.type == "variable_declarator"]
    if len(declarators) != 1:
        return None
    value = declarators[0].child_by_field_name("value")
    if value is None:
        return None
    kind = _VALUE_KINDS.get(value.type)
    if kind is None:
        return None
    return Definition(node, value, kind, _text(declarators[0].child_by_field_name("name")), _body_of(value))


def _strip_type(node: tree_sitter.Node | None) -> str | None:
    """`*T`, `Vec<T>`, `G[K]`, `crate::m::T` -> the bare type name."""
    text = _text(node)
    if text is None:
        return None
    text = re.split(r"[<\[(]", text.lstrip("*&").strip(), maxsplit=1)[0]
    return re.split(r"::|\.", text)[-1].strip() or None


def _describe_go_method(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    name = _text(node.child_by_field_name("name"))
    receiver = node.child_by_field_name("receiver")
    type_name = None
    if receiver is not None:
        for param in receiver.named_children:
            type_name = _strip_type(param.child_by_field_name("type"))
            if type_name:
                break
    symbol = f"{type_name}.{name}" if type_name and name else name
    return Definition(node, node, "method", symbol, node.child_by_field_name("body"), qualified=True)


_GO_TYPE_KINDS: dict[str, ChunkKind] = {"struct_type": "struct", "interface_type": "interface"}


def _describe_go_type(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    specs = [c for c in node.named_children if c.type in ("type_spec", "type_alias")]
    if not specs:
        return None
    kind: ChunkKind = "type"
    if len(specs) == 1:
        type_node = specs[0].child_by_field_name("type")
        kind = _GO_TYPE_KINDS.get(type_node.type if type_node else "", "type")
    names = [n for n in (_text(s.child_by_field_name("name")) for s in specs) if n]
    return Definition(node, node, kind, ", ".join(names) or None, None)


def _describe_c_function(node: tree_sitter.Node, g: Grammar) -> Definition | None:
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
        return Definition(node, node, "method", name.replace("::", "."), _body_of(node), qualified=True)
    return Definition(node, node, "function", name, _body_of(node))


def _describe_c_record(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    """struct/union/enum/class specifiers count only with a body (not `struct S *p;`)."""
    body = node.child_by_field_name("body")
    if body is None:
        return None
    return Definition(node, node, g.kinds[node.type], _text(node.child_by_field_name("name")), body)


_TYPEDEF_KINDS: dict[str, ChunkKind] = {
    "struct_specifier": "struct",
    "union_specifier": "union",
    "enum_specifier": "enum",
}


def _describe_c_typedef(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    type_node = node.child_by_field_name("type")
    if type_node is None or type_node.child_by_field_name("body") is None:
        return None
    kind = _TYPEDEF_KINDS.get(type_node.type)
    if kind is None:
        return None
    name = _text(node.child_by_field_name("declarator")) or _text(type_node.child_by_field_name("name"))
    return Definition(node, node, kind, name, None)


def _describe_rust_impl(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    name = _strip_type(node.child_by_field_name("type"))
    return Definition(node, node, "impl", name, node.child_by_field_name("body"))


def _describe_kotlin_class(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    kind: ChunkKind = "class"
    for child in node.children:
        if child.type == "interface":
            kind = "interface"
        elif child.type == "modifiers" and any(
            m.type == "class_modifier" and m.text == b"enum" for m in child.named_children
        ):
            kind = "enum"
    return Definition(node, node, kind, _name_of(node), _body_of(node))


def _describe_kotlin_companion(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    return Definition(node, node, "object", _name_of(node) or "Companion", _body_of(node))


# Every `declaration_kind` of tree-sitter-swift's class_declaration (protocols are declared apart).
_SWIFT_KINDS: dict[str, ChunkKind] = {
    "class": "class",
    "struct": "struct",
    "enum": "enum",
    "actor": "class",
    "extension": "extension",
}


def _describe_swift_class(node: tree_sitter.Node, g: Grammar) -> Definition | None:
    declared = _text(node.child_by_field_name("declaration_kind")) or "class"
    kind = _SWIFT_KINDS.get(declared, "class")
    return Definition(node, node, kind, _strip_type(node.child_by_field_name("name")), _body_of(node))


Describer = Callable[[tree_sitter.Node, Grammar], "Definition | None"]
SPECIAL: dict[str, dict[str, Describer]] = {
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
SPECIAL["typescript"] = SPECIAL["tsx"] = SPECIAL["javascript"]
SPECIAL["cpp"] = {**SPECIAL["c"], "class_specifier": _describe_c_record}


def describe(node: tree_sitter.Node, g: Grammar, special: dict[str, Describer]) -> Definition | None:
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
        found = describe(inner, g, special)
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
