"""Connections are spent only where there is interest: budget, idle pools, project limit, clear errors."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from server.db.budget import ConnectionBudget, ConnectionLimitError
from server.db.cluster import Cluster, with_database
from server.db.embedded import RunningServer
from server.db.registry import ProjectLimitError, Registry
from tests.conftest import EMBEDDER_NAME

pytestmark = pytest.mark.integration


async def test_budget_caps_connections_and_gets_them_back(pg_server: RunningServer) -> None:
    budget = ConnectionBudget(2, wait_seconds=0.3)
    dsn = pg_server.dsn("postgres")
    first, second = await budget.connect(dsn), await budget.connect(dsn)
    assert budget.in_use == 2
    with pytest.raises(ConnectionLimitError, match="MAX_DB_CONNECTIONS=2"):
        await budget.connect(dsn)
    await first.close()
    third = await budget.connect(dsn)  # a closed connection gives its place back
    second.terminate()  # so does a terminated one
    await asyncio.sleep(0)
    assert budget.in_use == 1
    waiting = asyncio.create_task(ConnectionBudget.connect(budget, dsn))
    await third.close()
    fourth = await asyncio.wait_for(waiting, 5)
    await fourth.close()
    await asyncio.sleep(0.01)  # termination listeners run on the next loop iterations
    assert (budget.in_use, budget.peak, budget.refused) == (0, 2, 1)


async def test_server_refusals_become_clear_errors(pg_server: RunningServer) -> None:
    admin = await asyncpg.connect(pg_server.dsn("postgres"))
    role = f"lim_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    try:
        budget = ConnectionBudget(10)
        dsn = pg_server.dsn("postgres").replace("postgresql://postgres@", f"postgresql://{role}@")
        held = await budget.connect(dsn)
        with pytest.raises(ConnectionLimitError, match="PostgreSQL refused a new connection"):
            await budget.connect(dsn)
        assert budget.in_use == 1  # the refused one gave its place back
        await held.close()
    finally:
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_idle_pools_shrink_to_nothing_and_close(pg_server: RunningServer) -> None:
    dsn = pg_server.dsn("postgres")
    cluster = Cluster(dsn, with_database(dsn, "codebase_mcp_registry"), idle_seconds=0.5, close_after=0.5)
    try:
        pool = await cluster.pool("postgres", vector=False)
        assert await pool.fetchval("SELECT 1") == 1
        assert cluster.open_pools() == {"postgres": 1}
        assert cluster.budget.in_use == 1
        await asyncio.sleep(1.6)  # asyncpg closes connections idle longer than idle_seconds
        assert cluster.open_pools() == {"postgres": 0} and cluster.budget.in_use == 0
        assert await cluster.reap_idle() == ["postgres"]
        assert cluster.open_pools() == {}
        again = await cluster.pool("postgres", vector=False)  # comes back on demand
        assert again is not pool and await again.fetchval("SELECT 2") == 2
        async with cluster.probe("postgres") as conn:  # short-lived: no pool, closed at once
            assert await conn.fetchval("SELECT 3") == 3
        await asyncio.sleep(0.01)
        assert cluster.budget.in_use == 1
    finally:
        await cluster.close()
    await asyncio.sleep(0.01)
    assert cluster.budget.in_use == 0


async def test_max_projects_refuses_new_projects_only(cluster: Cluster, registry: Registry) -> None:
    existing = len(await registry.list_projects())
    limited = Registry(cluster, embedder_name=EMBEDDER_NAME, embedding_dim=384, max_projects=existing + 1)
    first = await limited.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
    with pytest.raises(ProjectLimitError, match=f"MAX_PROJECTS={existing + 1}"):
        await limited.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
    assert (await limited.get_or_create(first.id)) == first  # existing projects keep working
    assert len(await registry.list_projects()) == existing + 1
