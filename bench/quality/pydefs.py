"""Python: every docstring (module, class, function) becomes `pass` with the lines it spanned kept,
and the definitions a search should find: top-level functions and classes, methods of top-level
classes."""

from __future__ import annotations

import ast

from bench.quality.model import Definition

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def blank_docstrings(source: str, tree: ast.Module) -> str | None:
    """Each docstring becomes `pass` plus the newlines it spanned; None if the result does not parse."""
    lines = source.split("\n")
    nodes = [d for n in ast.walk(tree) if isinstance(n, (ast.Module, *_DEFS)) and (d := _docstring_node(n)) is not None]
    for d in sorted(nodes, key=lambda d: (d.lineno, d.col_offset), reverse=True):
        assert d.end_lineno is not None and d.end_col_offset is not None
        first, last = d.lineno - 1, d.end_lineno - 1
        head = lines[first].encode()[: d.col_offset].decode()
        tail = lines[last].encode()[d.end_col_offset :].decode()
        lines[first : last + 1] = [head + "pass" + tail] + [""] * (last - first)
    out = "\n".join(lines)
    try:
        ast.parse(out)
    except SyntaxError:
        return None
    return out


def _lead(lines: list[str], first: int) -> int:
    """First line of the comment lines directly above 1-based line `first`."""
    row = first - 1
    while row >= 1 and lines[row - 1].lstrip().startswith("#"):
        row -= 1
    return row + 1


def _definition(path: str, node: ast.AST, container: str | None, lines: list[str]) -> Definition:
    assert isinstance(node, _DEFS) and node.end_lineno is not None
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    kind = "class" if isinstance(node, ast.ClassDef) else "method" if container else "function"
    return Definition(
        path=path, language="python", name=node.name, container=container, kind=kind, lead=_lead(lines, top),
        header=node.lineno, end=node.end_lineno, doc=ast.get_docstring(node, clean=True),
    )  # fmt: skip


def analyse_python(path: str, source: str) -> tuple[str, list[Definition]]:
    """(the blanked source, its definitions); a file that does not parse is kept as it is, with none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source, []
    blanked = blank_docstrings(source, tree)
    if blanked is None:
        return source, []
    lines = blanked.split("\n")
    found: list[Definition] = []
    for node in tree.body:
        if isinstance(node, _DEFS):
            found.append(_definition(path, node, None, lines))
        if isinstance(node, ast.ClassDef):
            found += [_definition(path, m, node.name, lines) for m in node.body if isinstance(m, _DEFS)]
    return blanked, found
