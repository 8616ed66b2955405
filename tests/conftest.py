"""Shared fixtures: one real embedded PostgreSQL (pgvector) for the whole run.

Tests get fresh project databases by using unique project ids; nothing is mocked.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from server.app import App
from server.db.cluster import Cluster
from server.db.embedded import EmbeddedPostgres, RunningServer
from server.db.registry import Registry
from server.embeddings import Embedder, create_embedder
from server.mcp.server import build_server
from server.settings import Settings

EMBEDDER_NAME = "local:all-MiniLM-L6-v2-int8"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cbmcp-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def pg_server(pg_data_dir: Path) -> Iterator[RunningServer]:
    """A real PostgreSQL 18 + pgvector, on a Unix socket and a loopback TCP port."""
    embedded = EmbeddedPostgres(pg_data_dir, port=_free_port(), durable=False)
    running = embedded.ensure_running()
    yield running
    embedded.stop()


@pytest.fixture(scope="session")
def server_env(pg_server: RunningServer, pg_data_dir: Path) -> dict[str, str]:
    """Environment for subprocesses that must use the test server."""
    env = dict(os.environ)
    env["DATABASE_URL"] = pg_server.dsn("postgres", tcp=True)
    env["CODEBASE_MCP_DATA_DIR"] = str(pg_data_dir)
    env.pop("REGISTRY_DATABASE_URL", None)
    return env


@pytest.fixture
async def cluster(pg_server: RunningServer) -> AsyncIterator[Cluster]:
    dsn = pg_server.dsn("postgres")
    c = Cluster(dsn, dsn.replace("/postgres?", "/codebase_mcp_registry?"), min_size=0, max_size=4)
    yield c
    await c.close()


@pytest.fixture
async def registry(cluster: Cluster) -> Registry:
    reg = Registry(cluster, embedder_name=EMBEDDER_NAME, embedding_dim=384)
    await reg.ensure_ready()
    return reg


@pytest.fixture
def project_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def local_embedder() -> Embedder:
    """The real offline model, loaded once per run."""
    return create_embedder("local")


@pytest.fixture
def settings(pg_server: RunningServer, pg_data_dir: Path) -> Settings:
    """Fast timings so push/rescue paths are exercised in seconds."""
    return Settings(
        _env_file=None,
        database_url=pg_server.dsn("postgres"),
        data_dir=pg_data_dir,
        progress_update_interval_seconds=0.1,
        heartbeat_interval_seconds=0.5,
        cancellation_check_interval_seconds=1.0,
        stale_job_seconds=5.0,
        worker_poll_interval_seconds=5.0,
    )


@pytest.fixture
async def app(settings: Settings, local_embedder: Embedder) -> AsyncIterator[App]:
    application = App(settings, embedder=local_embedder)
    await application.start()
    yield application
    await application.close()


@pytest.fixture
async def mcp_client(app: App) -> AsyncIterator[Client[Any]]:
    async with Client(build_server(app, manage_app=False)) as client:
        yield client
