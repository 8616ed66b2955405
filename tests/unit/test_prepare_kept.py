"""A changed file's chunks that its stored rows already hold are not prepared again (no full text,
no static vector); everything else is, and repeated texts are counted."""

from __future__ import annotations

from pathlib import Path

from server.indexer.prepare import PrepareJob, chunk_rows, prepare
from server.indexer.scanner import scan_repository
from server.indexer.types import chunk_key
from tests.repos import write_files

SOURCE = "def alpha():\n    return 1\n\n\ndef beta():\n    return 2\n\n\ndef alpha():\n    return 1\n"


def test_stored_chunks_come_back_unchanged_without_full_text() -> None:
    full = chunk_rows("pkg/m.py", SOURCE, "python", "code")
    assert [c.symbol for c in full] == ["alpha", "beta", "alpha"] and all(c.tsv and not c.unchanged for c in full)

    # The store holds one copy of alpha and beta: the second alpha is new and is prepared in full.
    light = chunk_rows("pkg/m.py", SOURCE, "python", "code", [chunk_key(full[0]), chunk_key(full[1])])
    assert [c.unchanged for c in light] == [True, True, False]
    assert [chunk_key(c) for c in light] == [chunk_key(c) for c in full]
    assert [(c.start_line, c.end_line) for c in light] == [(c.start_line, c.end_line) for c in full]
    assert all(c.tsv == b"" and c.content == "" for c in light[:2])
    assert light[2] == full[2]

    # A key of another file's path does not match: the header the transformer embeds differs.
    elsewhere = chunk_rows("pkg/other.py", SOURCE, "python", "code", [chunk_key(full[1])])
    assert not any(c.unchanged for c in elsewhere)


def test_unchanged_chunks_get_no_static_vector_and_the_rest_do(tmp_path: Path) -> None:
    repo = write_files(tmp_path / "repo", {"pkg/m.py": SOURCE})
    (scanned,) = scan_repository(repo).files
    (plain,) = prepare([PrepareJob(scanned, None)], 1 << 20, True)
    assert not isinstance(plain, tuple)
    kept = tuple(chunk_key(c) for c in plain.chunks[:2])
    (hinted,) = prepare([PrepareJob(scanned, "old hash", kept)], 1 << 20, True)
    assert not isinstance(hinted, tuple)
    assert [c.static_embedding is None for c in hinted.chunks] == [True, True, False]
    assert all(c.static_embedding is not None for c in plain.chunks)
    assert (hinted.chunks[2].static_embedding == plain.chunks[2].static_embedding).all()  # type: ignore[union-attr]
