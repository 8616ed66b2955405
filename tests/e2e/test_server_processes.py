"""`codebase-mcp serve` as a real process: stdio with both protocol eras, external and embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastmcp import Client

from server.mcp.models import HealthReport
from tests.e2e.conftest import CHILD_ENV, Connect, stdio_client
from tests.polling import wait_for


async def _health(client: Client[Any]) -> HealthReport:
    return HealthReport.model_validate((await client.call_tool("health", {})).structured_content)


async def test_stdio_health_with_current_and_legacy_protocol(
    e2e_env: dict[str, str], registry_db: str, tmp_path: Path
) -> None:
    async def check(mode: str) -> tuple[str | None, HealthReport]:
        async with stdio_client(e2e_env, tmp_path / f"stdio-{mode}.log", mode=mode) as client:
            return client.protocol_version, await _health(client)

    (modern_version, modern), (legacy_version, legacy) = await asyncio.gather(check("auto"), check("legacy"))
    assert modern_version == "2026-07-28"
    assert legacy_version == "2025-11-25"
    for report in (modern, legacy):
        assert report.status == "ok"
        assert report.database.registry_database == registry_db
        assert report.database.pgvector_version
        assert report.worker_id is not None  # stdio servers run workers by default
    assert modern.worker_id != legacy.worker_id  # two processes, two workers


async def test_database_url_over_tcp_is_external_mode(
    e2e_env: dict[str, str], registry_db: str, tmp_path: Path, connect_db: Connect
) -> None:
    assert e2e_env["DATABASE_URL"].startswith("postgresql://postgres:")  # TCP needs the password
    assert "@127.0.0.1:" in e2e_env["DATABASE_URL"]
    async with stdio_client(e2e_env, tmp_path / "stdio.log") as client:
        report = await _health(client)
        conn = await connect_db(registry_db)
        addresses = await conn.fetch(
            "SELECT DISTINCT host(client_addr) AS addr FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'codebase-mcp'",
            registry_db,
        )
    assert report.database.mode == "external"
    assert [r["addr"] for r in addresses] == ["127.0.0.1"]  # the server's pool talks TCP, not the socket


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg18" / "postmaster.pid").read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_without_database_url_one_embedded_server_is_started_and_shared(
    tmp_path: Path, server_data_dir: Path
) -> None:
    data_dir = server_data_dir
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REGISTRY_DATABASE_URL")}
    env.update(CHILD_ENV, CODEBASE_MCP_DATA_DIR=str(data_dir))
    repo = tmp_path / "work"
    repo.mkdir()
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first, second = (stdio_client(env, log) for log in logs)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # Both processes start at once: the file lock lets exactly one of them run initdb and start.
            entered = await asyncio.gather(
                *(stack.enter_async_context(c) for c in (first, second)), return_exceptions=True
            )
            for outcome in entered:
                if isinstance(outcome, BaseException):
                    raise outcome
            pid = _postmaster_pid(data_dir)
            one, two = await asyncio.gather(_health(first), _health(second))
            assert one.database.mode == two.database.mode == "embedded"
            assert one.worker_id != two.worker_id
            assert one.database.projects == 0
            # A project created through one process is visible to the other: same server, same registry.
            await first.call_tool("set_working_directory", {"directory": str(repo)})
            assert (await _health(second)).database.projects == 1
            assert _postmaster_pid(data_dir) == pid and _alive(pid)
        starts = [log.read_text().count("starting embedded PostgreSQL") for log in logs]
        assert sorted(starts) == [0, 1], starts
    finally:
        stop = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "codebase_mcp", "db", "stop"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert stop.returncode == 0 and stop.stdout.strip() == "stopped", stop.stderr

    async def postmaster_gone() -> bool:  # pg_ctl returns as the pid file goes, a moment before the exit
        return not _alive(pid)

    await wait_for(postmaster_gone, within=10)
    assert not (data_dir / "pg18" / "postmaster.pid").exists()
