"""The text forms chunks are embedded in (queries are embedded as they are)."""

from __future__ import annotations

# The path and qualified symbol in front of the code help docstring→function retrieval and let 64
# tokens do as well as 128 (bench/README.md).


def header(rel_path: str, symbol: str | None) -> str:
    return f"{rel_path} {symbol}" if symbol else rel_path


def embedding_text(rel_path: str, symbol: str | None, content: str) -> str:
    """``"<rel_path> <Qualified.symbol>\\n<content>"`` (path only without a symbol): the transformer tier's input."""
    return f"{header(rel_path, symbol)}\n{content}"
