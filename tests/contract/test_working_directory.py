"""`set_working_directory` is validated like `repo_path`; a blank project_id is a clear error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.embeddings import Embedder
from server.mcp.server import build_server
from server.settings import Settings

pytestmark = pytest.mark.contract


@pytest.fixture
async def confined(settings: Settings, local_embedder: Embedder, tmp_path: Path) -> AsyncIterator[Client[Any]]:
    root = tmp_path / "root"
    (root / "work").mkdir(parents=True)
    confined_settings = settings.model_copy(update={"allowed_roots": [root], "run_workers_in_server": False})
    application = App(confined_settings, embedder=local_embedder)
    await application.start()
    try:
        async with Client(build_server(application, manage_app=False)) as client:
            yield client
    finally:
        await application.close()


@pytest.mark.parametrize(
    ("directory", "message"),
    [
        ("ROOT/work/../..", "traversal"),
        ("ROOT/work/%2e%2e/%2e%2e", "traversal"),
        ("/etc", "outside the allowed roots"),
        ("/proc/self/root/ROOT/work", "under /proc"),
        ("/proc/self/cwd", "under /proc"),
        ("ROOT/work\x00/x", "NUL"),
        ("ROOT/work/\nx", "control characters"),
        ("ROOT/" + "a" * 10_000, "directory"),
        ("relative/path", "must be absolute"),
        ("   ", "must be absolute|must not be empty"),
        ("ROOT/missing", "does not exist"),
    ],
)
async def test_bad_directories_get_clear_errors(
    confined: Client[Any], tmp_path: Path, directory: str, message: str
) -> None:
    raw = directory.replace("ROOT", str(tmp_path / "root"))
    with pytest.raises(ToolError, match=message) as caught:
        await confined.call_tool("set_working_directory", {"directory": raw})
    text = str(caught.value)
    assert text.startswith(("directory", "Path traversal")) and "repo_path" not in text
    assert len(text) < 1000  # a 10 kB path is not echoed back in full


async def test_repo_path_under_proc_is_refused(mcp_client: Client[Any]) -> None:
    """A /proc/<pid>/root link can lead into another container's filesystem."""
    with pytest.raises(ToolError, match="under /proc"):
        await mcp_client.call_tool("start_indexing_background", {"repo_path": "/proc/1/root/etc"})


async def test_config_above_the_allowed_root_is_not_read(confined: Client[Any], tmp_path: Path) -> None:
    above = tmp_path / ".codebase-mcp" / "config.json"  # outside the root, above it
    above.parent.mkdir()
    above.write_text(json.dumps({"project": {"id": "planted-project"}}))
    result = await confined.call_tool("set_working_directory", {"directory": str(tmp_path / "root" / "work")})
    assert result.structured_content is not None
    assert result.structured_content["project_id"] != "planted-project"
    assert result.structured_content["config_path"] is None
    inside = tmp_path / "root" / ".codebase-mcp" / "config.json"
    inside.parent.mkdir()
    inside.write_text(json.dumps({"project": {"id": "root-project"}}))
    result = await confined.call_tool("set_working_directory", {"directory": str(tmp_path / "root" / "work")})
    assert result.structured_content is not None
    assert result.structured_content["project_id"] == "root-project"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
async def test_blank_project_id_is_an_error_not_the_default(mcp_client: Client[Any], blank: str) -> None:
    with pytest.raises(ToolError, match=r"project_id .* is blank"):
        await mcp_client.call_tool("list_indexing_jobs", {"project_id": blank})
