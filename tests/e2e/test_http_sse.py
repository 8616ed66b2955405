"""Streamable HTTP: `watch_indexing` and the browser's SSE stream follow one job to its end."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from server.jobs.models import IndexingJobProgress
from tests.e2e.conftest import Processes, start_job
from tests.repos import make_python_repo


async def read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs until the server closes the stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:  # a blank line ends an event
            events.append((event, json.loads(data)))
            event, data = "message", ""
    return events


async def test_watch_and_sse_stream_a_job_over_http(processes: Processes, tmp_path: Path) -> None:
    server = await processes.http_server()
    repo = make_python_repo(tmp_path / "repo", 30)
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        assert total == 100
        progress.append((value, message or ""))

    async with server.client() as client, server.http(timeout=120) as http:
        job = await start_job(client, repo, project)
        url = f"/web/api/projects/{project}/jobs/{job.job_id}/events"
        async with http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            sse, watched = await asyncio.gather(
                read_sse(response),
                client.call_tool("watch_indexing", {"job_id": job.job_id}, progress_handler=on_progress),
            )

    final = IndexingJobProgress.model_validate(watched.structured_content)
    assert final.status == "completed", final.error_message
    assert final.files_indexed == 31 and final.chunks_created > 31  # 30 modules and a README

    # watch_indexing: ordered, monotonic, from the queue to the end.
    values = [v for v, _ in progress]
    assert values == sorted(values), values
    assert progress[-1] == (100.0, f"[completed] {final.progress_message}")
    assert len({m for _, m in progress}) >= 4, progress  # queued/running/… in between, not just first and last
    assert any(m.startswith("[running]") for _, m in progress)

    # SSE: one `job` event per version, in order, then `end` with the final row.
    jobs = [data for event, data in sse if event == "job"]
    versions = [j["version"] for j in jobs]
    assert versions == sorted(set(versions)) and len(versions) >= 3, versions
    percentages = [j["progress_percentage"] for j in jobs]
    assert percentages == sorted(percentages), percentages
    assert sse[-1][0] == "end"
    assert sse[-1][1]["status"] == "completed" and sse[-1][1]["version"] == final.version == versions[-1]
    # The worker's own "completed" NOTIFY must not be mistaken for a cancel of its task.
    assert f"job {job.job_id} cancelled" not in server.proc.log()
