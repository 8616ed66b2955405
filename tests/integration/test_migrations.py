"""Migrations, constraints and NOTIFY triggers on a real project database."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

import migrations
from server.db.registry import Registry


async def _names(conn: asyncpg.Connection) -> tuple[set[str], set[str]]:
    idx = {
        r["indexname"]
        for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'idx_indexing_jobs_%'")
    }
    trg = {
        r["tgname"]
        for r in await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'indexing_jobs%'"
        )
    }
    return idx, trg


async def test_upgrade_downgrade_upgrade_cycle(registry: Registry, project_id: str) -> None:
    project = await registry.get_or_create(project_id)
    dsn = registry.cluster.dsn_for(project.database_name)
    conn = await asyncpg.connect(dsn)
    try:
        idx, trg = await _names(conn)
        assert len(idx) >= 4 and {"indexing_jobs_notify_insert", "indexing_jobs_notify_update"} <= trg
        assert await conn.fetch("SELECT * FROM indexing_jobs") == []

        await migrations.downgrade(dsn, "project", "p0001")
        assert await _names(conn) == (set(), set())
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("SELECT * FROM indexing_jobs")

        await migrations.upgrade(dsn, "project")
        assert await _names(conn) == (idx, trg)
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == migrations.head_revision("project")
        await migrations.downgrade(dsn, "project", "base")
        assert await conn.fetchval("SELECT to_regclass('chunks')") is None
        await migrations.upgrade(dsn, "project")
        assert await conn.fetchval("SELECT to_regclass('chunks')") is not None
    finally:
        await conn.close()


async def test_at_head_tells_a_migrated_database_from_one_behind(registry: Registry, project_id: str) -> None:
    project = await registry.get_or_create(project_id)
    dsn = registry.cluster.dsn_for(project.database_name)
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrations.at_head(conn, "project")
        await migrations.downgrade(dsn, "project", "p0003")
        assert not await migrations.at_head(conn, "project")
        await registry.upgrade_all()  # not at head: Alembic runs
        assert await migrations.at_head(conn, "project")
        assert await conn.fetchval("SELECT to_regclass('indexing_jobs') IS NOT NULL")
        await migrations.downgrade(dsn, "project", "base")
        assert not await migrations.at_head(conn, "project")  # no alembic_version rows
    finally:
        await conn.close()
    reg = await asyncpg.connect(registry.cluster.registry_dsn)
    try:
        assert await migrations.at_head(reg, "registry")
    finally:
        await reg.close()


async def _insert_job(conn: asyncpg.Connection, **extra: object) -> object:
    cols = {"repo_path": "/tmp/r", "repo_name": "r", "project_id": "p", **extra}
    names = ", ".join(cols)
    params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return await conn.fetchval(f"INSERT INTO indexing_jobs ({names}) VALUES ({params}) RETURNING id", *cols.values())


async def test_check_constraints_reject_bad_values(registry: Registry, project_id: str) -> None:
    project = await registry.get_or_create(project_id)
    conn = await asyncpg.connect(registry.cluster.dsn_for(project.database_name))
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await _insert_job(conn, status="invalid")
        with pytest.raises(asyncpg.CheckViolationError):
            await _insert_job(conn, repo_path="/tmp/a", progress_percentage=101)
        job = await _insert_job(conn, repo_path="/tmp/b")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE indexing_jobs SET progress_percentage = -1 WHERE id = $1", job)
    finally:
        await conn.close()


async def test_trigger_notifies_progress_but_not_heartbeat(registry: Registry, project_id: str) -> None:
    project = await registry.get_or_create(project_id)
    dsn = registry.cluster.dsn_for(project.database_name)
    writer = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await listener.add_listener("indexing_jobs", lambda *a: received.put_nowait(json.loads(a[3])))
    try:
        job = await _insert_job(writer)
        inserted = await asyncio.wait_for(received.get(), 5)
        assert inserted["id"] == str(job) and inserted["op"] == "insert" and inserted["status"] == "pending"

        await writer.execute("UPDATE indexing_jobs SET progress_percentage = 40 WHERE id = $1", job)
        update = await asyncio.wait_for(received.get(), 5)
        assert update["progress"] == 40 and update["version"] == 1
        assert len(json.dumps(update)) < 8000

        await writer.execute("UPDATE indexing_jobs SET heartbeat_at = now() WHERE id = $1", job)
        await writer.execute("UPDATE indexing_jobs SET status = 'running' WHERE id = $1", job)
        nxt = await asyncio.wait_for(received.get(), 5)
        assert nxt["status"] == "running" and nxt["version"] == 2  # the heartbeat sent nothing
        await asyncio.sleep(0.2)
        assert received.empty()
    finally:
        await listener.close()
        await writer.close()
