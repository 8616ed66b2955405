"""Re-indexing changed files on the real database: unchanged chunks keep their rows and vectors
(only their lines follow the file), and a mass write of vectors drops and rebuilds both HNSW
indexes, which end present and valid with every chunk's vectors complete.

The subject is the store, not the model: vectors come from the token-hash fake (tests/fakes.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.db.registry import Project
from server.embeddings import Embedder
from server.indexer import store, storing, vector_index
from server.indexer.pipeline import Progress, index_repository
from server.indexer.prepare import PrepareJob, chunk_rows, prepare
from server.indexer.scanner import scan_repository
from server.indexer.types import FileRecord
from server.search.engine import CodeSearch
from server.search.request import SearchRequest
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo, write_files


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder


async def _project(app: App, project_id: str) -> tuple[Project, asyncpg.Pool]:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    return project, await app.cluster.pool(project.database_name)


async def _rows(pool: asyncpg.Pool, rel_path: str) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch(
        """
        SELECT c.id, c.start_line, c.end_line, c.content, c.embedding::text AS embedding,
               c.static_embedding::text AS static
        FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.rel_path = $1
        """,
        rel_path,
    )
    return {r["id"]: r for r in rows}


async def _index_states(pool: asyncpg.Pool) -> dict[str, bool]:
    """Each vector index present, by name, with whether PostgreSQL holds it valid."""
    rows = await pool.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = ANY($1::text[])",
        [index.name for index in vector_index.INDEXES],
    )
    return {r["relname"]: r["indisvalid"] for r in rows}


async def _chunks_where(pool: asyncpg.Pool, condition: str) -> int:
    n: int = await pool.fetchval(f"SELECT count(*) FROM chunks WHERE {condition}")
    return n


async def _incomplete(pool: asyncpg.Pool) -> int:
    return await _chunks_where(pool, "embedding IS NULL OR static_embedding IS NULL")


async def _empty_full_text(pool: asyncpg.Pool) -> int:
    return await _chunks_where(pool, "tsv = ''::tsvector")


async def test_an_edit_keeps_the_rows_and_vectors_of_unchanged_chunks(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 4)
    project, pool = await _project(app, project_id)
    await app.index(project, repo)
    before = await _rows(pool, "pkg/mod_0001.py")
    assert len(before) >= 3

    # A function added at the top: every old chunk moves down, none changes its text.
    path = repo / "pkg" / "mod_0001.py"
    head = '"""Module 1: helpers for area 1."""\n\n\ndef inserted_first(x):\n    return x * 2\n'
    path.write_text(head + path.read_text())
    again = await app.index(project, repo)

    after = await _rows(pool, "pkg/mod_0001.py")
    kept = before.keys() & after.keys()
    assert len(kept) >= 3 and again.chunks_kept == len(kept)
    lines = path.read_text().splitlines()
    for i in kept:
        assert after[i]["embedding"] == before[i]["embedding"] and after[i]["static"] == before[i]["static"]
        assert after[i]["start_line"] > before[i]["start_line"]  # moved with the text above it
        # its lines are where its text now is (a class's chunk elides the bodies: compare its first line)
        assert lines[after[i]["start_line"] - 1].strip() == after[i]["content"].splitlines()[0].strip()
        assert after[i]["end_line"] - after[i]["start_line"] == before[i]["end_line"] - before[i]["start_line"]
    new = [r for i, r in after.items() if i not in kept]
    assert any("inserted_first" in r["content"] for r in new)
    assert again.chunks_created == len(new) and again.chunks_embedded + again.embedding_cache_hits == len(new)
    assert await _incomplete(pool) == 0 and await _empty_full_text(pool) == 0

    # A repeated text keeps one row per copy, in order.
    write_files(repo, {"pkg/twice.py": "def same():\n    return 1\n\n\ndef same():\n    return 1\n"})
    await app.index(project, repo)
    twice = await _rows(pool, "pkg/twice.py")
    (repo / "pkg" / "twice.py").write_text("X = 0\n\n\ndef same():\n    return 1\n\n\ndef same():\n    return 1\n")
    await app.index(project, repo)
    again_twice = await _rows(pool, "pkg/twice.py")
    same_rows = sorted((r["start_line"], i) for i, r in again_twice.items() if "def same" in r["content"])
    assert len(same_rows) == 2 and {i for _, i in same_rows} <= twice.keys()
    assert [line for line, _ in same_rows] == [4, 8]


async def test_a_forced_reindex_rebuilds_both_vector_indexes_valid_and_complete(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 40)
    _, pool = await _project(app, project_id)
    await index_repository(repo, "repo", pool, app.embedder, static_tier=True)
    ids_before = {r["id"] for r in await pool.fetch("SELECT id FROM chunks")}
    engine = CodeSearch.from_app(app)
    absent_then: list[dict[str, bool]] = []
    found_meanwhile: list[bool] = []

    async def watch(p: Progress) -> None:
        if p.phase == "vector_index" and p.message.startswith("Searchable; building the transformer"):
            absent_then.append(await _index_states(pool))
            # Vector search goes on by exact scan while the index is absent.
            response = await engine.search(SearchRequest("settings file number 7", project_id=project_id))
            found_meanwhile.append(any(hit.scores.cosine is not None for hit in response.results))

    forced = await index_repository(
        repo, "repo", pool, app.embedder, force_reindex=True, static_tier=True, progress_callback=watch,
        bulk_load_chunks=50,
    )  # fmt: skip
    # Every row is new (forced), every vector comes from the cache: a bulk write into both indexes.
    assert forced.chunks_kept == 0 and forced.embedding_cache_hits == forced.chunks_created > 50
    assert not ids_before & {r["id"] for r in await pool.fetch("SELECT id FROM chunks")}
    # both were dropped for the copy; the static one is built again first
    assert absent_then == [{vector_index.STATIC.name: True}]
    assert found_meanwhile == [True]
    assert await _index_states(pool) == {index.name: True for index in vector_index.INDEXES}
    assert await _incomplete(pool) == 0
    response = await engine.search(SearchRequest("settings file number 7", project_id=project_id))
    assert response.results and response.results[0].scores.cosine is not None


async def test_a_small_change_keeps_both_indexes(app: App, tmp_path: Path, project_id: str) -> None:
    repo = make_python_repo(tmp_path / "repo", 10)
    _, pool = await _project(app, project_id)
    await index_repository(repo, "repo", pool, app.embedder, static_tier=True)
    phases: list[str] = []

    async def watch(p: Progress) -> None:
        phases.append(p.phase)

    path = repo / "pkg" / "mod_0003.py"
    path.write_text("def first():\n    return 1\n\n\n" + path.read_text())
    result = await index_repository(
        repo, "repo", pool, app.embedder, static_tier=True, progress_callback=watch, bulk_load_chunks=50
    )
    assert result.files_indexed == 1 and result.chunks_kept >= 3
    assert "vector_index" not in phases
    assert await _index_states(pool) == {index.name: True for index in vector_index.INDEXES}
    assert await _incomplete(pool) == 0


async def test_rows_gone_since_their_keys_were_read_make_the_store_refuse_and_write_nothing(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    project, pool = await _project(app, project_id)
    await app.index(project, repo)
    path = repo / "pkg" / "mod_0001.py"
    path.write_text("def inserted_first(x):\n    return x * 2\n\n\n" + path.read_text())
    (scanned,) = [f for f in scan_repository(repo).files if f.rel_path == "pkg/mod_0001.py"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT id, content_hash FROM files WHERE rel_path = $1", scanned.rel_path)
        assert row is not None
        file_id, old_hash = row["id"], row["content_hash"]
        keys = (await store.stored_chunk_keys(conn, [file_id], with_static=True))[file_id]
    (record,) = prepare([PrepareJob(scanned, old_hash, tuple(keys))], 1 << 20, True)
    assert isinstance(record, FileRecord) and sum(c.unchanged for c in record.chunks) == len(keys) >= 3

    victim = await pool.fetchval("SELECT min(id) FROM chunks WHERE file_id = $1", file_id)
    await pool.execute("DELETE FROM chunks WHERE id = $1", victim)  # as another writer would
    left = await _rows(pool, scanned.rel_path)
    repo_id = await pool.fetchval("SELECT repository_id FROM files WHERE id = $1", file_id)
    async with pool.acquire() as conn:
        with pytest.raises(store.StaleChunkKeysError) as stale:
            await store.replace_files(conn, repo_id, [record])
    assert stale.value.rel_paths == [scanned.rel_path]
    assert await _rows(pool, scanned.rel_path) == left  # rolled back: nothing written, nothing deleted
    assert await pool.fetchval("SELECT content_hash FROM files WHERE id = $1", file_id) == old_hash


async def test_a_batch_whose_rows_changed_meanwhile_is_prepared_again_in_full(
    app: App, tmp_path: Path, project_id: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=storing.__name__)
    repo = make_python_repo(tmp_path / "repo", 6)
    _, pool = await _project(app, project_id)
    await index_repository(repo, "repo", pool, app.embedder, static_tier=True)
    for i in range(6):
        path = repo / "pkg" / f"mod_{i:04d}.py"
        path.write_text(f"def inserted_{i}(x):\n    return x * {i}\n\n\n" + path.read_text())
    # Batches of two files, written one at a time: all three batches are prepared (their stored keys
    # read) before the first is written, whose progress report then deletes a row of the last file.
    monkeypatch.setattr(storing, "FILES_PER_BATCH", 2)
    monkeypatch.setattr(storing, "WRITERS", 1)
    last = "pkg/mod_0005.py"
    deleted: list[int] = []

    async def meddle(p: Progress) -> None:
        if p.phase == "storing" and p.files_indexed and not deleted:
            deleted.append(
                await pool.fetchval(
                    "DELETE FROM chunks WHERE id = (SELECT min(c.id) FROM chunks c JOIN files f ON f.id = c.file_id "
                    "WHERE f.rel_path = $1) RETURNING id",
                    last,
                )
            )

    result = await index_repository(repo, "repo", pool, app.embedder, static_tier=True, progress_callback=meddle)
    assert deleted and deleted[0] is not None
    assert [r.getMessage() for r in caplog.records if "again in full" in r.getMessage()] == [
        "stored chunks changed while 1 files were prepared: preparing the batch of 2 files again in full"
    ]
    rows = await _rows(pool, last)
    text = (repo / last).read_text()
    expected = chunk_rows(last, text, "python", "code")
    assert sorted(r["content"] for r in rows.values()) == sorted(c.content for c in expected)
    assert deleted[0] not in rows
    assert result.files_indexed == 6 and result.chunks_kept >= 5 * 3
    assert await _empty_full_text(pool) == 0 and await _incomplete(pool) == 0
