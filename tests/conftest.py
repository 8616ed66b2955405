"""Shared fixtures: a real embedded PostgreSQL (pgvector) per test process, real embedders, real MCP clients.

Under pytest-xdist every worker process starts a server of its own (own data directory, own port), so
workers never share a database; tests within a worker get fresh project databases by unique project ids,
and every `app` gets a registry database of its own. Nothing is mocked. See tests/README.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastmcp import Client

from server.app import App
from server.db.cluster import Cluster, with_database
from server.db.embedded import EmbeddedPostgres, EmbeddedPostgresError, RunningServer
from server.db.registry import Registry
from server.embeddings import CODE_EMBEDDER_NAME, Embedder, create_embedder
from server.mcp.server import build_server
from server.settings import Settings
from tests.fakes import FakeEmbedder

EMBEDDER_NAME = CODE_EMBEDDER_NAME  # the product's default local model
TESTS_DIR = Path(__file__).resolve().parent
FOLDER_MARKERS = ("unit", "integration", "contract", "e2e")
# Workers for a plain `python3 -m pytest`: more than the 2 cores, as the tests mostly wait on PostgreSQL,
# subprocesses and sockets (measured: see tests/README.md).
DEFAULT_WORKERS = 3
# Slowest folders first: under xdist the long process tests start at once and short ones fill the gaps.
_FOLDER_ORDER = {"e2e": 0, "contract": 1, "integration": 2, "unit": 3}
# A throwaway server's data lives in RAM when it can: creating and deleting hundreds of small databases
# on a disk mounted with `discard` costs tens of seconds.
_RAM_DIR = Path("/dev/shm")
_RAM_DIR_MIN_FREE = 4 << 30
# Where the run's derived model cache is (set by the main process in pytest_configure).
_MODELS_DIR_ENV = "CODEBASE_MCP_TEST_MODELS_DIR"
_OWN_MODELS_DIR = pytest.StashKey[str]()
# Settings of the throwaway test server only: keep WAL (in RAM) small; checkpoints are cheap without fsync.
_TEST_SERVER_CONF = {"max_wal_size": "128MB", "min_wal_size": "32MB"}


# --- options and collection -----------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Distribute over DEFAULT_WORKERS xdist workers unless told otherwise (`-n N`, `-n 0`, `-p no:xdist`).

    Set here rather than in addopts so that `-p no:xdist` still parses. `--pdb` implies one process.
    """
    if not config.pluginmanager.has_plugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.getoption("numprocesses") is None and not config.getoption("usepdb"):
        config.option.numprocesses = DEFAULT_WORKERS
    if config.getoption("dist") == "no" and config.getoption("numprocesses"):
        config.option.dist = "loadgroup"  # as `load`, but honours xdist_group marks


