"""index_repository on real repositories and the real database: incremental, progress, cancel.

The subject is the pipeline, not the model: vectors come from the instant token-hash fake (tests/fakes.py).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from server.app import App
from server.db.registry import Project
from server.embeddings import Embedder, static_text
from server.indexer.pipeline import Progress, index_repository
from server.indexer.tokens import query_tokens
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo, write_files


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder


async def _project(app: App, project_id: str) -> tuple[Project, asyncpg.Pool]:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    return project, await app.cluster.pool(project.database_name)


async def _files(pool: asyncpg.Pool) -> dict[str, tuple[int, str, bool]]:
    rows = await pool.fetch("SELECT id, rel_path, content_hash, is_deleted FROM files")
    return {r["rel_path"]: (r["id"], r["content_hash"], r["is_deleted"]) for r in rows}


async def _chunk_ids(pool: asyncpg.Pool, rel_path: str) -> set[int]:
    rows = await pool.fetch(
        "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.rel_path = $1", rel_path
    )
    return {r["id"] for r in rows}


def _multi_language_repo(root: Path) -> Path:
    write_files(
        root,
        {
            "src/retry.py": """
                import time


                def retry_request(send, attempts=3):
                    \"\"\"Retry a failed HTTP request with exponential backoff.\"\"\"
                    for n in range(attempts):
                        try:
                            return send()
                        except OSError:
                            time.sleep(2 ** n)
                    raise RuntimeError('gave up')
                """,
            "src/app.ts": """
                export class JobQueue {
                  private items: string[] = [];
                  push(item: string): void {
                    this.items.push(item);
                  }
                }
                """,
            "main.go": "package main\n\nfunc ParseConfig(path string) error {\n\treturn nil\n}\n",
            "lib.rs": "pub fn checksum(data: &[u8]) -> u32 {\n    data.iter().map(|b| *b as u32).sum()\n}\n",
            "docs.md": "# Guide\n\nHow to configure the service.\n\n## Retry\n\nRetries use backoff.\n",
            "sub/.gitignore": "*.log\n!keep.log\n",
            "sub/debug.log": "noise\n",
            "sub/keep.log": "kept on purpose\n",
            "blob.dat": b"\x00\x01binary\x00" * 100,
            "latin.txt": "caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"),
            "huge.txt": "x" * 2_000_000,
        },
    )
    os.symlink("/etc", root / "escape")
    return root


async def test_full_index_stores_searchable_chunks(app: App, tmp_path: Path, project_id: str) -> None:
    repo = _multi_language_repo(tmp_path / "repo")
    project, pool = await _project(app, project_id)
    result = await app.index(project, repo)
    files = await _files(pool)
    assert set(files) == {
        "src/retry.py",
        "src/app.ts",
        "main.go",
        "lib.rs",
        "docs.md",
        "latin.txt",
        "sub/keep.log",
        "sub/.gitignore",
    }
    assert result.files_skipped.get("too_large") == 1 and result.files_skipped.get("symlink") == 1
    assert result.files_skipped.get("binary") == 1
    langs = {r["rel_path"]: r["language"] for r in await pool.fetch("SELECT rel_path, language FROM files")}
    assert langs["src/retry.py"] == "python" and langs["src/app.ts"] == "typescript" and langs["main.go"] == "go"
    # every chunk embedded by both tiers, full text over code-aware tokens finds identifiers and their parts
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE static_embedding IS NULL") == 0
    assert result.static_coverage == 1.0 and result.transformer_coverage == 1.0
    row = await pool.fetchrow(
        """SELECT c.symbol, c.content, c.static_embedding::real[] AS v, f.rel_path FROM chunks c
           JOIN files f ON f.id = c.file_id WHERE c.symbol = 'retry_request'"""
    )
    assert row is not None and app.static_embedder is not None
    expected = app.static_embedder.embed([static_text(row["rel_path"], row["symbol"], row["content"])])[0]
    assert np.allclose(np.asarray(row["v"]), expected, atol=2e-3)  # stored as halfvec
    hit = await pool.fetchval(
        "SELECT symbol FROM chunks WHERE tsv @@ to_tsquery('simple', $1) ORDER BY id LIMIT 1",
        " & ".join(query_tokens("retry request")),
    )
    assert hit == "retry_request"
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE tsv @@ to_tsquery('simple', 'jobqueue')") >= 1
    latin = await pool.fetchval(
        "SELECT content FROM chunks c JOIN files f ON f.id = c.file_id WHERE rel_path = 'latin.txt'"
    )
    assert "crème" in latin


async def test_reindex_touches_exactly_what_changed(app: App, tmp_path: Path, project_id: str) -> None:
    repo = make_python_repo(tmp_path / "repo", 6)
    project, pool = await _project(app, project_id)
    first = await app.index(project, repo)
    assert first.files_indexed == 7 and first.chunks_embedded == first.chunks_created
    before = await _files(pool)
    kept_chunks = await _chunk_ids(pool, "pkg/mod_0001.py")
    edited_before = await _chunk_ids(pool, "pkg/mod_0000.py")

    nothing = await app.index(project, repo)
    assert (nothing.files_indexed, nothing.chunks_created, nothing.chunks_embedded) == (0, 0, 0)
    assert nothing.files_unchanged == 7

    changed = repo / "pkg" / "mod_0000.py"
    changed.write_text(changed.read_text() + "\n\ndef brand_new_helper():\n    return 42\n")
    (repo / "pkg" / "mod_0002.py").unlink()
    (repo / "pkg" / "added.py").write_text("def added_function():\n    return 'added'\n")
    touched = repo / "pkg" / "mod_0003.py"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10_000_000_000))

    second = await app.index(project, repo)
    assert second.files_indexed == 2  # mod_0000 changed, added.py new
    assert second.files_deleted == 1 and second.files_unchanged == 5  # mod_0003: same hash, new mtime
    after = await _files(pool)
    assert after["pkg/mod_0002.py"][2] is True and await _chunk_ids(pool, "pkg/mod_0002.py") == set()
    assert after["pkg/mod_0000.py"][1] != before["pkg/mod_0000.py"][1]
    assert await _chunk_ids(pool, "pkg/mod_0001.py") == kept_chunks  # untouched rows kept their ids
    # unchanged chunks of the edited file kept their rows (and vectors); only new content was embedded
    assert second.chunks_kept >= 3 and len(edited_before & await _chunk_ids(pool, "pkg/mod_0000.py")) >= 3
    assert second.embedding_cache_hits + second.chunks_embedded == second.chunks_created
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE symbol = 'brand_new_helper'") == 1

    forced = await app.index(project, repo, force_reindex=True)
    assert forced.files_indexed == 7 and forced.embedding_cache_hits == forced.chunks_created
    assert forced.chunks_embedded == 0


async def test_progress_milestones_are_monotonic_and_survive_a_failing_callback(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 40)
    project, _ = await _project(app, project_id)
    seen: list[Progress] = []

    async def callback(p: Progress) -> None:
        seen.append(p)
        if len(seen) == 3:
            raise RuntimeError("a broken progress consumer")

    result = await app.index(project, repo, progress=callback)
    pcts = [p.percentage for p in seen]
    assert pcts == sorted(pcts) and pcts[-1] == 100 and all(p < 100 for p in pcts[:-1])
    phases = [p.phase for p in seen]
    assert phases[0] == "scanning" and phases[-1] == "done"
    order = ["scanning", "storing", "vector_index", "embedding", "finalizing", "done"]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases)  # phases never go back
    scanned = next(p for p in seen if p.phase == "scanning" and p.files_scanned)
    assert scanned.files_scanned == 41 and scanned.files_to_index == 41
    stored = [p for p in seen if p.phase == "storing"]
    assert stored and stored[-1].files_indexed == 41 and stored[-1].searchable_at is None
    embedding = [p for p in seen if p.phase == "embedding"]
    assert embedding and all(p.searchable_at is not None for p in embedding)
    coverage = [p.transformer_coverage for p in embedding]
    assert coverage == sorted(coverage) and coverage[0] < 1.0
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in seen[1:-1])  # known once scanned
    final = seen[-1]
    assert final.transformer_coverage == 1.0 and final.eta_seconds is None
    assert final.total_chunks == result.total_chunks and final.chunks_embedded == result.chunks_embedded > 0
    assert "Indexed 41 changed files" in final.message and f"{result.total_chunks} chunks" in final.message
    assert result.files_indexed == 41


async def test_searchable_by_text_before_embeddings_then_filled(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 3)
    _, pool = await _project(app, project_id)
    text_only = await index_repository(repo, "repo", pool, None)
    assert text_only.chunks_created > 0 and text_only.chunks_embedded == 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") == 0
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM chunks WHERE tsv @@ to_tsquery('simple', $1)", query_tokens("settings")[0]
        )
        > 0
    )
    later = await index_repository(repo, "repo", pool, fake_embedder)
    assert later.files_indexed == 0 and later.chunks_embedded == text_only.chunks_created
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0


async def test_cancel_takes_effect_fast_and_leaves_consistent_rows(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 60)  # ~240 chunks: two embedding batches
    project, pool = await _project(app, project_id)

    async def watch(p: Progress) -> None:
        if p.phase == "embedding" and p.chunks_embedded > 0:
            fake_embedder.pause()  # the first batch is stored: hold the run inside the second

    task = asyncio.create_task(index_repository(repo, "repo", pool, fake_embedder, progress_callback=watch))
    await asyncio.wait_for(fake_embedder.blocked.wait(), 60)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - t0 < 0.1
    # every stored file has its chunks; embedded chunks also sit in the cache
    orphans = await pool.fetchval(
        """SELECT count(*) FROM files f
           WHERE NOT is_deleted AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.file_id = f.id)"""
    )
    assert orphans == 0
    missing_cache = await pool.fetchval(
        """SELECT count(*) FROM chunks c WHERE embedding IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM embedding_cache e WHERE e.text_hash = c.embed_hash)"""
    )
    assert missing_cache == 0
    fake_embedder.resume()
    resumed = await app.index(project, repo)
    assert resumed.files_indexed == 0 and resumed.chunks_embedded > 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0


async def test_switching_embedder_is_refused(app: App, tmp_path: Path, project_id: str) -> None:
    from server.db.registry import EmbedderMismatchError

    project, _ = await _project(app, project_id)
    app.registry.embedder_name = "ollama:other-model"
    with pytest.raises(EmbedderMismatchError, match="vectors cannot be mixed"):
        await app.index(project, make_python_repo(tmp_path / "repo", 1))


async def test_counters_match_the_database_across_concurrent_batch_writes(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 400)  # several batches, written concurrently
    _, pool = await _project(app, project_id)
    result = await index_repository(repo, "repo", pool, None)
    assert result.files_indexed == 401 == await pool.fetchval("SELECT count(*) FROM files")
    assert result.chunks_created == await pool.fetchval("SELECT count(*) FROM chunks")


async def test_a_replacing_embedder_takes_the_project_over_and_the_next_index_fills_it(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    from server.db.registry import EmbedderMismatchError, Registry

    repo = make_python_repo(tmp_path / "repo", 3)
    project, pool = await _project(app, project_id)
    first = await app.index(project, repo)
    assert first.chunks_embedded > 0 and await pool.fetchval("SELECT count(*) FROM embedding_cache") > 0
    previous = fake_embedder.name
    with pytest.raises(EmbedderMismatchError):  # a name it does not replace is still refused
        await Registry(app.cluster, embedder_name="test:tuned", embedding_dim=384).check_embedder(project)

    tuned = Registry(app.cluster, embedder_name="test:tuned", embedding_dim=384, replaces=(previous,))
    await tuned.check_embedder(project)
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") == 0
    assert await pool.fetchval("SELECT count(*) FROM embedding_cache") == 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE static_embedding IS NULL") == 0  # kept
    stored = await pool.fetchval("SELECT value->>'name' FROM project_config WHERE key = 'embedder'")
    assert stored == "test:tuned"
    assert (await Registry(app.cluster, embedder_name="x", embedding_dim=384).require(project_id)).metadata[
        "embedder"
    ] == "test:tuned"  # the registry's copy too (`codebase-mcp repos`)
    assert await pool.fetchval("SELECT to_regclass('chunks_embedding_hnsw_idx') IS NOT NULL")
    await tuned.check_embedder(project)  # taken over once: nothing more to do, nothing refused
    with pytest.raises(EmbedderMismatchError):  # and the old embedder cannot write into it any more
        await app.registry.check_embedder(project)

    again = await index_repository(repo, "repo", pool, fake_embedder)  # nothing changed on disk
    assert again.files_indexed == 0 and again.chunks_embedded == first.chunks_created
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0
