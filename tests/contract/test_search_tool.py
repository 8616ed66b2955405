"""The `search_code` tool through a real FastMCP Client, on the real database and embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.mcp.server import build_server
from server.search.models import SearchResponse
from tests.repos import write_files

FILES = {
    "app/retry.py": """
        import time


        def call_with_backoff(fn, attempts=4):
            # Retry a failing call, doubling the pause after each failure.
            pause = 0.1
            for attempt in range(attempts):
                try:
                    return fn()
                except IOError:
                    time.sleep(pause)
                    pause *= 2
            raise TimeoutError("gave up")
        """,
    "app/settings.py": """
        import json


        class SettingsLoader:
            def load(self, path):
                # Parse the JSON settings file.
                with open(path) as fh:
                    return json.load(fh)
        """,
    "ui/format.ts": """
        export function formatBytes(n: number): string {
          // 1536 -> "1.5 KB"
          const units = ["B", "KB", "MB", "GB"];
          let i = 0;
          while (n >= 1024 && i < units.length - 1) {
            n /= 1024;
            i++;
          }
          return `${n.toFixed(1)} ${units[i]}`;
        }
        """,
}


@pytest.fixture
async def indexed(app: App, tmp_path: Path, project_id: str) -> Path:
    repo = write_files(tmp_path / "toolbox", FILES)
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    await app.index(project, repo)
    return repo


async def search(client: Client[Any], **args: Any) -> SearchResponse:
    result = await client.call_tool("search_code", args)
    return SearchResponse.model_validate(result.structured_content)


async def test_schema(mcp_client: Client[Any]) -> None:
    tool = next(t for t in await mcp_client.list_tools() if t.name == "search_code")
    assert tool.output_schema is not None
    assert {"results", "mode", "embedding_coverage", "notice"} <= set(tool.output_schema["properties"])
    props = tool.input_schema["properties"]
    assert set(props) == {
        "query", "project_id", "repository", "language", "path_glob", "limit", "context_lines", "scope",
    }  # fmt: skip
    assert props["scope"]["enum"] == ["all", "code", "tests", "docs"] and props["scope"]["default"] == "all"
    assert tool.input_schema["required"] == ["query"]
    assert (props["limit"]["minimum"], props["limit"]["maximum"], props["limit"]["default"]) == (1, 50, 10)
    assert props["context_lines"]["default"] == 2


async def test_every_parameter(mcp_client: Client[Any], indexed: Path, project_id: str) -> None:
    response = await search(mcp_client, query="retry a failing call with a growing pause", project_id=project_id)
    assert response.project_id == project_id and response.mode == "hybrid"
    assert response.embedding_coverage == 1.0 and response.notice is None
    hit = response.results[0]
    assert (hit.file_path, hit.symbol, hit.kind, hit.language) == ("app/retry.py", "call_with_backoff", "function",
                                                                   "python")  # fmt: skip
    assert hit.absolute_path == str(indexed.resolve() / "app" / "retry.py")
    assert hit.repository_name == "toolbox" and hit.start_line == 4 and hit.end_line == 13
    assert hit.content.startswith("def call_with_backoff(fn, attempts=4):")
    assert hit.context_before == ["", ""] and hit.context_after == [] and hit.context_source == "file"
    assert hit.scores.cosine is not None and hit.score > 0

    limited = await search(mcp_client, query="json", project_id=project_id, limit=1, context_lines=0)
    assert len(limited.results) == 1 and limited.results[0].context_before == []
    wide = await search(mcp_client, query="load settings", project_id=project_id, context_lines=5)
    settings_hit = next(h for h in wide.results if h.symbol == "SettingsLoader.load")
    assert settings_hit.context_before == ["import json", "", "", "class SettingsLoader:"]

    typescript = await search(mcp_client, query="format a size", project_id=project_id, language="typescript")
    assert [h.symbol for h in typescript.results] == ["formatBytes"]
    in_app = await search(mcp_client, query="format a size", project_id=project_id, path_glob="app/**")
    assert in_app.results and all(h.file_path.startswith("app/") for h in in_app.results)
    by_repo = await search(mcp_client, query="SettingsLoader", project_id=project_id, repository="toolbox")
    assert by_repo.identifier_query and by_repo.results[0].symbol == "SettingsLoader"
    by_id = await search(mcp_client, query="SettingsLoader", project_id=project_id,
                         repository=by_repo.results[0].repository_id)  # fmt: skip
    assert by_id.results == by_repo.results


async def test_project_from_the_session(app: App, indexed: Path, project_id: str) -> None:
    """Without project_id the session's working directory picks the project (its config.json).
    Legacy protocol: on 2026-07-28 each request is its own connection, so there is no session."""
    config = indexed / ".codebase-mcp" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"project": {"id": project_id}}))
    async with Client(build_server(app, manage_app=False), mode="legacy") as client:
        await client.call_tool("set_working_directory", {"directory": str(indexed)})
        response = await search(client, query="formatBytes")
    assert response.project_id == project_id and response.results[0].symbol == "formatBytes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"query": ""}, "query is empty"),
        ({"query": "  \n\t "}, "query is empty"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 51}, "limit"),
        ({"query": "x", "context_lines": -1}, "context_lines"),
        ({"query": "x", "context_lines": 21}, "context_lines"),
        ({"query": "x", "repository": "missing-repo"}, "unknown repository 'missing-repo'"),
        ({"query": "x", "path_glob": "src/[abc"}, "path_glob"),
        ({"query": "x", "scope": "examples"}, "scope"),
    ],
)
async def test_invalid_arguments(
    mcp_client: Client[Any], indexed: Path, project_id: str, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await mcp_client.call_tool("search_code", {"project_id": project_id, **args})


async def test_unknown_and_unindexed_projects(mcp_client: Client[Any], app: App, project_id: str) -> None:
    with pytest.raises(ToolError, match=f"unknown project '{project_id}'"):
        await mcp_client.call_tool("search_code", {"query": "x", "project_id": project_id})
    with pytest.raises(ToolError, match="project"):
        await mcp_client.call_tool("search_code", {"query": "x", "project_id": "Not A Valid Id!"})
    await app.resolver.resolve(project_id, None, create=True)
    with pytest.raises(ToolError, match="index it first with"):
        await mcp_client.call_tool("search_code", {"query": "x", "project_id": project_id})