def pytest_configure(config: pytest.Config) -> None:
    """The run's one cache of the derived s8 model, made by the main process and shared with its xdist workers
    (they inherit the environment) and their child processes: derived once per run, under the product's own
    lock (server/embeddings/derive.py), instead of once per worker and per data directory."""
    if hasattr(config, "workerinput") or os.environ.get(_MODELS_DIR_ENV):
        return
    os.environ[_MODELS_DIR_ENV] = tempfile.mkdtemp(prefix="cbmcp-models-", dir=_scratch_root())
    config.stash[_OWN_MODELS_DIR] = os.environ[_MODELS_DIR_ENV]


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_MODELS_DIR, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
        os.environ.pop(_MODELS_DIR_ENV, None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its folder (tests/unit → `unit`, ...), then order folders slowest first."""
    for item in items:
        folder = _folder_of(item)
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)
    items.sort(key=lambda item: _FOLDER_ORDER.get(_folder_of(item), len(_FOLDER_ORDER)))  # stable sort


def _folder_of(item: pytest.Item) -> str:
    try:
        return item.path.resolve().relative_to(TESTS_DIR).parts[0]
    except (ValueError, IndexError):
        return ""


# --- the server -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def worker_name() -> str:
    """`gw0`, `gw1`, … under pytest-xdist; `main` without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _scratch_root() -> str | None:
    if _RAM_DIR.is_dir() and os.access(_RAM_DIR, os.W_OK) and shutil.disk_usage(_RAM_DIR).free > _RAM_DIR_MIN_FREE:
        return str(_RAM_DIR)
    return None  # the system's temporary directory


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    """This test process's own data directory (child processes of e2e tests use it as CODEBASE_MCP_DATA_DIR)."""
    with tempfile.TemporaryDirectory(prefix=f"cbmcp-test-{worker_name()}-", dir=_scratch_root()) as tmp:
        yield Path(tmp)


@pytest.fixture
def server_data_dir() -> Iterator[Path]:
    """An empty directory for a test's own embedded PostgreSQL data (e.g. a child process starts it).

    Not under `tmp_path`: the server runs as another user when tests run as root, and any pytest session
    starting on the machine re-chmods pytest's shared /tmp/pytest-of-<user> to 0700, locking it out.
    """
    with tempfile.TemporaryDirectory(prefix=f"cbmcp-own-{worker_name()}-", dir=_scratch_root()) as tmp:
        yield Path(tmp) / "data"


async def _configure_test_server(running: RunningServer) -> None:
    conn = await asyncpg.connect(running.dsn("postgres"))
    try:
        for key, value in _TEST_SERVER_CONF.items():
            await conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server(pg_data_dir: Path) -> Iterator[RunningServer]:
    """A real PostgreSQL 18 + pgvector for this test process, on a Unix socket and a loopback TCP port."""
    for attempt in range(5):
        embedded = EmbeddedPostgres(pg_data_dir, port=_free_port(), durable=False)
        try:
            running = embedded.ensure_running()
            break
        except EmbeddedPostgresError:
            if attempt == 4:  # another process took the free port between the probe and the bind
                raise
    asyncio.run(_configure_test_server(running))
    try:
        yield running
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The run's cache of the derived s8 model (EMBEDDING_MODELS_DIR of every test app and child process).

    Tests of a first start or of derivation itself use a directory of their own instead."""
    return Path(os.environ[_MODELS_DIR_ENV])


@pytest.fixture(scope="session")
def server_env(pg_server: RunningServer, pg_data_dir: Path, models_dir: Path) -> dict[str, str]:
    """Environment for subprocesses that must use the test server (and the run's derived model)."""
    env = dict(os.environ)
    env["DATABASE_URL"] = pg_server.dsn("postgres", tcp=True)
    env["CODEBASE_MCP_DATA_DIR"] = str(pg_data_dir)
    env["EMBEDDING_MODELS_DIR"] = str(models_dir)
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


# --- embedders ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_embedder(models_dir: Path) -> Embedder:
    """The real offline model, loaded once per test process."""
    return create_embedder("local", models_dir=models_dir)


@pytest.fixture
async def fake_embedder() -> AsyncIterator[FakeEmbedder]:
    """A fresh deterministic token-hash embedder (tests/fakes.py) for tests whose subject is not embedding."""
    fake = FakeEmbedder()
    yield fake
    await fake.aclose()


@pytest.fixture
def app_embedder(local_embedder: Embedder) -> Embedder:
    """What the `app` fixture embeds with: the real model. A module whose subject is not embedding
    overrides it with `fake_embedder` (see tests/README.md)."""
    return local_embedder


# --- the service ----------------------------------------------------------------------------------


@pytest.fixture
def settings(pg_server: RunningServer, pg_data_dir: Path, models_dir: Path) -> Settings:
    """Fast timings so push/rescue paths are exercised in seconds, and a registry database of this test's
    own: its workers see only its projects, jobs and cluster-wide slots, however many tests ran before."""
    dsn = pg_server.dsn("postgres")
    return Settings(
        _env_file=None,
        database_url=dsn,
        registry_database_url=with_database(dsn, f"test_reg_{uuid.uuid4().hex[:12]}"),
        data_dir=pg_data_dir,
        embedding_models_dir=models_dir,
        progress_update_interval_seconds=0.1,
        heartbeat_interval_seconds=0.5,
        cancellation_check_interval_seconds=1.0,
        stale_job_seconds=5.0,
        worker_poll_interval_seconds=5.0,
    )


@pytest.fixture
async def app(settings: Settings, app_embedder: Embedder) -> AsyncIterator[App]:
    application = App(settings, embedder=app_embedder)
    await application.start()
    yield application
    await application.close()


@pytest.fixture
async def quiet_app(settings: Settings, app_embedder: Embedder) -> AsyncIterator[App]:
    """An App without workers: the test moves the jobs itself."""
    application = App(settings, embedder=app_embedder)
    await application.start(workers=False)
    yield application
    await application.close()


@pytest.fixture
async def mcp_client(app: App) -> AsyncIterator[Client[Any]]:
    async with Client(build_server(app, manage_app=False)) as client:
        yield client
