"""`codebase-mcp repos …` and `projects …` as a user runs them, against the test PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg

from tests.e2e.test_cli import _cli, _repo


async def _database_exists(dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def test_repositories_and_projects_can_be_listed_and_removed(server_env: dict[str, str], tmp_path: Path) -> None:
    project = f"life-{uuid.uuid4().hex[:8]}"
    app_repo = _repo(tmp_path / "src" / "app")
    lib_repo = _repo(tmp_path / "src" / "lib")
    for repo in (app_repo, lib_repo):
        done = _cli(server_env, "index", str(repo), "--project", project)
        assert done.returncode == 0, done.stderr

    inside = _cli(server_env, "index", str(app_repo / "net"), "--project", project)
    assert inside.returncode == 2 and inside.stderr.count("\n") == 1
    assert f"is inside repository 'app' ({app_repo})" in inside.stderr
    around = _cli(server_env, "index", str(tmp_path / "src"), "--project", project)
    assert around.returncode == 2 and f"contains repositories 'app' ({app_repo}), 'lib' ({lib_repo})" in around.stderr

    listed = json.loads(_cli(server_env, "repos", "list", "--project", project, "--json").stdout)
    assert [(r["name"], r["root_path"], r["files"]) for r in listed] == [
        ("app", str(app_repo), 2),
        ("lib", str(lib_repo), 2),
    ]
    assert all(r["chunks"] > 0 and r["unembedded_chunks"] == 0 and r["active_job_id"] is None for r in listed)
    table = _cli(server_env, "repos", "list", "--project", project)
    assert table.returncode == 0 and str(app_repo) in table.stdout and str(lib_repo) in table.stdout

    missing = _cli(server_env, "repos", "remove", "nope", "--project", project)
    assert missing.returncode == 2 and "no repository 'nope' in this project; its repositories: app" in missing.stderr
    removed = _cli(server_env, "repos", "remove", "app", "--project", project)
    assert removed.returncode == 0, removed.stderr
    assert f"removed repository app ({app_repo}) from project {project}: 2 files" in " ".join(removed.stderr.split())
    found = json.loads(_cli(server_env, "search", "ConfigLoader", "--project", project, "--json").stdout)
    assert {h["repository_name"] for h in found["results"]} == {"lib"}
    assert _cli(server_env, "index", str(app_repo / "net"), "--project", project).returncode == 0  # no overlap now

    projects = json.loads(_cli(server_env, "projects", "list", "--json").stdout)
    mine = next(p for p in projects if p["id"] == project)
    assert mine["repositories"] == 2 and mine["database"].startswith("cb_proj_life_")
    unconfirmed = _cli(server_env, "projects", "remove", project)
    assert unconfirmed.returncode == 2 and "re-run with --yes to confirm" in unconfirmed.stderr
    assert f"drops database {mine['database']} with 2 repositories" in unconfirmed.stderr
    assert await _database_exists(server_env["DATABASE_URL"], mine["database"])

    confirmed = _cli(server_env, "projects", "remove", project, "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert not await _database_exists(server_env["DATABASE_URL"], mine["database"])
    assert project not in [p["id"] for p in json.loads(_cli(server_env, "projects", "list", "--json").stdout)]
    gone = _cli(server_env, "repos", "list", "--project", project)
    assert gone.returncode == 2 and f"unknown project '{project}'" in gone.stderr


def test_a_path_finds_its_project_from_its_config(server_env: dict[str, str], tmp_path: Path) -> None:
    project = f"life-{uuid.uuid4().hex[:8]}"
    repo = _repo(tmp_path / "repo")
    (repo / ".codebase-mcp").mkdir()
    (repo / ".codebase-mcp" / "config.json").write_text(json.dumps({"project": {"id": project}}))
    assert _cli(server_env, "index", str(repo)).returncode == 0
    listed = _cli(server_env, "repos", "list", "--json", cwd=repo)
    assert [r["root_path"] for r in json.loads(listed.stdout)] == [str(repo)]
    removed = _cli(server_env, "repos", "remove", str(repo), cwd=tmp_path)  # the path's config names the project
    assert removed.returncode == 0, removed.stderr
    assert json.loads(_cli(server_env, "repos", "list", "--project", project, "--json").stdout) == []
    assert _cli(server_env, "projects", "remove", project, "--yes").returncode == 0
