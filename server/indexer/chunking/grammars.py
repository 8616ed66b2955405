"""Per-language tree-sitter node-type tables: the one list of languages the chunker parses.

Each grammar names its Python binding (module and function giving the language pointer) and which
node types are definitions (and the chunk kind each becomes), containers whose members are
chunked separately, wrappers around one definition, transparent nodes walked through, and nodes
that attach to the definition right below them. `server.indexer.languages` derives its set of
tree-sitter languages from GRAMMARS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.indexer.types import ChunkKind


@dataclass(frozen=True, slots=True)
class Grammar:
    module: str  # Python binding of the grammar ...
    function: str  # ... and its function returning the language pointer
    kinds: dict[str, ChunkKind]  # definition node type -> chunk kind
    containers: frozenset[str] = frozenset()  # class-like: members are chunked separately
    wrappers: frozenset[str] = frozenset()  # wrap one definition: decorators, export, template<>
    transparent: frozenset[str] = frozenset()  # walked through: namespaces, #if blocks, errors
    attachable: frozenset[str] = frozenset({"comment"})  # joins the definition right below it
    comment: str = "//"


_C_KINDS: dict[str, ChunkKind] = {
    "function_definition": "function",
    "struct_specifier": "struct",
    "union_specifier": "union",
    "enum_specifier": "enum",
    "type_definition": "type",
}
_C_TRANSPARENT = frozenset({"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef", "ERROR"})
_JS_KINDS: dict[str, ChunkKind] = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "function_expression": "function",
    "class_declaration": "class",
    "class": "class",
    "method_definition": "method",
    "lexical_declaration": "function",  # only `const f = () => ...` / `= class {}` (describers)
    "variable_declaration": "function",
}
_TS_KINDS: dict[str, ChunkKind] = {
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

GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
        "tree_sitter_python",
        "language",
        kinds={"function_definition": "function", "class_definition": "class"},
        containers=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        transparent=frozenset({"ERROR"}),
        comment="#",
    ),
    "javascript": Grammar(
        "tree_sitter_javascript",
        "language",
        kinds=_JS_KINDS,
        containers=frozenset({"class_declaration", "class"}),
        wrappers=_JS_WRAPPERS,
        transparent=_JS_TRANSPARENT,
        attachable=_JS_ATTACHABLE,
    ),
    "typescript": Grammar(
        "tree_sitter_typescript",
        "language_typescript",
        kinds=_TS_KINDS,
        containers=frozenset({"class_declaration", "class", "abstract_class_declaration"}),
        wrappers=_JS_WRAPPERS,
        transparent=_TS_TRANSPARENT,
        attachable=_JS_ATTACHABLE,
    ),
    "go": Grammar(
        "tree_sitter_go",
        "language",
        kinds={"function_declaration": "function", "method_declaration": "method", "type_declaration": "type"},
        transparent=frozenset({"ERROR"}),
    ),
    "rust": Grammar(
        "tree_sitter_rust",
        "language",
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
    "java": Grammar(
        "tree_sitter_java",
        "language",
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
    "c": Grammar("tree_sitter_c", "language", kinds=_C_KINDS, transparent=_C_TRANSPARENT),
    "cpp": Grammar(
        "tree_sitter_cpp",
        "language",
        kinds={**_C_KINDS, "class_specifier": "class"},
        containers=frozenset({"class_specifier", "struct_specifier", "union_specifier"}),
        wrappers=frozenset({"template_declaration"}),
        transparent=_C_TRANSPARENT
        | {"namespace_definition", "declaration_list", "linkage_specification", "access_specifier"},
    ),
    "csharp": Grammar(
        "tree_sitter_c_sharp",
        "language",
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
    "ruby": Grammar(
        "tree_sitter_ruby",
        "language",
        kinds={"class": "class", "module": "module", "method": "function", "singleton_method": "function"},
        containers=frozenset({"class", "module"}),
        transparent=frozenset({"singleton_class", "body_statement", "ERROR"}),
        comment="#",
    ),
    "php": Grammar(
        "tree_sitter_php",
        "language_php",
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
    "kotlin": Grammar(
        "tree_sitter_kotlin",
        "language",
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
    "swift": Grammar(
        "tree_sitter_swift",
        "language",
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
    "scala": Grammar(
        "tree_sitter_scala",
        "language",
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
    "bash": Grammar(
        "tree_sitter_bash",
        "language",
        kinds={"function_definition": "function"},
        transparent=frozenset({"ERROR"}),
        comment="#",
    ),
}
GRAMMARS["tsx"] = replace(GRAMMARS["typescript"], function="language_tsx")


# Node types of bodies and names, across grammars (for nodes without a `body` or `name` field).
BODY_TYPES = frozenset(
    {
        "block", "statement_block", "compound_statement", "function_body", "body_statement", "class_body",
        "declaration_list", "template_body", "field_declaration_list", "enum_body", "interface_body",
        "enum_class_body", "protocol_body", "enum_member_declaration_list", "enum_declaration_list",
    }
)  # fmt: skip
NAME_TYPES = frozenset(
    {"identifier", "type_identifier", "constant", "simple_identifier", "name", "property_identifier", "word"}
)
