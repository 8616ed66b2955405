"""`health`: is the service up, and what is it running on."""

from __future__ import annotations

from fastmcp import FastMCP

from server import __version__
from server.app import App
from server.db.cluster import database_of
from server.mcp.models import DatabaseHealth, HealthReport


def register(mcp: FastMCP, app: App) -> None:
    @mcp.tool
    async def health() -> HealthReport:
        """Check that the database, registry and workers are up."""
        pool = await app.cluster.registry_pool()
        async with pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
            avail = await conn.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        projects = await app.registry.list_projects()
        return HealthReport(
            status="ok",
            version=__version__,
            database=DatabaseHealth(
                mode="external" if app.settings.database_url else "embedded",
                server_version=str(version),
                pgvector_version=avail,
                registry_database=database_of(app.cluster.registry_dsn),
                projects=len(projects),
            ),
            embedder=app.embedder.name,
            embedding_dimension=app.registry.embedding_dim,
            worker_id=app.worker.worker_id if app.worker else None,
            running_jobs=len(app.worker.running) if app.worker else 0,
        )
