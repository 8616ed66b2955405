"""`list_repositories` and `remove_repository`, and the overlap rule, through a real FastMCP Client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.mcp.models import JobList, RemovedRepository, RepositoryList, StartIndexingResult
from server.mcp.server import build_server
from tests.repos import make_python_repo


async def _list(client: Client[Any], project_id: str) -> RepositoryList:
    result = await client.call_tool("list_repositories", {"project_id": project_id})
    return RepositoryList.model_validate(result.structured_content)


async def _index(client: Client[Any], repo: Path, project_id: str) -> None:
    await client.call_tool("index_repository", {"repo_path": str(repo), "project_id": project_id})


async def test_list_then_remove_a_repository(mcp_client: Client[Any], tmp_path: Path, project_id: str) -> None:
    keep = make_python_repo(tmp_path / "keep", 2, prefix="keep")
    gone = make_python_repo(tmp_path / "gone", 3, prefix="gone")
    await _index(mcp_client, keep, project_id)
    await _index(mcp_client, gone, project_id)

    listed = await _list(mcp_client, project_id)
    assert listed.project_id == project_id
    by_name = {r.name: r for r in listed.repositories}
    assert set(by_name) == {"keep", "gone"}
    assert by_name["gone"].root_path == str(gone) and by_name["gone"].files == 4 and by_name["gone"].chunks > 0
    assert by_name["gone"].unembedded_chunks == 0 and by_name["gone"].last_indexed_at is not None
    assert by_name["gone"].active_job_id is None and by_name["gone"].active_job_status is None

    result = await mcp_client.call_tool("remove_repository", {"repository": "gone", "project_id": project_id})
    removed = RemovedRepository.model_validate(result.structured_content)
    assert (removed.name, removed.root_path, removed.files_removed) == ("gone", str(gone), 4)
    assert removed.chunks_removed == by_name["gone"].chunks and removed.repository_id == by_name["gone"].repository_id
    assert [r.name for r in (await _list(mcp_client, project_id)).repositories] == ["keep"]

    found = await mcp_client.call_tool("search_code", {"query": "Service1", "project_id": project_id})
    assert found.structured_content is not None
    assert {h["repository_name"] for h in found.structured_content["results"]} == {"keep"}

    with pytest.raises(ToolError, match=r"no repository 'gone' in this project; its repositories: keep \("):
        await mcp_client.call_tool("remove_repository", {"repository": "gone", "project_id": project_id})


async def test_overlapping_roots_are_refused_with_the_existing_repository_named(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "src" / "app", 2)
    await _index(mcp_client, repo, project_id)
    with pytest.raises(ToolError, match=rf"is inside repository 'app' \({repo}\), already indexed in project"):
        await _index(mcp_client, repo / "pkg", project_id)
    with pytest.raises(ToolError, match=rf"contains repository 'app' \({repo}\)"):  # refused now, not later
        await mcp_client.call_tool(
            "start_indexing_background", {"repo_path": str(tmp_path / "src"), "project_id": project_id}
        )
    jobs = JobList.model_validate(
        (await mcp_client.call_tool("list_indexing_jobs", {"project_id": project_id})).structured_content
    )
    # only the accepted run is recorded (index_repository runs are jobs); the refused ones left nothing
    assert [(j.repo_path, j.status) for j in jobs.jobs] == [(str(repo), "completed")]
    assert len((await _list(mcp_client, project_id)).repositories) == 1


async def test_remove_is_refused_while_a_job_is_active(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    await _index(mcp_client, repo, project_id)
    assert app.worker is not None
    await app.worker.stop()  # the job stays pending
    app.worker = None
    start = StartIndexingResult.model_validate(
        (
            await mcp_client.call_tool("start_indexing_background", {"repo_path": str(repo), "project_id": project_id})
        ).structured_content
    )
    listed = (await _list(mcp_client, project_id)).repositories
    assert listed[0].active_job_id == start.job_id and listed[0].active_job_status == "pending"
    with pytest.raises(ToolError, match=rf"has an active indexing job {start.job_id} \(pending\); cancel it"):
        await mcp_client.call_tool("remove_repository", {"repository": str(repo), "project_id": project_id})
    await mcp_client.call_tool("cancel_indexing_background", {"job_id": start.job_id})
    removed = await mcp_client.call_tool("remove_repository", {"repository": str(repo), "project_id": project_id})
    assert removed.structured_content is not None and removed.structured_content["root_path"] == str(repo)


async def test_the_session_project_is_used_and_the_tools_say_what_they_do(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 1)
    (repo / ".codebase-mcp").mkdir()
    (repo / ".codebase-mcp" / "config.json").write_text(f'{{"project": {{"id": "{project_id}"}}}}')
    async with Client(build_server(app, manage_app=False), mode="legacy") as client:  # a session-keeping client
        await client.call_tool("set_working_directory", {"directory": str(repo)})
        await client.call_tool("index_repository", {"repo_path": str(repo)})
        listed = RepositoryList.model_validate((await client.call_tool("list_repositories", {})).structured_content)
    assert listed.project_id == project_id and [r.root_path for r in listed.repositories] == [str(repo)]

    tools = {t.name: t for t in await mcp_client.list_tools()}
    assert tools["list_repositories"].annotations is not None and tools["list_repositories"].annotations.read_only_hint
    remove = tools["remove_repository"]
    assert remove.annotations is not None and remove.annotations.destructive_hint
    assert "name, root path or id" not in (remove.description or "")  # the parameter says it, described
    assert "absolute root path" in remove.input_schema["properties"]["repository"]["description"]


async def test_indexing_an_empty_folder_says_so(mcp_client: Client[Any], tmp_path: Path, project_id: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "data.bin").write_bytes(bytes(range(256)) * 8)
    result = await mcp_client.call_tool("index_repository", {"repo_path": str(empty), "project_id": project_id})
    assert result.structured_content is not None
    notice = result.structured_content["notice"]
    assert notice.startswith(f"no indexable files in {empty} (skipped: 1 binary)") and "nothing is searchable" in notice
    full = make_python_repo(tmp_path / "full", 1)
    done = await mcp_client.call_tool("index_repository", {"repo_path": str(full), "project_id": project_id})
    assert done.structured_content is not None and done.structured_content["notice"] is None
