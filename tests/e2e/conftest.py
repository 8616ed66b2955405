"""Helpers for end-to-end tests: real `codebase-mcp` processes, real clients, real PostgreSQL.

Every test gets a registry database of its own (REGISTRY_DATABASE_URL): the workers of one
test never see the projects, jobs or advisory-lock slots of another, nor of in-process tests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from server.db.cluster import database_of, with_database
from server.mcp.models import StartIndexingResult
from tests.polling import wait_for as wait_for  # re-exported: e2e tests import it from here

ROOT = Path(__file__).resolve().parents[2]
Connect = Callable[[str], Awaitable[asyncpg.Connection]]

# The bearer token of every HTTP server the tests start (one per run).
HTTP_TOKEN = secrets.token_urlsafe(24)
# For every child process: short timings (heartbeat, progress and rescue run in seconds), logs unbuffered.
CHILD_ENV = {
    "HTTP_AUTH_TOKEN": HTTP_TOKEN,
    "HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "STALE_JOB_SECONDS": "5",
    "PROGRESS_UPDATE_INTERVAL_SECONDS": "0.2",
    "CANCELLATION_CHECK_INTERVAL_SECONDS": "1",
    "WORKER_POLL_INTERVAL_SECONDS": "2",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": str(ROOT),  # children run outside the checkout (no .env), installed or not
}
START_TIMEOUT = 90.0  # a cold start imports fastmcp, onnxruntime and the model: slow on a busy 2-core box


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """A `codebase-mcp` subprocess leading its own process group (SIGKILL takes its children too)."""

    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: the server and its chunking processes die without any cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class HttpServer:
    proc: Proc
    port: int
    token: str = HTTP_TOKEN

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> Client[Any]:
        return Client(f"{self.base_url}/mcp", timeout=180, auth=self.token)

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client sending the bearer token."""
        return httpx.AsyncClient(base_url=self.base_url, headers=self.auth_headers, **kwargs)

    async def wait_ready(self) -> None:
        """uvicorn binds only after the lifespan (App.start) has run: an answered request means ready."""

        async def ready() -> bool:
            if not self.proc.alive():
                raise RuntimeError(f"server exited early:\n{self.proc.log_tail()}")
            try:
                async with self.http(timeout=2) as http:
                    return (await http.get("/web/api/projects")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await wait_for(ready, within=START_TIMEOUT, interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"server not ready:\n{self.proc.log_tail()}") from exc


@dataclass
class Processes:
    """Spawns `python -m codebase_mcp ...` (logs to files) and SIGKILLs whatever is left at teardown."""

    env: dict[str, str]
    log_dir: Path
    started: list[Proc] = field(default_factory=list)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        log_path = self.log_dir / f"proc{len(self.started)}-{args[0]}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "codebase_mcp", *args],
                env=env or self.env,
                cwd=self.log_dir,  # not the checkout: a developer's .env must not leak in
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(list(args), log_path, popen)
        self.started.append(proc)
        return proc

    async def http_server(
        self, *extra: str, port: int | None = None, env: dict[str, str] | None = None, token: str | None = None
    ) -> HttpServer:
        port = port or free_port()
        proc = self.spawn("serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port), *extra, env=env)
        server = HttpServer(proc, port, token or (env or self.env).get("HTTP_AUTH_TOKEN", HTTP_TOKEN))
        await server.wait_ready()
        return server

    async def worker(self, env: dict[str, str] | None = None) -> tuple[Proc, str]:
        """A standalone `codebase-mcp worker`, once it runs; returns it with its worker id."""
        proc = self.spawn("worker", env=env)

        async def worker_id() -> str | None:
            if not proc.alive():
                raise RuntimeError(f"worker exited early:\n{proc.log_tail()}")
            for line in proc.log().splitlines():
                if line.startswith("worker ") and line.endswith("running; Ctrl-C to stop"):
                    return line.split()[1]
            return None

        return proc, await wait_for(worker_id, within=START_TIMEOUT, interval=0.2)

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()


def stdio_client(env: dict[str, str], log_file: Path, *, mode: str = "auto") -> Client[Any]:
    """`codebase-mcp serve` over stdio; the transport ends the subprocess when the client closes."""
    transport = StdioTransport(
        sys.executable,
        ["-m", "codebase_mcp", "serve"],
        env=env,
        cwd=str(log_file.parent),
        keep_alive=False,
        log_file=log_file,
    )
    return Client(transport, mode=mode, timeout=60, init_timeout=START_TIMEOUT)


async def start_job(client: Client[Any], repo: Path, project_id: str) -> StartIndexingResult:
    result = await client.call_tool("start_indexing_background", {"repo_path": str(repo), "project_id": project_id})
    return StartIndexingResult.model_validate(result.structured_content)


@pytest.fixture
def e2e_env(server_env: dict[str, str]) -> dict[str, str]:
    """`server_env` (DATABASE_URL over TCP), fast timings, and a registry database of this test's own."""
    env = {**server_env, **CHILD_ENV}
    env["REGISTRY_DATABASE_URL"] = with_database(env["DATABASE_URL"], f"e2e_reg_{uuid.uuid4().hex[:12]}")
    return env


@pytest.fixture
def registry_db(e2e_env: dict[str, str]) -> str:
    return database_of(e2e_env["REGISTRY_DATABASE_URL"])


@pytest.fixture
def processes(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(e2e_env, tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()


@pytest.fixture
async def connect_db(server_env: dict[str, str]) -> AsyncIterator[Connect]:
    """Connections of the test itself (application_name e2e-test), closed at teardown."""
    conns: list[asyncpg.Connection] = []

    async def connect(database: str) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            with_database(server_env["DATABASE_URL"], database), server_settings={"application_name": "e2e-test"}
        )
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        await conn.close()
