"""A new user's first start: `codebase-mcp serve` (stdio, embedded PostgreSQL) as an MCP client spawns it.

stderr must stay empty (no banner, no "Update available", no warning, no INFO lines) and the
process must never try the network: every proxy variable points at a local server that records
each connection, and an audit hook in the child records every TCP connect and name lookup.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.mcp.models import HealthReport
from tests.e2e.conftest import CHILD_ENV, ROOT, stdio_client
from tests.repos import make_python_repo

NETAUDIT = Path(__file__).parent / "netaudit"
ONNX_UPLOAD_DELAY_SECONDS = 15
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class RecordingProxy:
    port: int
    requests: list[str] = field(default_factory=list)  # first line of each, e.g. "CONNECT pypi.org:443 HTTP/1.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def recording_proxy() -> AsyncIterator[RecordingProxy]:
    """An HTTP proxy that records every connection and refuses to forward anything."""
    proxy = RecordingProxy(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
        except TimeoutError:
            line = b""
        proxy.requests.append(line.decode(errors="replace").strip() or "<connection without a request>")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()


def offline_env(tmp_path: Path, proxy: RecordingProxy, data_dir: Path | None = None) -> dict[str, str]:
    """A user's shell: no DATABASE_URL (embedded PostgreSQL), default LOG_LEVEL, no XDG_RUNTIME_DIR,
    an empty home (no cached FastMCP version), every proxy variable at the recording proxy."""
    dropped = {"DATABASE_URL", "REGISTRY_DATABASE_URL", "LOG_LEVEL", "LOG_FILE", "XDG_RUNTIME_DIR", "NO_PROXY"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in dropped and k.upper() != "NO_PROXY"}
    env.update({k: v for k, v in CHILD_ENV.items() if k != "LOG_LEVEL"})
    env.update(dict.fromkeys(PROXY_VARIABLES, proxy.url))
    home = tmp_path / "home"
    env.update(
        HOME=str(home), XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"), CODEBASE_MCP_DATA_DIR=str(data_dir or tmp_path / "data"),
        PYTHONPATH=f"{NETAUDIT}{os.pathsep}{ROOT}", NETAUDIT_LOG=str(tmp_path / "net.jsonl"),
    )  # fmt: skip
    return env


def network_attempts(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def test_the_proxy_and_the_audit_hook_see_fastmcps_update_check(tmp_path: Path) -> None:
    """The detectors work: FastMCP's own update check, run with the same environment, is caught by both."""
    async with recording_proxy() as proxy:
        env = offline_env(tmp_path, proxy)
        code = "from fastmcp.utilities.version_check import _fetch_latest_version as f; print(f())"
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"  # refused by the proxy
    assert any("pypi.org" in r for r in proxy.requests), proxy.requests
    attempts = network_attempts(tmp_path / "net.jsonl")
    assert any(a["kind"] == "connect" and a["port"] == str(proxy.port) for a in attempts), attempts


async def test_stdio_serve_is_silent_on_stderr_and_never_goes_online(tmp_path: Path, server_data_dir: Path) -> None:
    async with recording_proxy() as proxy:
        env = offline_env(tmp_path, proxy, server_data_dir)
        repo = make_python_repo(tmp_path / "repo", 3)
        stderr_log = tmp_path / "stderr.log"
        try:
            async with stdio_client(env, stderr_log) as client:
                health = HealthReport.model_validate((await client.call_tool("health", {})).structured_content)
                indexed = await client.call_tool("index_repository", {"repo_path": str(repo)})
                found = await client.call_tool("search_code", {"query": "read the JSON settings file"})
                # ONNX Runtime's uploader would first try ~8 s after the model loaded: stay up past that.
                await asyncio.sleep(ONNX_UPLOAD_DELAY_SECONDS)
                await client.call_tool("health", {})
        finally:
            stop = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "codebase_mcp", "db", "stop"],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
    assert health.status == "ok" and health.database.mode == "embedded"
    assert indexed.structured_content is not None and indexed.structured_content["files_indexed"] == 4
    assert found.structured_content is not None and found.structured_content["results"]
    stderr = stderr_log.read_text()
    for noise in ("FastMCP", "Update available", "pip install", "Warning", "WARNING", "INFO"):
        assert noise not in stderr, stderr
    assert stderr == "", stderr
    assert proxy.requests == []
    attempts = network_attempts(tmp_path / "net.jsonl")
    assert attempts == [], attempts  # the embedded server is reached over its Unix socket only
    assert stop.returncode == 0 and stop.stdout.strip() == "stopped", stop.stderr
