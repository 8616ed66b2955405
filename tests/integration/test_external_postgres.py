"""An external PostgreSQL with a role that is not a superuser: what is missing is said clearly, nothing is left over."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.app import App
from server.db.cluster import with_database
from server.db.embedded import RunningServer
from server.db.registry import ProvisioningError
from server.embeddings import Embedder
from server.settings import Settings


@pytest.fixture
async def superuser(pg_server: RunningServer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_server.dsn("postgres", tcp=True))
    yield conn
    await conn.close()


async def _role(superuser: asyncpg.Connection, *, createdb: bool) -> str:
    name = f"t_role_{uuid.uuid4().hex[:8]}"
    # TCP connections to the embedded server need a password (scram-sha-256): the role's is its name
    await superuser.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}' {'CREATEDB' if createdb else 'NOCREATEDB'}")
    return name


def _settings(pg_server: RunningServer, role: str, registry: str) -> Settings:
    assert pg_server.tcp_host is not None
    url = f"postgresql://{role}:{role}@{pg_server.tcp_host}:{pg_server.port}/postgres"
    return Settings(_env_file=None, database_url=url, registry_database_url=with_database(url, registry))


async def _databases(superuser: asyncpg.Connection, prefix: str) -> list[str]:
    rows = await superuser.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1 || '%'", prefix)
    return [r["datname"] for r in rows]


async def test_a_role_without_createdb_is_told_to_get_it(
    pg_server: RunningServer, superuser: asyncpg.Connection, local_embedder: Embedder
) -> None:
    role = await _role(superuser, createdb=False)
    registry = f"reg_{uuid.uuid4().hex[:10]}"
    app = App(_settings(pg_server, role, registry), embedder=local_embedder)
    try:
        with pytest.raises(ProvisioningError) as err:
            await app.start(workers=False)
    finally:
        await app.close()
    assert f"{role} may not create database {registry}" in str(err.value)
    assert f"ALTER ROLE {role} CREATEDB" in str(err.value)


async def test_without_pgvector_in_template1_a_new_project_fails_clearly_and_leaves_no_database(
    pg_server: RunningServer, superuser: asyncpg.Connection, local_embedder: Embedder
) -> None:
    role = await _role(superuser, createdb=True)
    registry = f"reg_{uuid.uuid4().hex[:10]}"
    app = App(_settings(pg_server, role, registry), embedder=local_embedder)
    project_id = f"ext-{uuid.uuid4().hex[:8]}"
    try:
        await app.start(workers=False)  # the registry needs no extension: the role creates it
        with pytest.raises(ProvisioningError) as err:
            await app.resolver.resolve(project_id, None, create=True)
        assert await app.registry.list_projects() == []
    finally:
        await app.close()
    message = str(err.value)
    assert f"{role} may not create the pgvector extension" in message
    assert "CREATE EXTENSION vector in database template1" in message
    assert await _databases(superuser, f"cb_proj_{project_id.replace('-', '_')}") == []
    assert await _databases(superuser, registry) == [registry]
