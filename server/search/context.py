"""What a hit shows: its stored content and the lines around it.

Context lines come from the file on disk when it still holds what was indexed, else from the
neighbouring chunks in the index (as far as their text maps onto the file's lines).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from server.db.cluster import Conn
from server.fs.confined import read_beneath, split_relative
from server.fs.names import unescape_name
from server.search.models import ContextSource
from server.search.ranking import Candidate
from server.search.repositories import Repository

_DETAILS_SQL = """
SELECT c.id, c.content, f.content_hash AS file_hash, f.size_bytes, f.mtime_ns, f.indexed_at
FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id = ANY($1::bigint[])
"""

_NEIGHBOURS_SQL = """
SELECT w.i, c.start_line, c.end_line, c.content
FROM unnest($1::bigint[], $2::int[], $3::int[]) WITH ORDINALITY AS w(file_id, lo, hi, i)
JOIN chunks c ON c.file_id = w.file_id AND c.end_line >= w.lo AND c.start_line <= w.hi
ORDER BY w.i, c.start_line
"""


async def fetch_details(conn: Conn, chunk_ids: Sequence[int]) -> dict[int, asyncpg.Record]:
    """Chunk id -> its content and its file's indexed state (hash, size, mtime, when stored)."""
    return {r["id"]: r for r in await conn.fetch(_DETAILS_SQL, list(chunk_ids))}


@dataclass(slots=True)
class LineContext:
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    source: ContextSource = "none"


def _read_if_unchanged(root: str, rel_path: str, size: int, mtime_ns: int, content_hash: str) -> list[str] | None:
    """The file's lines if it still holds what was indexed (same size and mtime, else same hash).

    Read without following any symlink (`server/fs/confined.py`); `rel_path` is the stored,
    escaped name (`server/fs/names.py`).
    """
    try:
        data, st = read_beneath(root, split_relative(unescape_name(rel_path)), size + 1)
    except OSError:
        return None
    if st.st_size != size or len(data) != size:
        return None
    if st.st_mtime_ns != mtime_ns and hashlib.sha256(data).hexdigest() != content_hash:
        return None
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    return text.removesuffix("\n").split("\n")  # as the chunker counts lines; no phantom last line


def _context_from_file(lines: list[str], start: int, end: int, n: int) -> LineContext:
    return LineContext(lines[max(0, start - 1 - n) : start - 1], lines[end : end + n], "file")


def _context_from_chunks(rows: Sequence[asyncpg.Record], start: int, end: int, n: int) -> LineContext:
    """Lines next to [start, end] taken from neighbouring chunks whose text maps 1:1 onto their
    line range (outlines and continued parts do not). Lines no chunk covers, between the hit and a
    covered line, are the blank lines the chunker leaves out; past the last covered line nothing is
    known (end of file, or an outline), so the context stops there."""
    by_line: dict[int, str] = {}
    for r in rows:
        lines = str(r["content"]).split("\n")
        if len(lines) == r["end_line"] - r["start_line"] + 1:
            for offset, text in enumerate(lines):
                by_line.setdefault(r["start_line"] + offset, text)
    above = [line for line in range(max(1, start - n), start) if line in by_line]
    below = [line for line in range(end + 1, end + n + 1) if line in by_line]
    before = [by_line.get(line, "") for line in range(above[0], start)] if above else []
    after = [by_line.get(line, "") for line in range(end + 1, below[-1] + 1)] if below else []
    return LineContext(before, after, "index" if before or after else "none")


async def read_contexts(
    conn: Conn,
    ranked: Sequence[Candidate],
    details: Mapping[int, asyncpg.Record],
    repositories: Mapping[uuid.UUID, Repository],
    n: int,
) -> list[LineContext]:
    """`n` lines above and below each ranked chunk (`details` from `fetch_details`)."""
    if n == 0:
        return [LineContext() for _ in ranked]

    def read_all() -> list[list[str] | None]:
        files: dict[int, list[str] | None] = {}
        for c in ranked:
            if c.file_id not in files:
                d = details[c.id]
                root = repositories[c.repository_id].root_path
                files[c.file_id] = _read_if_unchanged(root, c.rel_path, d["size_bytes"], d["mtime_ns"], d["file_hash"])
        return [files[c.file_id] for c in ranked]

    texts = await asyncio.to_thread(read_all)
    out = [_context_from_file(t, c.start_line, c.end_line, n) if t is not None else LineContext()
           for c, t in zip(ranked, texts, strict=True)]  # fmt: skip
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        rows = await conn.fetch(
            _NEIGHBOURS_SQL,
            [ranked[i].file_id for i in missing],
            [ranked[i].start_line - n for i in missing],
            [ranked[i].end_line + n for i in missing],
        )
        grouped: dict[int, list[asyncpg.Record]] = {}
        for r in rows:
            grouped.setdefault(r["i"], []).append(r)
        for k, i in enumerate(missing, start=1):
            c = ranked[i]
            out[i] = _context_from_chunks(grouped.get(k, []), c.start_line, c.end_line, n)
    return out
