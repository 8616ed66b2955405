"""Background-indexing tools through a real FastMCP Client, on the real database.

The subject is the job lifecycle, not embedding: the app embeds with the instant token-hash fake, which a
test pauses to hold a job inside its embedding phase.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.embeddings import Embedder
from server.jobs.models import IndexingJobProgress
from server.mcp.models import CancelResult, JobList, StartIndexingResult
from server.mcp.server import build_server
from tests.fakes import FakeEmbedder
from tests.polling import wait_for
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder


async def _start(client: Client[Any], repo: Path, project_id: str, **extra: Any) -> StartIndexingResult:
    result = await client.call_tool(
        "start_indexing_background", {"repo_path": str(repo), "project_id": project_id, **extra}
    )
    return StartIndexingResult.model_validate(result.structured_content)


async def _status(client: Client[Any], job_id: str, project_id: str | None = None) -> IndexingJobProgress:
    args: dict[str, Any] = {"job_id": job_id}
    if project_id:
        args["project_id"] = project_id
    result = await client.call_tool("get_indexing_status", args)
    return IndexingJobProgress.model_validate(result.structured_content)


async def _poll_until(client: Client[Any], job_id: str, statuses: set[str], within: float = 60) -> IndexingJobProgress:
    seen: list[IndexingJobProgress] = []

    async def reached() -> IndexingJobProgress | None:
        seen.append(await _status(client, job_id))
        return seen[-1] if seen[-1].status in statuses else None

    return await wait_for(
        reached, within=within, interval=0.1, what=lambda: f"job leaving {seen[-1].status}: {seen[-1].progress_message}"
    )


async def test_start_returns_at_once_then_poll_to_completed(
    mcp_client: Client[Any], fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 5)
    fake_embedder.pause()  # no indexing inside the request: were there any, the call could not return
    start = await asyncio.wait_for(_start(mcp_client, repo, project_id), 60)
    fake_embedder.resume()
    assert start.status == "pending" and start.project_id == project_id and not start.coalesced
    assert start.database_name.startswith("cb_proj_")

    job = await _poll_until(mcp_client, start.job_id, {"completed", "failed"})
    assert job.status == "completed", job.error_message
    assert job.progress_percentage == 100
    assert job.files_indexed == 6 and job.files_scanned == 6
    assert job.chunks_created > 0
    assert job.repository_id is not None
    assert job.started_at is not None and job.completed_at is not None and job.completed_at >= job.started_at
    assert job.error_message is None and job.phase == "done"


async def test_second_start_for_same_repository_is_coalesced(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 3)
    assert app.worker is not None
    await app.worker.stop()  # keep the first job pending
    app.worker = None
    first = await _start(mcp_client, repo, project_id)
    second = await _start(mcp_client, repo, project_id, force_reindex=True)
    assert second.coalesced and second.job_id == first.job_id and second.status == "pending"
    listed = JobList.model_validate(
        (await mcp_client.call_tool("list_indexing_jobs", {"project_id": project_id})).structured_content
    )
    assert [j.job_id for j in listed.jobs] == [uuid.UUID(first.job_id)]


async def test_cancel_mid_run_stops_the_worker_task(
    mcp_client: Client[Any], app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "big", 80)  # enough files for the chunking processes
    fake_embedder.pause()  # the job stays in its embedding phase until cancelled
    start = await _start(mcp_client, repo, project_id)
    job_uuid = uuid.UUID(start.job_id)
    running = await _poll_until(mcp_client, start.job_id, {"running"})
    assert app.worker is not None

    async def embedding() -> bool:
        return (await _status(mcp_client, start.job_id)).phase == "embedding"

    await wait_for(embedding, within=60, what="embedding phase")
    await asyncio.wait_for(fake_embedder.blocked.wait(), 60)  # mid-embedding, for sure
    task = app.worker.running[job_uuid].task

    t0 = time.monotonic()
    cancelled = CancelResult.model_validate(
        (await mcp_client.call_tool("cancel_indexing_background", {"job_id": start.job_id})).structured_content
    )
    assert cancelled.status == "cancelled"
    await asyncio.wait_for(asyncio.shield(task), 2.0)  # the worker's task really ended
    assert time.monotonic() - t0 < 2.0
    assert job_uuid not in app.worker.running

    job = await _status(mcp_client, start.job_id, project_id)
    assert job.status == "cancelled" and job.cancelled_at is not None
    assert running.started_at is not None
    # the worker acknowledged the stop, and a late "completed" could not overwrite it
    await _poll_until(mcp_client, start.job_id, {"cancelled"})

    async def acknowledged() -> bool:
        return "worker stopped" in (await _status(mcp_client, start.job_id)).progress_message

    await wait_for(acknowledged, within=5, what="'worker stopped' in the progress message")
    await asyncio.sleep(0.5)  # a window for a late write, which must not come
    assert (await _status(mcp_client, start.job_id)).status == "cancelled"

    with pytest.raises(ToolError, match="already cancelled"):
        await mcp_client.call_tool("cancel_indexing_background", {"job_id": start.job_id})


async def test_three_projects_index_concurrently_with_independent_progress(
    mcp_client: Client[Any], tmp_path: Path
) -> None:
    projects = [f"c{i}-{uuid.uuid4().hex[:8]}" for i in range(3)]
    starts = []
    for i, pid in enumerate(projects):
        repo = make_python_repo(tmp_path / f"r{i}", 4 + i, prefix=f"p{i}")
        starts.append(await _start(mcp_client, repo, pid))
    assert len({s.database_name for s in starts}) == 3
    finals = await asyncio.gather(*(_poll_until(mcp_client, s.job_id, {"completed", "failed"}) for s in starts))
    for i, job in enumerate(finals):
        assert job.status == "completed" and job.project_id == projects[i]
        assert job.files_indexed == 5 + i  # each repo's own files, plus README
        assert job.progress_percentage == 100


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_watch_indexing_pushes_ordered_monotonic_progress(
    app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str, mode: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 40)
    fake_embedder.seconds_per_call = 0.25  # an embedding phase that lasts, as with a real model (2 batches)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(build_server(app, manage_app=False), mode=mode) as client:
        start = await _start(client, repo, project_id)
        result = await client.call_tool("watch_indexing", {"job_id": start.job_id}, progress_handler=on_progress)
    final = IndexingJobProgress.model_validate(result.structured_content)
    assert final.status == "completed"
    values = [p for p, _, _ in seen]
    assert len(values) >= 3 and values == sorted(values) and values[-1] == 100
    assert all(total == 100 for _, total, _ in seen)
    assert any("embedding" in (m or "").lower() or "Embedded" in (m or "") for _, _, m in seen)
    assert seen[-1][2] is not None and seen[-1][2].startswith("[completed]")


async def test_resource_returns_job_json(mcp_client: Client[Any], tmp_path: Path, project_id: str) -> None:
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 2), project_id)
    await _poll_until(mcp_client, start.job_id, {"completed"})
    contents = await mcp_client.read_resource(f"indexing-job://{start.job_id}")
    job = IndexingJobProgress.model_validate_json(contents[0].text)  # type: ignore[union-attr]
    assert str(job.job_id) == start.job_id and job.status == "completed"


async def test_list_filters_by_status(mcp_client: Client[Any], tmp_path: Path, project_id: str) -> None:
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 2), project_id)
    await _poll_until(mcp_client, start.job_id, {"completed"})
    args = {"project_id": project_id}
    done = JobList.model_validate(
        (await mcp_client.call_tool("list_indexing_jobs", {**args, "status": "completed"})).structured_content
    )
    none = JobList.model_validate(
        (await mcp_client.call_tool("list_indexing_jobs", {**args, "status": "running"})).structured_content
    )
    assert [str(j.job_id) for j in done.jobs] == [start.job_id] and none.jobs == []


@pytest.mark.parametrize(
    ("repo_path", "message"),
    [
        ("relative/path", "must be absolute"),
        ("/tmp/../../etc/passwd", "Path traversal detected"),
        ("/tmp/%2e%2e%2fetc", "Path traversal detected"),
        ("/definitely/not/here", "does not exist"),
    ],
)
async def test_start_rejects_bad_paths_and_creates_nothing(
    mcp_client: Client[Any], app: App, project_id: str, repo_path: str, message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await mcp_client.call_tool("start_indexing_background", {"repo_path": repo_path, "project_id": project_id})
    assert await app.registry.get(project_id) is None  # bad input provisions nothing


async def test_status_and_cancel_errors(mcp_client: Client[Any], tmp_path: Path, project_id: str) -> None:
    with pytest.raises(ToolError, match="invalid job_id"):
        await mcp_client.call_tool("get_indexing_status", {"job_id": "not-a-uuid"})
    missing = str(uuid.uuid4())
    with pytest.raises(ToolError, match="not found"):
        await mcp_client.call_tool("get_indexing_status", {"job_id": missing})
    with pytest.raises(ToolError, match="not found"):
        await mcp_client.call_tool("cancel_indexing_background", {"job_id": missing})
    with pytest.raises(ToolError, match="unknown project"):
        await mcp_client.call_tool("list_indexing_jobs", {"project_id": "never-made-" + project_id})
    with pytest.raises(ToolError, match="invalid project id"):
        await mcp_client.call_tool("list_indexing_jobs", {"project_id": "bad id; drop table"})
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 1), project_id)
    await _poll_until(mcp_client, start.job_id, {"completed"})
    with pytest.raises(ToolError, match="already completed"):
        await mcp_client.call_tool("cancel_indexing_background", {"job_id": start.job_id})


async def test_oversized_repository_fails_with_clear_error(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    app.settings.max_repo_size_gb = 1e-6  # 1 KB
    app.settings.debug = True  # tracebacks reach clients only with DEBUG on
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 5), project_id)
    job = await _poll_until(mcp_client, start.job_id, {"completed", "failed"})
    assert job.status == "failed" and job.error_type == "RepositoryTooLargeError"
    assert job.error_message is not None and "MAX_REPO_SIZE_GB" in job.error_message
    assert job.error_traceback is not None and "RepositoryTooLargeError" in job.error_traceback


async def test_failed_job_traceback_is_shown_only_with_debug(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    app.settings.max_repo_size_gb = 1e-6
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 5), project_id)
    job = await _poll_until(mcp_client, start.job_id, {"completed", "failed"})
    assert job.status == "failed" and job.error_type == "RepositoryTooLargeError"
    assert job.error_message is not None and "MAX_REPO_SIZE_GB" in job.error_message
    assert job.error_traceback is None  # DEBUG is off by default
    listed = JobList.model_validate(
        (await mcp_client.call_tool("list_indexing_jobs", {"project_id": project_id})).structured_content
    )
    assert [j.error_traceback for j in listed.jobs] == [None]
    contents = await mcp_client.read_resource(f"indexing-job://{start.job_id}")
    assert IndexingJobProgress.model_validate_json(contents[0].text).error_traceback is None  # type: ignore[union-attr]
    app.settings.debug = True
    shown = await _status(mcp_client, start.job_id)
    assert shown.error_traceback is not None and "RepositoryTooLargeError" in shown.error_traceback


async def test_job_running_too_long_fails_with_timeout(
    mcp_client: Client[Any], app: App, fake_embedder: FakeEmbedder, tmp_path: Path, project_id: str
) -> None:
    app.settings.indexing_job_timeout_seconds = 1
    fake_embedder.pause()  # embedding never ends: the job outlives its timeout, however fast the machine
    start = await _start(mcp_client, make_python_repo(tmp_path / "repo", 5), project_id)
    job = await _poll_until(mcp_client, start.job_id, {"completed", "failed"})
    assert job.status == "failed" and job.error_type == "JobTimeout"
    assert "INDEXING_JOB_TIMEOUT_SECONDS" in (job.error_message or "")
