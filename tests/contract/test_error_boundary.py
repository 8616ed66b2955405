"""The error middleware through a real FastMCP Client: what a client sees when a call fails."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import pytest
from fastmcp import Client
from mcp import MCPError

from server import __version__
from server.app import App
from server.jobs.models import IndexingJobCreate
from server.mcp.server import build_server

REF = r"internal error \(ref ([0-9a-f]{8})\)"


async def _error(client: Client[Any], tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args, raise_on_error=False)
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert "Error calling tool" not in text and "errors.pydantic.dev" not in text
    return text


async def test_server_reports_the_product_version(mcp_client: Client[Any]) -> None:
    assert mcp_client.server_info is not None
    assert (mcp_client.server_info.name, mcp_client.server_info.version) == ("codebase-mcp", __version__)


async def test_every_tool_parameter_is_described(mcp_client: Client[Any]) -> None:
    tools = await mcp_client.list_tools()
    assert {t.name for t in tools} >= {"health", "set_working_directory", "index_repository", "search_code",
                                       "start_indexing_background", "get_indexing_status", "watch_indexing",
                                       "cancel_indexing_background", "list_indexing_jobs"}  # fmt: skip
    undescribed = [
        f"{tool.name}.{name}"
        for tool in tools
        for name, prop in tool.input_schema.get("properties", {}).items()
        if not str(prop.get("description", "")).strip()
    ]
    assert undescribed == []
    assert all((t.description or "").strip() for t in tools)


async def test_force_reindex_says_what_it_does(mcp_client: Client[Any]) -> None:
    for tool in await mcp_client.list_tools():
        if "force_reindex" in tool.input_schema.get("properties", {}):
            text = tool.input_schema["properties"]["force_reindex"]["description"]
            assert "re-chunk every file" in text and "embedding cache" in text


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("list_indexing_jobs", {"limit": 500}, "limit: must be between 1 and 200 (got 500)"),
        ("list_indexing_jobs", {"limit": "ten"}, "limit: must be an integer (got 'ten')"),
        ("search_code", {"query": "x", "limit": 500}, "limit: must be between 1 and 50 (got 500)"),
        ("search_code", {"query": ["x"]}, "query: must be a string (got ['x'])"),
        ("search_code", {"query": "a\x00b"}, "query: must not contain NUL characters (got 'a\\x00b')"),
        ("get_indexing_status", {}, "job_id: required"),
        ("cancel_indexing_background", {"job_id": str(uuid.uuid4()), "force": True},
         "force: unknown parameter; this tool takes: job_id, project_id"),
        ("list_indexing_jobs", {"status": "done"},
         "status: must be one of: pending, running, completed, failed, cancelled (got 'done')"),
        ("set_working_directory", {"directory": "src"},
         "directory: must be absolute, e.g. /home/alice/src/app ('~' is not expanded) (got 'src')"),
        ("start_indexing_background", {"repo_path": "/tmp", "force_reindex": "sometimes"},
         "force_reindex: must be true or false (got 'sometimes')"),
    ],
)  # fmt: skip
async def test_validation_errors_are_one_line_per_field(
    mcp_client: Client[Any], tool: str, args: dict[str, Any], expected: str
) -> None:
    assert await _error(mcp_client, tool, args) == expected


async def test_user_errors_pass_as_they_are(mcp_client: Client[Any], project_id: str) -> None:
    text = await _error(mcp_client, "list_indexing_jobs", {"project_id": project_id})
    assert text.startswith(f"unknown project '{project_id}'")
    assert (await _error(mcp_client, "get_indexing_status", {"job_id": "x"})).startswith("invalid job_id 'x'")


async def test_unexpected_failures_get_a_reference_and_a_logged_traceback(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    mcp = build_server(app, manage_app=False)

    @mcp.tool
    async def broken() -> str:
        """Fails like a bug would."""
        return str({"a": 1}["missing-key"])

    @mcp.tool
    async def misbuilt() -> str:
        """Builds one of our models from bad data."""
        IndexingJobCreate(repo_path="/", repo_name="", project_id="p")
        return "unreachable"

    @mcp.resource("broken://{x}")
    async def broken_resource(x: str) -> str:
        """Fails like a bug would."""
        raise RuntimeError(f"resource bug {x}")

    async with Client(mcp) as client:
        with caplog.at_level(logging.INFO):
            text = await _error(client, "broken", {})
            found = re.fullmatch(REF + "; the server log has the details", text)
            assert found is not None and "missing-key" not in text
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert [found.group(1) in r.getMessage() for r in errors] == [True]  # logged once, by us
            assert errors[0].exc_info is not None and errors[0].exc_info[0] is KeyError

            assert await _error(client, "misbuilt", {}) == "repo_name: must not be empty"

            with pytest.raises(MCPError, match=REF):
                await client.read_resource("broken://1")
            with pytest.raises(MCPError, match="invalid job_id 'zzz'"):
                await client.read_resource("indexing-job://zzz")
            with pytest.raises(MCPError, match=f"job {uuid.UUID(int=7)} not found"):
                await client.read_resource(f"indexing-job://{uuid.UUID(int=7)}")

            app.settings.debug = True
            shown = await _error(client, "broken", {})
            assert re.fullmatch(REF + r": KeyError: 'missing-key'; the server log has the details", shown)
    assert not [r for r in caplog.records if r.getMessage().startswith("Error calling tool")]
