"""ALLOWED_ROOTS holds when a job runs, not only when it is queued: the symlink swap, for real."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.embeddings import Embedder
from server.indexer.pipeline import Progress
from server.jobs import queries
from server.jobs.models import TERMINAL_STATUSES, JobRow
from server.jobs.paths import RepoPathError
from server.mcp.models import StartIndexingResult
from server.mcp.server import build_server
from server.search.engine import CodeSearch
from server.search.request import SearchRequest
from server.settings import Settings
from tests.repos import make_python_repo

pytestmark = pytest.mark.integration

SECRET = "outsidesecrettoken"


def _outside(tmp_path: Path, files: int = 3) -> Path:
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    for i in range(files):
        (outside / "pkg" / f"mod_{i:04d}.py").write_text(f"def {SECRET}_{i}():\n    return '{SECRET}'\n")
    (outside / "README.md").write_text(f"# {SECRET}\n")
    return outside


def _swap(path: Path, target: Path) -> None:
    """What an attacker with write access inside the allowed root does."""
    shutil.rmtree(path)
    path.symlink_to(target, target_is_directory=True)


@pytest.fixture
async def confined_app(settings: Settings, local_embedder: Embedder, tmp_path: Path) -> AsyncIterator[App]:
    root = tmp_path / "root"
    root.mkdir()
    confined = settings.model_copy(update={"allowed_roots": [root], "run_workers_in_server": False})
    application = App(confined, embedder=local_embedder)
    await application.start()
    yield application
    await application.close()


async def _wait_terminal(pool: asyncpg.Pool, job_id: uuid.UUID, within: float = 60) -> JobRow:
    deadline = time.monotonic() + within
    while True:
        row = await queries.get(pool, job_id)
        assert row is not None
        if row.status in TERMINAL_STATUSES:
            return row
        assert time.monotonic() < deadline, row.progress_message
        await asyncio.sleep(0.05)


async def _outside_chunks(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM chunks WHERE content LIKE $1", f"%{SECRET}%")
    return n


async def test_directory_swapped_for_a_symlink_after_queueing_fails_the_job(
    confined_app: App, tmp_path: Path, project_id: str
) -> None:
    app = confined_app
    root = app.settings.allowed_roots[0]
    repo = make_python_repo(root / "swap", 4)
    outside = _outside(tmp_path)
    async with Client(build_server(app, manage_app=False)) as client:
        # Queued while no worker runs (as when every slot is busy): accepted, the path is inside the root.
        started = StartIndexingResult.model_validate(
            (
                await client.call_tool("start_indexing_background", {"repo_path": str(repo), "project_id": project_id})
            ).structured_content
        )
        assert started.status == "pending"
        _swap(repo, outside)
        await app.start_worker()
        assert app.cluster is not None
        pool = await app.cluster.pool(started.database_name)
        row = await _wait_terminal(pool, uuid.UUID(started.job_id))
        assert row.status == "failed"
        assert row.error_type == "RepoPathError"
        assert row.error_message is not None and "escapes the allowed roots" in row.error_message, row.error_message
        assert await _outside_chunks(pool) == 0
        assert await pool.fetchval("SELECT count(*) FROM files") == 0
        with pytest.raises(ToolError, match="no indexed code yet"):
            await client.call_tool("search_code", {"query": SECRET, "project_id": project_id})


async def test_swap_in_the_middle_of_a_run_reads_nothing_outside(
    confined_app: App, tmp_path: Path, project_id: str
) -> None:
    """Swapped after the scan, before the files are read (in the chunking processes: 70 files)."""
    app = confined_app
    root = app.settings.allowed_roots[0]
    repo = make_python_repo(root / "swap", 70)
    outside = _outside(tmp_path, 70)  # the same names: pkg/mod_0000.py ...
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    swapped: list[str] = []

    async def swap_after_scan(p: Progress) -> None:
        if p.phase == "scanning" and p.files_scanned and not swapped:
            _swap(repo, outside)
            swapped.append(p.message)

    with pytest.raises(RepoPathError, match="changed while it was being indexed"):
        await app.index(project, repo, progress=swap_after_scan)
    assert swapped
    assert app.cluster is not None
    pool = await app.cluster.pool(project.database_name)
    assert await _outside_chunks(pool) == 0
    assert await pool.fetchval("SELECT count(*) FROM files WHERE NOT is_deleted") == 0


async def test_foreground_paths_are_confined_when_they_start(
    confined_app: App, tmp_path: Path, project_id: str
) -> None:
    """The CLI and `index_repository` validate, then call App.index: a swap in between is caught too."""
    app = confined_app
    root = app.settings.allowed_roots[0]
    repo = make_python_repo(root / "swap", 2)
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    _swap(repo, _outside(tmp_path))
    with pytest.raises(RepoPathError, match="escapes the allowed roots"):
        await app.index(project, repo)
    inner = make_python_repo(root / "real", 2)
    (root / "alias").symlink_to(inner)  # a symlink inside the root, to inside the root
    with pytest.raises(RepoPathError, match="now resolves to"):
        await app.index(project, root / "alias")  # only ever called with resolved paths
    result = await app.index(project, inner)
    assert result.files_indexed == 3
    assert app.cluster is not None
    hits = await CodeSearch.from_app(app).search(SearchRequest(query="load_settings_1", project_id=project_id))
    assert hits.results and hits.results[0].context_source == "file"
