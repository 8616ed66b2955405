"""Project databases are clones of a migrated, sealed template (server/db/templates.py)."""

from __future__ import annotations

import itertools
import json
import uuid

import asyncpg
import pytest

import migrations
from server.db.cluster import Cluster
from server.db.names import quote_ident
from server.db.registry import Registry
from server.db.templates import template_name

# A dimension of each test's own: its template is not the one every other test in this process clones.
_DIMENSIONS = itertools.count(16 + uuid.uuid4().int % 1000, 3)


@pytest.fixture
def dimension() -> int:
    return next(_DIMENSIONS)


async def _template(admin: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await admin.fetchrow("SELECT datallowconn FROM pg_database WHERE datname = $1", name)


async def _schema_of(cluster: Cluster, database: str) -> tuple[bool, int, dict[str, object]]:
    conn = await asyncpg.connect(cluster.dsn_for(database))
    try:
        dim = await conn.fetchval(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
        embedder = json.loads(await conn.fetchval("SELECT value FROM project_config WHERE key = 'embedder'"))
        return await migrations.at_head(conn, "project"), dim, embedder
    finally:
        await conn.close()


async def test_projects_are_cloned_from_one_sealed_template(cluster: Cluster, dimension: int) -> None:
    reg = Registry(cluster, embedder_name="test:template", embedding_dim=dimension)
    name = template_name(dimension)
    assert name is not None and name.endswith(f"_{dimension}")
    first = await reg.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
    second = await reg.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
    admin = await asyncpg.connect(cluster.server_dsn)
    try:
        template = await _template(admin, name)
        assert template is not None and template["datallowconn"] is False  # sealed: nobody can connect
        with pytest.raises(asyncpg.PostgresError, match="not currently accepting connections"):
            await asyncpg.connect(cluster.dsn_for(name))
        for project in (first, second):
            assert await _schema_of(cluster, project.database_name) == (
                True, dimension, {"name": "test:template", "dimension": dimension},
            )  # fmt: skip
        # a clone is a database of its own: a row in one is not in the other
        one = await asyncpg.connect(cluster.dsn_for(first.database_name))
        try:
            await one.execute("INSERT INTO indexing_jobs (repo_path, repo_name, project_id) VALUES ('/r', 'r', 'p')")
        finally:
            await one.close()
        two = await asyncpg.connect(cluster.dsn_for(second.database_name))
        try:
            assert await two.fetchval("SELECT count(*) FROM indexing_jobs") == 0
        finally:
            await two.close()
    finally:
        await admin.close()


async def test_a_template_left_unsealed_by_a_crash_is_built_again(cluster: Cluster, dimension: int) -> None:
    name = template_name(dimension)
    assert name is not None
    admin = await asyncpg.connect(cluster.server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")  # created, never migrated nor sealed
        reg = Registry(cluster, embedder_name="test:template", embedding_dim=dimension)
        project = await reg.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
        assert (await _schema_of(cluster, project.database_name))[:2] == (True, dimension)
        template = await _template(admin, name)
        assert template is not None and template["datallowconn"] is False
    finally:
        await admin.close()


async def test_building_a_template_drops_those_of_other_revisions(cluster: Cluster, dimension: int) -> None:
    name = template_name(dimension)
    assert name is not None
    stale, other_dimension = f"cb_template_p0000_{dimension}", f"cb_template_p0000_{dimension + 1}"
    admin = await asyncpg.connect(cluster.server_dsn)
    try:
        for old in (stale, other_dimension):
            await admin.execute(f"CREATE DATABASE {quote_ident(old)}")
        reg = Registry(cluster, embedder_name="test:template", embedding_dim=dimension)
        await reg.get_or_create(f"t-{uuid.uuid4().hex[:10]}")
        assert await _template(admin, name) is not None
        assert await _template(admin, stale) is None
        assert await _template(admin, other_dimension) is not None  # another embedder's: kept
        await admin.execute(f"DROP DATABASE {quote_ident(other_dimension)}")
    finally:
        await admin.close()
