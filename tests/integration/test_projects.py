"""Project registry, database naming, resolution order and connection hygiene."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from server.app import App
from server.db.names import InvalidNameError, database_name_for
from server.db.registry import Registry, UnknownProjectError
from server.embeddings import Embedder
from server.mcp.models import WorkingDirectoryResult
from server.mcp.server import build_server
from server.projects import ProjectConfigError, ProjectResolver, find_config
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # projects and connections are the subject here, not vectors


def test_database_names_are_validated_identifiers() -> None:
    name = database_name_for("My-Project.v2")
    assert name.startswith("cb_proj_my_project_v2_") and len(name) <= 63
    assert database_name_for("a") != database_name_for("A")  # distinct ids never collide
    for bad in ["", "x; DROP DATABASE postgres", "../etc", "a" * 64, "-leading"]:
        with pytest.raises(InvalidNameError):
            database_name_for(bad)


async def test_provisioning_creates_database_with_schema_and_registry_row(registry: Registry, project_id: str) -> None:
    project = await registry.get_or_create(project_id)
    again = await registry.get_or_create(project_id)
    assert again == project and project.database_name == database_name_for(project_id)
    conn = await asyncpg.connect(registry.cluster.dsn_for(project.database_name))
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"repositories", "files", "chunks", "indexing_jobs", "embedding_cache", "project_config"} <= tables
        assert await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        dim = await conn.fetchval(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
        assert dim == 384
    finally:
        await conn.close()
    assert project_id in {p.id for p in await registry.list_projects()}


async def test_concurrent_provisioning_of_one_project_is_safe(registry: Registry, project_id: str) -> None:
    import asyncio

    other = Registry(registry.cluster, embedder_name=registry.embedder_name, embedding_dim=384)
    a, b = await asyncio.gather(registry.get_or_create(project_id), other.get_or_create(project_id))
    assert a.database_name == b.database_name


def _write_config(root: Path, payload: Any) -> Path:
    (root / ".codebase-mcp").mkdir(parents=True, exist_ok=True)
    path = root / ".codebase-mcp" / "config.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


async def test_resolution_order(registry: Registry, tmp_path: Path, project_id: str) -> None:
    resolver = ProjectResolver(registry, default_project="dflt-" + project_id)
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    config = _write_config(tmp_path / "a", {"project": {"id": "cfg-" + project_id}})
    assert find_config(deep) == config

    # nothing known for the session → default
    res = await resolver.resolve(None, "s1", create=True)
    assert (res.project.id, res.source) == ("dflt-" + project_id, "default")
    # working directory → config found upward
    resolver.set_working_directory("s1", deep)
    res = await resolver.resolve(None, "s1", create=True)
    assert (res.project.id, res.source, res.config_path) == ("cfg-" + project_id, "config", config)
    # another session is not affected
    assert (await resolver.resolve(None, "s2", create=True)).source == "default"
    # explicit wins over everything
    res = await resolver.resolve("exp-" + project_id, "s1", create=True)
    assert (res.project.id, res.source) == ("exp-" + project_id, "explicit")


async def test_unknown_explicit_project_is_created_only_for_writes(registry: Registry, project_id: str) -> None:
    resolver = ProjectResolver(registry, default_project="default")
    with pytest.raises(UnknownProjectError, match="unknown project"):
        await resolver.resolve(project_id, None)
    assert await registry.get(project_id) is None
    assert (await resolver.resolve(project_id, None, create=True)).project.id == project_id
    strict = ProjectResolver(registry, default_project="default", auto_create=False)
    with pytest.raises(UnknownProjectError):
        await strict.resolve("strict-" + project_id, None, create=True)


async def test_config_name_is_slugged_and_bad_config_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    resolver = ProjectResolver(registry, default_project="default")
    named = tmp_path / "named"
    _write_config(named, {"project": {"name": "My Fancy Repo"}})
    resolver.set_working_directory("s", named)
    assert (await resolver.resolve(None, "s", create=True)).project.id == "my-fancy-repo"
    for bad in ["{not json", {"project": "x"}, {"project": {"id": "bad id!"}}]:
        broken = tmp_path / f"broken{uuid.uuid4().hex[:6]}"
        _write_config(broken, bad)
        resolver.set_working_directory("s", broken)
        with pytest.raises(ProjectConfigError, match=r"config\.json"):
            await resolver.resolve(None, "s", create=True)


async def test_set_working_directory_tool_picks_config_project(app: App, tmp_path: Path, project_id: str) -> None:
    config = _write_config(tmp_path / "ws", {"project": {"id": project_id}})
    async with Client(build_server(app, manage_app=False), mode="legacy") as client:
        raw = await client.call_tool("set_working_directory", {"directory": str(tmp_path / "ws")})
        res = WorkingDirectoryResult.model_validate(raw.structured_content)
        assert (res.project_id, res.source, res.config_path) == (project_id, "config", str(config))
        jobs = await client.call_tool("list_indexing_jobs", {})  # no project_id: the session's project
        assert jobs.structured_content is not None and jobs.structured_content["project_id"] == project_id
        with pytest.raises(ToolError, match="must be absolute"):
            await client.call_tool("set_working_directory", {"directory": "relative"})


async def test_no_connection_leaks_after_a_workload(app: App, tmp_path: Path, project_id: str) -> None:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    for _ in range(3):
        await app.index(project, make_python_repo(tmp_path / "repo", 3))
    pool = await app.cluster.pool(project.database_name)
    assert pool.get_size() <= app.settings.pool_max_size
    await app.close()
    probe = await asyncpg.connect(app.cluster.server_dsn)
    try:
        left = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            project.database_name,
        )
    finally:
        await probe.close()
    assert left == 0
    await app.start()  # the fixture closes it again
