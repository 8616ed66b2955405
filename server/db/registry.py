"""The project registry and provisioning of one database per project."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

import migrations
from server.db import templates
from server.db.cluster import Cluster, database_of, with_database
from server.db.names import database_name_for, quote_ident, validate_database_name, validate_project_id
from server.errors import UserError
from server.indexer import vectorstore

log = logging.getLogger(__name__)

_PROVISION_LOCK = 0x636D6370  # advisory lock key ("cmcp") serialising DDL across processes


class UnknownProjectError(UserError, LookupError):
    pass


class EmbedderMismatchError(UserError, RuntimeError):
    pass


class ProjectLimitError(UserError, RuntimeError):
    """MAX_PROJECTS reached: no new project database is created."""


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    database_name: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Project:
        meta = row["metadata"]
        return cls(
            id=row["id"],
            name=row["name"],
            database_name=row["database_name"],
            created_at=row["created_at"],
            metadata=json.loads(meta) if isinstance(meta, str) else dict(meta or {}),
        )


class ProvisioningError(UserError, RuntimeError):
    """A database or the pgvector extension cannot be created; the message says what to change on the server."""


def _role(dsn: str) -> str:
    return urlsplit(dsn).username or "the role in DATABASE_URL"


async def _create_database(conn: asyncpg.Connection, name: str, dsn: str) -> bool:
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        return True
    except asyncpg.DuplicateDatabaseError:
        return False
    except asyncpg.InsufficientPrivilegeError as exc:
        role = _role(dsn)
        raise ProvisioningError(
            f"{role} may not create database {name} ({exc}); codebase-mcp keeps a registry database and one "
            f"database per project: as a superuser, run ALTER ROLE {role} CREATEDB"
        ) from exc


async def _create_vector_extension(conn: asyncpg.Connection, database: str, dsn: str) -> None:
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ProvisioningError(
            f"{_role(dsn)} may not create the pgvector extension in database {database} ({exc}); pgvector is not "
            "a trusted extension: as a superuser, run CREATE EXTENSION vector in database template1 once (every "
            "database created later has it), or connect as a superuser"
        ) from exc
    except (asyncpg.FeatureNotSupportedError, asyncpg.UndefinedFileError) as exc:
        raise ProvisioningError(
            f"the PostgreSQL server has no pgvector extension ({exc}); install it on the server (Debian/Ubuntu: "
            "apt install postgresql-<major>-pgvector; see https://github.com/pgvector/pgvector#installation)"
        ) from exc


class Registry:
    def __init__(
        self,
        cluster: Cluster,
        *,
        embedder_name: str,
        embedding_dim: int,
        max_projects: int | None = None,
        replaces: Sequence[str] = (),
    ) -> None:
        """``replaces``: embedders whose projects this one takes over (``check_embedder``)."""
        self.cluster = cluster
        self.max_projects = max_projects
        self.embedder_name = embedder_name
        self.embedding_dim = embedding_dim
        self.replaces = tuple(replaces)
        self._ready = False
        self._known: dict[str, Project] = {}

    async def _maintenance(self) -> asyncpg.Connection:
        return await self.cluster.connect_dsn(self.cluster.server_dsn, application_name="codebase-mcp-ddl")

    async def ensure_ready(self) -> None:
        """Create and migrate the registry database (idempotent, safe across processes).

        A registry already at head (every start but the first) costs one query: no DDL, no Alembic.
        """
        if self._ready:
            return
        if await self._registry_at_head():
            self._ready = True
            return
        conn = await self._maintenance()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _PROVISION_LOCK)
            try:
                if self.cluster.registry_dsn == with_database(
                    self.cluster.server_dsn, database_of(self.cluster.registry_dsn)
                ):
                    await _create_database(conn, database_of(self.cluster.registry_dsn), self.cluster.server_dsn)
                await migrations.upgrade(self.cluster.registry_dsn, "registry")
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _PROVISION_LOCK)
        finally:
            await conn.close()
        self._ready = True

    async def _registry_at_head(self) -> bool:
        """True when the registry database exists and is migrated to head; False on any doubt."""
        try:
            conn = await self.cluster.connect_dsn(self.cluster.registry_dsn, application_name="codebase-mcp-ddl")
        except asyncpg.InvalidCatalogNameError:
            return False  # not created yet
        try:
            return await migrations.at_head(conn, "registry")
        finally:
            await conn.close()

    async def get(self, project_id: str) -> Project | None:
        validate_project_id(project_id)
        if project_id in self._known:
            return self._known[project_id]
        await self.ensure_ready()
        pool = await self.cluster.registry_pool()
        row = await pool.fetchrow("SELECT * FROM projects WHERE id = $1", project_id)
        if row is None:
            return None
        project = Project.from_record(row)
        self._known[project_id] = project
        return project

    async def require(self, project_id: str) -> Project:
        project = await self.get(project_id)
        if project is None:
            raise UnknownProjectError(
                f"unknown project {project_id!r}: index a repository into it first "
                "(start_indexing_background or `codebase-mcp index`)"
            )
        return project

    async def list_projects(self) -> list[Project]:
        await self.ensure_ready()
        pool = await self.cluster.registry_pool()
        rows = await pool.fetch("SELECT * FROM projects ORDER BY created_at, id")
        return [Project.from_record(r) for r in rows]

    async def get_or_create(self, project_id: str, *, name: str | None = None) -> Project:
        existing = await self.get(project_id)
        if existing is not None:
            return existing
        return await self._provision(project_id, name or project_id)

    async def _provision(self, project_id: str, name: str) -> Project:
        database = database_name_for(project_id)
        conn = await self._maintenance()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _PROVISION_LOCK)
            try:
                pool = await self.cluster.registry_pool()
                if self.max_projects is not None and await pool.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM projects WHERE id = $1) AND count(*) >= $2 FROM projects",
                    project_id, self.max_projects,
                ):  # fmt: skip
                    raise ProjectLimitError(
                        f"cannot create project {project_id!r}: this server already holds {self.max_projects} "
                        f"projects (MAX_PROJECTS={self.max_projects}); use an existing project_id or raise "
                        "MAX_PROJECTS"
                    )
                created = await self._create_project_database(conn, database)
                try:
                    await self._upgrade_project_db(database)
                except BaseException:
                    if created:  # leave nothing half-made behind: the next attempt starts clean
                        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
                    raise
                meta = {"embedder": self.embedder_name, "embedding_dim": self.embedding_dim}
                await pool.execute(
                    """
                    INSERT INTO projects (id, name, database_name, metadata) VALUES ($1, $2, $3, $4::jsonb)
                    ON CONFLICT (id) DO NOTHING
                    """,
                    project_id,
                    name,
                    database,
                    json.dumps(meta),
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _PROVISION_LOCK)
        finally:
            await conn.close()
        log.info("provisioned project %s in database %s", project_id, database)
        return await self.require(project_id)

    async def _create_project_database(self, conn: asyncpg.Connection, database: str) -> bool:
        """A clone of the migrated template (server/db/templates.py), or an empty database when there is
        no usable template; False when `database` already exists. `conn` holds the provisioning lock."""
        template = templates.template_name(self.embedding_dim)
        if template is None:
            return await _create_database(conn, database, self.cluster.server_dsn)

        async def create(name: str) -> bool:
            return await _create_database(conn, name, self.cluster.server_dsn)

        async def migrate(name: str) -> None:
            await self._migrate_empty(name, self.embedding_dim)

        if not await templates.ensure_template(conn, template, create=create, migrate=migrate):
            return await _create_database(conn, database, self.cluster.server_dsn)
        return await templates.clone(conn, database, template)

    async def _migrate_empty(self, database: str, dim: int) -> None:
        dsn = self.cluster.dsn_for(database)
        conn = await self.cluster.connect_dsn(dsn, application_name="codebase-mcp-ddl")
        try:
            await _create_vector_extension(conn, database, dsn)
        finally:
            await conn.close()
        await migrations.upgrade(dsn, "project", embedding_dim=dim)

    def forget(self, project_id: str) -> None:
        """Drop a cached project (it was removed, possibly by another process)."""
        self._known.pop(project_id, None)

    async def remove(self, project_id: str) -> Project:
        """Drop the project's database and delete its registry row; tells workers on `codebase_projects`.

        Connections to the database (any process) are terminated. Callers check for active jobs first.
        """
        project = await self.require(project_id)
        conn = await self._maintenance()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _PROVISION_LOCK)
            try:
                name = quote_ident(validate_database_name(project.database_name))
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                pool = await self.cluster.registry_pool()
                async with pool.acquire() as reg, reg.transaction():
                    await reg.execute("DELETE FROM projects WHERE id = $1", project.id)
                    payload = {"id": project.id, "database_name": project.database_name, "op": "delete"}
                    await reg.execute("SELECT pg_notify('codebase_projects', $1)", json.dumps(payload))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _PROVISION_LOCK)
        finally:
            await conn.close()
        self.forget(project.id)
        log.info("removed project %s and its database %s", project.id, project.database_name)
        return project

    async def _upgrade_project_db(self, database: str) -> None:
        dsn = self.cluster.dsn_for(validate_database_name(database))
        conn = await self.cluster.connect_dsn(dsn, application_name="codebase-mcp-ddl")
        try:
            await _create_vector_extension(conn, database, dsn)
            has_config = await conn.fetchval("SELECT to_regclass('project_config') IS NOT NULL")
            dim = self.embedding_dim
            if has_config:
                row = await conn.fetchval("SELECT value FROM project_config WHERE key = 'embedder'")
                if row is not None:
                    dim = int(json.loads(row)["dimension"])
            current = await migrations.at_head(conn, "project")
        finally:
            await conn.close()
        if not current:
            await migrations.upgrade(dsn, "project", embedding_dim=dim)
        conn = await self.cluster.connect_dsn(dsn, application_name="codebase-mcp-ddl")
        try:
            await conn.execute(
                """
                INSERT INTO project_config (key, value) VALUES ('embedder', $1::jsonb)
                ON CONFLICT (key) DO NOTHING
                """,
                json.dumps({"name": self.embedder_name, "dimension": dim}),
            )
        finally:
            await conn.close()

    async def upgrade_all(self) -> list[str]:
        """Bring the registry and every project database to head; returns the databases touched."""
        self._ready = False
        await self.ensure_ready()
        done = [database_of(self.cluster.registry_dsn)]
        for project in await self.list_projects():
            await self._upgrade_project_db(project.database_name)
            done.append(project.database_name)
        return done

    async def downgrade_all(self, revision: str) -> list[str]:
        done = []
        for project in await self.list_projects():
            await migrations.downgrade(self.cluster.dsn_for(project.database_name), "project", revision)
            done.append(project.database_name)
        return done

    async def check_embedder(self, project: Project) -> None:
        """Refuse to mix vectors from different embedders in one project.

        A project of an embedder this one ``replaces`` (of the same dimension) is taken over first.
        """
        pool = await self.cluster.pool(project.database_name)
        raw = await pool.fetchval("SELECT value FROM project_config WHERE key = 'embedder'")
        if raw is None:
            return
        stored = json.loads(raw)
        if stored["name"] in self.replaces and int(stored["dimension"]) == self.embedding_dim:
            await self._take_over(project, stored["name"])
            return
        if stored["name"] != self.embedder_name or int(stored["dimension"]) != self.embedding_dim:
            raise EmbedderMismatchError(
                f"project {project.id!r} was indexed with embedder {stored['name']} "
                f"({stored['dimension']} dims) but the server is configured for {self.embedder_name} "
                f"({self.embedding_dim} dims); vectors cannot be mixed. Switch EMBEDDING_PROVIDER/"
                "EMBEDDING_MODEL back, or index into a new project."
            )

    async def _take_over(self, project: Project, previous: str) -> None:
        """Drops the transformer vectors of ``previous`` and records this embedder, in one transaction:
        searches meanwhile rank on the static tier and full text, and the next index of each
        repository (a re-index of nothing changed included) embeds its chunks again."""
        pool = await self.cluster.pool(project.database_name)
        async with pool.acquire() as conn, conn.transaction():
            # Under the row lock, so two processes starting at once take it over only once.
            current = await conn.fetchval("SELECT value FROM project_config WHERE key = 'embedder' FOR UPDATE")
            if current is None or json.loads(current)["name"] != previous:
                return
            await vectorstore.drop_transformer_vectors(conn)
            await conn.execute(
                "UPDATE project_config SET value = $1::jsonb WHERE key = 'embedder'",
                json.dumps({"name": self.embedder_name, "dimension": self.embedding_dim}),
            )
        # The registry's copy (what `codebase-mcp repos` shows) follows; the project database is the truth.
        registry = await self.cluster.registry_pool()
        await registry.execute(
            "UPDATE projects SET metadata = jsonb_set(metadata, '{embedder}', to_jsonb($2::text)) WHERE id = $1",
            project.id, self.embedder_name,
        )  # fmt: skip
        self._known.pop(project.id, None)
        log.warning(
            "project %s: embedder %s takes over from %s; its transformer vectors are embedded again on the "
            "next index of each repository",
            project.id, self.embedder_name, previous,
        )  # fmt: skip
