"""Plain data passed between scanner, chunker, embedder and store.

Imported by chunking workers: keep it free of the database and model libraries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from server.indexer.roles import Role

# Every kind of chunk the chunker emits: definitions (as named per grammar in
# server/indexer/chunking/grammars.py), then code between definitions, document sections and
# plain line windows. A Ruby `module` is a definition that shares its name with module-level code.
ChunkKind = Literal[
    "function",
    "method",
    "class",
    "struct",
    "union",
    "enum",
    "type",
    "interface",
    "trait",
    "impl",
    "macro",
    "record",
    "object",
    "extension",
    "module",
    "section",
    "window",
]


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """A file the scanner decided to index (not yet read)."""

    path: Path  # absolute, inside the repository
    rel_path: str  # POSIX-style path relative to the repository root
    size: int
    mtime_ns: int
    language: str | None  # canonical language name, None when unknown


@dataclass(frozen=True, slots=True)
class Chunk:
    """A searchable slice of one file."""

    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    content: str
    language: str  # language of the file ("text" for unknown)
    kind: ChunkKind
    symbol: str | None = None  # qualified name where there is one, e.g. "Parser.parse"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file's new state plus its chunks, written atomically."""

    rel_path: str
    content_hash: str
    size: int
    mtime_ns: int
    language: str | None
    line_count: int
    role: Role
    chunks: list[ChunkRow]


@dataclass(frozen=True, slots=True)
class ChunkRow:
    start_line: int
    end_line: int
    symbol: str | None
    kind: str
    language: str
    content: str
    content_hash: str  # sha256 of `content`
    role: Role
    tsv: bytes  # binary tsvector (server/indexer/fulltext.py)
    embed_hash: str  # sha256 of the text the transformer embeds
    embed_priority: int  # transformer queue order, lower first
    static_embedding: npt.NDArray[np.float32] | None = None
    # The file's stored rows already hold this chunk (`PrepareJob.stored`): its full text and static
    # vector were not computed again (`tsv` is empty, `content` too); the store keeps the old row.
    unchanged: bool = False


# What makes a stored chunk row the same as a new one of the same file but for its lines: everything
# else a row holds (full text, the vectors' inputs) follows from these and the file's path.
# (embed_hash, content_hash, symbol, kind, role, language, embed_priority)
ChunkKey = tuple[str, str, str | None, str, str, str, int]
CHUNK_KEY_COLUMNS = ("embed_hash", "content_hash", "symbol", "kind", "role", "language", "embed_priority")


def chunk_key(c: ChunkRow) -> ChunkKey:
    return key_of(c.embed_hash, c.content_hash, c.symbol, c.kind, c.role, c.language, c.embed_priority)


def key_of(
    embed_hash: str, content_hash: str, symbol: str | None, kind: str, role: str, language: str, embed_priority: int
) -> ChunkKey:
    """The key of a chunk row with these fields (before the row is built)."""
    return (embed_hash, content_hash, symbol, kind, role, language, embed_priority)
