"""`refresh_index` and the freshness fields of `search_code`, through a real FastMCP Client.

The app of these tests watches nothing: only `refresh_index` can bring the edits in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.embeddings import Embedder
from server.mcp.tools.refresh import RefreshResult
from server.search.models import SearchResponse
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # identifiers are found by full text; the subject is freshness


async def _search(client: Client[Any], query: str, project_id: str) -> SearchResponse:
    result = await client.call_tool("search_code", {"query": query, "project_id": project_id, "context_lines": 0})
    return SearchResponse.model_validate(result.structured_content)


async def _refresh(client: Client[Any], project_id: str, **args: Any) -> RefreshResult:
    result = await client.call_tool("refresh_index", {"project_id": project_id, **args})
    return RefreshResult.model_validate(result.structured_content)


async def test_refresh_index_waits_until_edits_are_searchable(
    mcp_client: Client[Any], tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 3)
    await mcp_client.call_tool("index_repository", {"repo_path": str(repo), "project_id": project_id})
    before = await _search(mcp_client, "Service1", project_id)
    indexed_before = {h.file_path: h.indexed_at for h in before.results}
    assert before.pending_changes is None and indexed_before

    (repo / "pkg" / "mod_0001.py").write_text("class ServiceRenamedOnDisk:\n    pass\n")
    (repo / "pkg" / "mod_0002.py").unlink()
    stale = await _search(mcp_client, "ServiceRenamedOnDisk", project_id)
    assert not any("ServiceRenamedOnDisk" in h.content for h in stale.results)  # not indexed yet

    refreshed = await _refresh(mcp_client, project_id, repo_path=str(repo))
    assert refreshed.waited and len(refreshed.repositories) == 1
    job = refreshed.repositories[0].job
    assert (job.kind, job.status, job.paths) == ("refresh", "completed", None)  # every file re-checked
    assert job.files_indexed == 1  # only the edited file was read again in full

    after = await _search(mcp_client, "ServiceRenamedOnDisk", project_id)
    assert after.results[0].file_path == "pkg/mod_0001.py" and after.results[0].symbol == "ServiceRenamedOnDisk"
    assert after.results[0].indexed_at > indexed_before.get("pkg/mod_0001.py", after.results[0].indexed_at.min)
    assert after.pending_changes is None
    assert "pkg/mod_0002.py" not in {h.file_path for h in (await _search(mcp_client, "Service2", project_id)).results}


async def test_pending_changes_show_until_the_refresh_ran_and_a_second_call_joins_it(
    app: App, mcp_client: Client[Any], tmp_path: Path, project_id: str
) -> None:
    first = make_python_repo(tmp_path / "first", 2)
    second = make_python_repo(tmp_path / "second", 2, prefix="other")
    for repo in (first, second):
        await mcp_client.call_tool("index_repository", {"repo_path": str(repo), "project_id": project_id})
    assert app.worker is not None
    await app.worker.stop()  # nothing runs the refreshes for now
    app.worker = None
    (first / "pkg" / "mod_0000.py").write_text("def queued_but_not_run():\n    return 1\n")

    queued = await _refresh(mcp_client, project_id, wait=False)
    assert not queued.waited and {r.repo_path for r in queued.repositories} == {str(first), str(second)}
    assert all(r.job.status == "pending" and not r.joined for r in queued.repositories)
    pending = (await _search(mcp_client, "load_settings_0", project_id)).pending_changes
    assert pending is not None
    assert set(pending.jobs) == {str(r.job.job_id) for r in queued.repositories}
    assert set(pending.whole_repositories) == {str(first), str(second)}

    queued_first = next(r.job.job_id for r in queued.repositories if r.repo_path == str(first))
    joined = await _refresh(mcp_client, project_id, repo_path=str(first), wait=False)  # still nothing runs it
    assert not joined.waited and joined.repositories[0].joined
    assert joined.repositories[0].job.job_id == queued_first

    await app.start_worker()
    done = await _refresh(mcp_client, project_id, repo_path=str(first))  # joins it, or follows it if it ran
    assert done.waited and done.repositories[0].job.status == "completed"
    found = await _search(mcp_client, "queued_but_not_run", project_id)
    assert found.results[0].file_path == "pkg/mod_0000.py"


async def test_refresh_index_rejects_repositories_that_are_not_indexed(
    mcp_client: Client[Any], tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 1)
    elsewhere = make_python_repo(tmp_path / "elsewhere", 1)
    await mcp_client.call_tool("index_repository", {"repo_path": str(repo), "project_id": project_id})
    with pytest.raises(ToolError, match="is not indexed in project") as err:
        await mcp_client.call_tool("refresh_index", {"project_id": project_id, "repo_path": str(elsewhere)})
    assert str(repo) in str(err.value)  # the message lists what is indexed
    with pytest.raises(ToolError, match="must be absolute"):
        await mcp_client.call_tool("refresh_index", {"project_id": project_id, "repo_path": "relative/path"})
