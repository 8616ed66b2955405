"""The static vector index around bulk loads, on the real database: dropped while a big load stores
(search stays correct by exact scan), built after, kept for small loads, repaired by the next run
after an interruption, and left alone while another build runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.indexer import storing, vector_index
from server.indexer.pipeline import Progress, index_repository
from server.indexer.vector_index import STATIC
from server.search.engine import CodeSearch
from server.search.request import SearchRequest
from tests.repos import make_python_repo, write_files

QUERY = "retry a failed network call, waiting longer each time"


def _repo(root: Path, files: int) -> Path:
    make_python_repo(root, files)
    write_files(
        root,
        {
            "net/backoff.py": """
                import time


                def call_with_backoff(send, attempts=5):
                    \"\"\"Retry a failed network call, doubling the wait after each failure.\"\"\"
                    for attempt in range(attempts):
                        try:
                            return send()
                        except ConnectionError:
                            time.sleep(2 ** attempt)
                    raise TimeoutError("the server never answered")
                """
        },
    )
    return root


async def _pool(app: App, project_id: str) -> asyncpg.Pool:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    return await app.cluster.pool(project.database_name)


async def _state(pool: asyncpg.Pool) -> vector_index.State:
    async with pool.acquire() as conn:
        return await vector_index.state(conn, STATIC)


async def test_bulk_load_searches_by_exact_scan_then_builds_the_index(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = _repo(tmp_path / "repo", 300)  # several batches
    pool = await _pool(app, project_id)
    engine = CodeSearch.from_app(app)
    assert await _state(pool) == "valid"  # as the migration made it
    seen: list[Progress] = []
    states: list[vector_index.State] = []
    found_while_storing: list[str] = []

    async def watch(p: Progress) -> None:
        seen.append(p)
        if p.phase == "storing":
            states.append(await _state(pool))
            if not found_while_storing and p.files_indexed > 0:
                # Search mid-load, with the index gone: the static tier answers from the table.
                response = await engine.search(SearchRequest(QUERY, project_id=project_id))
                found_while_storing.extend(hit.file_path for hit in response.results if hit.scores.static)

    result = await index_repository(
        repo, "repo", pool, None, progress_callback=watch, static_tier=True, bulk_load_chunks=100
    )
    assert states and set(states) == {"absent"}
    assert found_while_storing  # static scores came back while the index was absent
    assert await _state(pool) == "valid"
    building = [p for p in seen if p.phase == "vector_index"]
    assert building, [p.phase for p in seen]
    # The index is built after the run is searchable and every chunk has its static vector.
    assert all(p.searchable_at is not None and p.semantic_at is not None for p in building)
    assert all(p.static_coverage == 1.0 and p.total_chunks == result.chunks_created for p in building)
    phases = [p.phase for p in seen]
    assert phases.index("vector_index") > max(i for i, ph in enumerate(phases) if ph == "storing")
    response = await engine.search(SearchRequest(QUERY, project_id=project_id))
    assert response.results[0].file_path == "net/backoff.py"
    assert response.results[0].scores.static is not None


async def test_a_small_load_keeps_the_index(app: App, tmp_path: Path, project_id: str) -> None:
    repo = _repo(tmp_path / "repo", 20)
    pool = await _pool(app, project_id)
    states: list[vector_index.State] = []
    phases: list[str] = []

    async def watch(p: Progress) -> None:
        phases.append(p.phase)
        if p.phase == "storing":
            states.append(await _state(pool))

    await index_repository(repo, "repo", pool, None, progress_callback=watch, static_tier=True)
    assert states and set(states) == {"valid"}
    assert "vector_index" not in phases


async def test_the_next_run_rebuilds_an_index_a_run_left_missing(app: App, tmp_path: Path, project_id: str) -> None:
    repo = _repo(tmp_path / "repo", 5)
    pool = await _pool(app, project_id)
    await index_repository(repo, "repo", pool, None, static_tier=True)
    async with pool.acquire() as conn:
        await vector_index.drop(conn, STATIC)  # as a run cancelled between its drop and its build leaves it
    assert await _state(pool) == "absent"
    phases: list[str] = []

    async def watch(p: Progress) -> None:
        phases.append(p.phase)

    again = await index_repository(repo, "repo", pool, None, progress_callback=watch, static_tier=True)
    assert again.files_indexed == 0 and "vector_index" in phases
    assert await _state(pool) == "valid"


async def test_an_interrupted_build_is_seen_as_such_and_replaced(app: App, project_id: str, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", 5)
    pool = await _pool(app, project_id)
    await index_repository(repo, "repo", pool, None, static_tier=True)
    async with pool.acquire() as conn:
        await vector_index.drop(conn, STATIC)
    writer = await pool.acquire()
    builder: asyncio.Task[bool] | None = None
    try:
        # An open writing transaction holds a concurrent build in its wait for writers.
        tx = writer.transaction()
        await tx.start()
        await writer.execute("UPDATE chunks SET embed_priority = 1 WHERE id = (SELECT min(id) FROM chunks)")

        async def build() -> bool:
            async with pool.acquire() as conn:
                return await vector_index.build(conn, STATIC)

        builder = asyncio.create_task(build())
        for _ in range(200):
            if await _state(pool) == "building":
                break
            await asyncio.sleep(0.05)
        assert await _state(pool) == "building"
        async with pool.acquire() as conn:
            assert await vector_index.build(conn, STATIC) is False  # another build runs: left alone
        builder.cancel()  # asyncpg cancels the statement on the server: the index stays invalid
        with pytest.raises(asyncio.CancelledError):
            await builder
        await tx.rollback()
    finally:
        if builder is not None and not builder.done():
            builder.cancel()
        await pool.release(writer)
    assert await _state(pool) == "invalid"
    async with pool.acquire() as conn:
        assert await vector_index.build(conn, STATIC) is True
    assert await _state(pool) == "valid"


async def test_a_rewrite_of_stored_files_drops_the_index_once_its_rows_reach_the_rule(
    app: App, tmp_path: Path, project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One writer: the first batch's progress report (which samples the index) comes before the
    # second batch is written; with two, a loaded machine could store both before the first sample.
    monkeypatch.setattr(storing, "WRITERS", 1)
    repo = _repo(tmp_path / "repo", 300)
    pool = await _pool(app, project_id)
    await index_repository(repo, "repo", pool, None, static_tier=True)
    for path in (repo / "pkg").glob("*.py"):  # every chunk's text changes: no row can be kept
        path.write_text(path.read_text().replace("helpers for area", "utilities of zone").replace("    ", "  "))
    states: list[vector_index.State] = []

    async def watch(p: Progress) -> None:
        if p.phase == "storing" and p.files_indexed > 0:
            states.append(await _state(pool))

    result = await index_repository(
        repo, "repo", pool, None, progress_callback=watch, static_tier=True, bulk_load_chunks=300
    )
    assert result.files_indexed == 300 and result.chunks_kept == 0
    # Changed files are not in the estimate made before storing (their rows might be kept): the index
    # went on taking rows until the rewritten ones reached the rule, and was built again after.
    assert states[0] == "valid" and states[-1] == "absent", states
    assert await _state(pool) == "valid"
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE static_embedding IS NULL") == 0
