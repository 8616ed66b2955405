"""The PostgreSQL server we talk to and a bounded asyncpg pool per database."""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from server.db.embedded import EmbeddedPostgres
from server.db.names import REGISTRY_DATABASE
from server.errors import UserError
from server.settings import Settings

log = logging.getLogger(__name__)

# A connection of our own or one borrowed from a pool: SQL helpers accept either.
Conn = asyncpg.Connection | PoolConnectionProxy

# What a failed connection attempt raises: refused/unresolvable host, bad DSN, bad role, password or
# database, a server that is starting or full, a timeout.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError, asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
)  # fmt: skip


class DatabaseUnavailableError(UserError, RuntimeError):
    """PostgreSQL cannot be reached or refuses us; the message says which server and what to check."""


def describe_server(dsn: str) -> str:
    """`host:port/database` of a DSN, without user or password (also for Unix-socket DSNs)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = parts.port
    if not host:  # postgresql://user@/db?host=/path/to/socket&port=5432
        query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
        host = unquote(query.get("host", "")) or "localhost"
        port = int(query["port"]) if query.get("port", "").isdigit() else port
    return f"{host}{f':{port}' if port else ''}/{database_of(dsn)}"


def unavailable(dsn: str, exc: BaseException, *, source: str) -> DatabaseUnavailableError:
    """One clear line for a failed connection: which server, why, and what to do."""
    if isinstance(exc, TimeoutError):
        reason = "timed out"
    elif isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        reason = os.strerror(exc.errno)  # "Connection refused", not asyncpg's "Connect call failed (...)"
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror  # e.g. "Name or service not known"
    else:
        reason = str(exc) or type(exc).__name__
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        advice = "Check the user and password in the URL"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        advice = "Check the database name in the URL (codebase-mcp creates its own databases next to it)"
    else:
        advice = "Start that server or fix the URL; unset DATABASE_URL to use the embedded PostgreSQL"
    return DatabaseUnavailableError(
        f"cannot connect to PostgreSQL at {describe_server(dsn)} ({source}): {reason.rstrip('.')}. {advice}"
    )


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def _init_vector(conn: asyncpg.Connection) -> None:
    from pgvector.asyncpg import register_vector

    await register_vector(conn)
    # Chunks' full text is built by the indexer and sent as a binary tsvector (server/indexer/fulltext.py).
    await conn.set_type_codec("tsvector", schema="pg_catalog", encoder=bytes, decoder=bytes, format="binary")


class Cluster:
    """Where the databases live; hands out one pool per database."""

    def __init__(self, server_dsn: str, registry_dsn: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self.server_dsn = server_dsn  # maintenance database (CREATE DATABASE runs here)
        self.registry_dsn = registry_dsn
        self._min = min_size
        self._max = max_size
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Cluster:
        if settings.database_url:
            server_dsn = settings.database_url
        else:
            running = EmbeddedPostgres(settings.data_dir, port=settings.embedded_pg_port).ensure_running()
            server_dsn = running.dsn("postgres")
        registry_dsn = settings.registry_database_url or with_database(server_dsn, REGISTRY_DATABASE)
        return cls(server_dsn, registry_dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size)

    def dsn_for(self, database: str) -> str:
        return with_database(self.server_dsn, database)

    async def pool(self, database: str, *, vector: bool = True) -> asyncpg.Pool:
        """The pool for `database` (created on first use; `vector` registers the pgvector codec)."""
        existing = self._pools.get(database)
        if existing is not None:
            return existing
        async with self._lock:
            existing = self._pools.get(database)
            if existing is not None:
                return existing
            dsn = self.registry_dsn if database == database_of(self.registry_dsn) else self.dsn_for(database)
            pool = await asyncpg.create_pool(
                dsn,
                min_size=self._min,
                max_size=self._max,
                init=_init_vector if vector else None,
                max_inactive_connection_lifetime=60.0,
                server_settings={"application_name": "codebase-mcp"},
            )
            self._pools[database] = pool
            return pool

    async def registry_pool(self) -> asyncpg.Pool:
        return await self.pool(database_of(self.registry_dsn), vector=False)

    async def connect(self, database: str) -> asyncpg.Connection:
        """A dedicated, unpooled connection (for LISTEN and session advisory locks)."""
        return await asyncpg.connect(self.dsn_for(database))

    async def drop_pool(self, database: str) -> None:
        pool = self._pools.pop(database, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                log.warning("pool did not close in time; terminating")
                pool.terminate()
