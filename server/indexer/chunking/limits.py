"""Chunk size limits shared by every splitter."""

from __future__ import annotations

MAX_CHUNK_LINES = 200  # a definition longer than this is split into parts
MAX_CHUNK_CHARS = 8_000  # ... and so is one larger than this
MODULE_CHUNK_LINES = 80  # module-level code between definitions is merged up to this
WINDOW_LINES = 60  # plain-text windows
WINDOW_OVERLAP = 10


def split_long(content: str) -> list[str]:
    """A window that is one enormous line (minified code, data) is cut by characters."""
    if len(content) <= MAX_CHUNK_CHARS:
        return [content]
    return [content[i : i + MAX_CHUNK_CHARS] for i in range(0, len(content), MAX_CHUNK_CHARS)]
