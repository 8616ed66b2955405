"""The PostgreSQL server we talk to and a bounded asyncpg pool per database."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from server.db.budget import ConnectionBudget
from server.db.embedded import EmbeddedPostgres
from server.db.names import REGISTRY_DATABASE
from server.errors import UserError
from server.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 40

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
    """Where the databases live; hands out one pool per database, within a connection budget.

    Pools keep no idle connection longer than `idle_seconds` (`min_size` is 0 by default), and a
    pool nobody has used for `close_after` seconds is closed and forgotten: a process serving
    hundreds of projects holds connections only for the ones in use. Hold a pool reference only
    across short gaps (or call `pool()` again): a pool unused that long may be closed under you.
    """

    def __init__(
        self,
        server_dsn: str,
        registry_dsn: str,
        *,
        min_size: int = 0,
        max_size: int = 8,
        idle_seconds: float = 10.0,
        close_after: float = 300.0,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.server_dsn = server_dsn  # maintenance database (CREATE DATABASE runs here)
        self.registry_dsn = registry_dsn
        self._min = min_size
        self._max = max_size
        self.idle_seconds = idle_seconds
        self.close_after = close_after
        self.budget = budget or ConnectionBudget(DEFAULT_MAX_CONNECTIONS)
        self._pools: dict[str, asyncpg.Pool] = {}
        self._last_used: dict[str, float] = {}
        self._last_reap = time.monotonic()
        self._reaping: asyncio.Task[list[str]] | None = None
        self._lock = asyncio.Lock()
        self._probes: set[asyncpg.Connection] = set()
        self.embedded: EmbeddedPostgres | None = None  # set when we run on the embedded server

    @classmethod
    def from_settings(cls, settings: Settings) -> Cluster:
        embedded = None
        if settings.database_url:
            server_dsn = settings.database_url
        else:
            embedded = EmbeddedPostgres(settings.data_dir, port=settings.embedded_pg_port)
            server_dsn = embedded.ensure_running().dsn("postgres")
        registry_dsn = settings.registry_database_url or with_database(server_dsn, REGISTRY_DATABASE)
        cluster = cls(
            server_dsn, registry_dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size,
            idle_seconds=settings.pool_idle_seconds, budget=ConnectionBudget(settings.max_db_connections),
        )  # fmt: skip
        cluster.embedded = embedded
        return cluster

    def dsn_for(self, database: str) -> str:
        if database == database_of(self.registry_dsn):
            return self.registry_dsn
        return with_database(self.server_dsn, database)

    async def pool(self, database: str, *, vector: bool = True) -> asyncpg.Pool:
        """The pool for `database` (created on first use; `vector` registers the pgvector codec)."""
        self._last_used[database] = time.monotonic()
        self._maybe_reap()
        existing = self._pools.get(database)
        if existing is not None:
            return existing
        async with self._lock:
            existing = self._pools.get(database)
            if existing is not None:
                return existing

            async def used(_: object) -> None:  # every acquire: this pool is in use
                self._last_used[database] = time.monotonic()

            pool = await asyncpg.create_pool(
                self.dsn_for(database),
                min_size=self._min,
                max_size=self._max,
                connect=self.budget.connect,
                setup=used,
                init=_init_vector if vector else None,
                max_inactive_connection_lifetime=self.idle_seconds,
                server_settings={"application_name": "codebase-mcp"},
            )
            self._pools[database] = pool
            return pool

    async def registry_pool(self) -> asyncpg.Pool:
        return await self.pool(database_of(self.registry_dsn), vector=False)

    async def connect(self, database: str, *, application_name: str = "codebase-mcp") -> asyncpg.Connection:
        """A dedicated, unpooled connection (for LISTEN and session advisory locks), within the budget."""
        return await self.connect_dsn(self.dsn_for(database), application_name=application_name)

    async def connect_dsn(self, dsn: str, *, application_name: str = "codebase-mcp") -> asyncpg.Connection:
        return await self.budget.connect(dsn, server_settings={"application_name": application_name})

    @asynccontextmanager
    async def probe(self, database: str) -> AsyncIterator[asyncpg.Connection]:
        """A short-lived connection for a few statements, closed at once (no pool left behind).

        For sweeps over every project: a pool per visited database would linger for idle_seconds.
        """
        conn = await self.connect(database, application_name="codebase-mcp-sweep")
        self._probes.add(conn)
        try:
            yield conn
        finally:
            self._probes.discard(conn)
            try:
                async with asyncio.timeout(5):
                    await conn.close()
            except BaseException:
                conn.terminate()  # cancelled or stuck: never leave it open
                raise

    def open_pools(self) -> dict[str, int]:
        """Database → connections its pool holds now (for health and benchmarks)."""
        return {db: pool.get_size() for db, pool in self._pools.items()}

    def _maybe_reap(self) -> None:
        now = time.monotonic()
        if now - self._last_reap < min(30.0, self.close_after) or (self._reaping and not self._reaping.done()):
            return
        self._last_reap = now
        self._reaping = asyncio.get_running_loop().create_task(self.reap_idle(), name="cluster-reap")

    async def reap_idle(self, *, older_than: float | None = None) -> list[str]:
        """Close pools that hold no connection and were not used for `close_after` seconds."""
        limit = self.close_after if older_than is None else older_than
        now = time.monotonic()
        registry = database_of(self.registry_dsn)
        closed = []
        for database, pool in list(self._pools.items()):
            if database == registry or pool.get_size() > 0 or now - self._last_used.get(database, now) < limit:
                continue
            if self._pools.get(database) is pool:
                del self._pools[database]
                self._last_used.pop(database, None)
                closed.append(database)
                await pool.close()
        return closed

    async def expire_connections(self) -> None:
        """After a server restart: every pooled connection is replaced on its next use."""
        for pool in list(self._pools.values()):
            await pool.expire_connections()

    async def drop_pool(self, database: str) -> None:
        pool = self._pools.pop(database, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        for conn in list(self._probes):  # a sweep cut short by shutdown
            conn.terminate()
        self._probes.clear()
        if self._reaping is not None:
            await asyncio.gather(self._reaping, return_exceptions=True)
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except TimeoutError:
                log.warning("pool did not close in time; terminating")
                pool.terminate()
