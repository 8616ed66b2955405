"""Two `codebase-mcp watch` processes on one repository: one lease holder, a takeover after kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.db.cluster import database_of
from server.db.locks import WATCH_LEASE
from server.db.registry import Project
from server.embeddings import Embedder
from server.settings import Settings
from server.watch.lease import APP_NAME_PREFIX, lease_key
from tests.e2e.conftest import Connect, Processes, wait_for
from tests.repos import make_python_repo

LEASE_HOLDERS = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture
async def indexing_app(e2e_env: dict[str, str], tmp_path: Path, local_embedder: Embedder) -> AsyncIterator[App]:
    """This test's own App (its registry), running a worker: it indexes what the watchers enqueue."""
    settings = Settings(
        _env_file=None,
        database_url=e2e_env["DATABASE_URL"],
        registry_database_url=e2e_env["REGISTRY_DATABASE_URL"],
        data_dir=tmp_path / "data",
        worker_poll_interval_seconds=1.0,
        progress_update_interval_seconds=0.1,
    )
    app = App(settings, embedder=local_embedder)
    await app.start(workers=True)
    yield app
    await app.close()


async def _holders(conn: asyncpg.Connection, database: str, root: Path) -> list[str]:
    """Who holds the repository's lease (leases live in the registry database, `conn`'s)."""
    rows = await conn.fetch(LEASE_HOLDERS, WATCH_LEASE, lease_key(database, str(root)) & 0xFFFFFFFF)
    return [r["application_name"] for r in rows]


async def test_one_process_watches_a_repository_and_another_takes_over_when_it_dies(
    e2e_env: dict[str, str], processes: Processes, indexing_app: App, tmp_path: Path, connect_db: Connect
) -> None:
    app = indexing_app
    repo = make_python_repo(tmp_path / "repo", 3).resolve()
    project: Project = (await app.resolver.resolve("lease-test", None, create=True)).project
    await app.index(project, repo)
    pool = await app.cluster.pool(project.database_name) if app.cluster else None
    assert pool is not None

    async def settled() -> bool:
        active = await pool.fetchval("SELECT count(*) FROM indexing_jobs WHERE status IN ('pending', 'running')")
        return bool(active == 0)

    async def index_jobs() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM indexing_jobs WHERE kind = 'index'"))

    indexed_once = await index_jobs()
    env = {**e2e_env, "WATCH_LEASE_RETRY_SECONDS": "0.5", "WATCH_DEBOUNCE_MS": "100"}
    first, second = processes.spawn("watch", str(repo), env=env), processes.spawn("watch", str(repo), env=env)
    conn = await connect_db(database_of(e2e_env["REGISTRY_DATABASE_URL"]))

    async def one_holder() -> str | None:
        holders = await _holders(conn, project.database_name, repo)
        return holders[0] if len(holders) == 1 else None

    holder = await wait_for(one_holder, within=120)
    await asyncio.sleep(2.0)  # both keep retrying: still exactly one holder
    assert await _holders(conn, project.database_name, repo) == [holder]
    assert first.alive() and second.alive()
    assert holder.startswith(APP_NAME_PREFIX)
    holder_pid = int(holder.removeprefix(APP_NAME_PREFIX))
    assert holder_pid in (first.pid, second.pid)
    victim, survivor = (first, second) if holder_pid == first.pid else (second, first)

    async def holder_caught_up() -> bool:  # the first holder's catch-up run exists and is over
        return await index_jobs() > indexed_once and await settled()

    await wait_for(holder_caught_up, within=60)
    before = await index_jobs()

    victim.kill()  # SIGKILL: no cleanup, its connection just drops
    taken = await wait_for(one_holder, within=30)
    assert taken == f"{APP_NAME_PREFIX}{survivor.pid}"

    async def caught_up() -> bool:  # the survivor's own catch-up run exists and is over: the edit must be new to it
        return await index_jobs() > before and await settled()

    await wait_for(caught_up, within=60)
    (repo / "pkg" / "mod_0001.py").write_text("def seen_after_the_takeover():\n    return 1\n")

    async def indexed() -> bool:
        content = await pool.fetchval(
            "SELECT string_agg(c.content, '') FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.rel_path = $1",
            "pkg/mod_0001.py",
        )
        return "seen_after_the_takeover" in (content or "")

    await wait_for(indexed, within=60)
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM indexing_jobs ORDER BY created_at")]
    assert kinds.count("index") == before + 1 and kinds[-1] == "refresh"  # the survivor catches up, the edit refreshes
