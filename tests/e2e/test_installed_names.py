"""Installed beside another distribution that ships top-level `server` and `web` packages, both work:
neither overwrites the other's files, our command runs from its own copy (an index with the chunking
workers, a search, and the MCP server over stdio, against the test PostgreSQL), and the other
program still imports its own `server`.

Both are installed with pip into one directory (`--target`, no dependencies: those come from this
environment), which then goes first on PYTHONPATH, as a site-packages of its own would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from server.indexer.storing import _INLINE_LIMIT as STORE_INLINE_LIMIT
from tests.e2e.conftest import stdio_client
from tests.repos import write_files

REPO_ROOT = Path(__file__).resolve().parents[2]
OTHER = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "someone-elses-server"
        version = "1.0"

        [tool.setuptools]
        packages = ["server", "web"]
        """,
    "server/__init__.py": 'WHOSE = "someone else\'s"\n',
    "server/cli.py": 'raise SystemExit("someone else\'s server.cli")\n',
    "web/__init__.py": 'WHOSE = "someone else\'s"\n',
}


def _pip_install(source: Path, target: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


async def test_installed_beside_another_server_package_both_work(e2e_env: dict[str, str], tmp_path: Path) -> None:
    site = tmp_path / "site"
    other = write_files(tmp_path / "other", OTHER)
    _pip_install(other, site)
    _pip_install(REPO_ROOT, site)
    # Theirs at the top level, untouched; ours inside our package only.
    assert (site / "server" / "__init__.py").read_text() == OTHER["server/__init__.py"]
    assert (site / "web" / "__init__.py").read_text() == OTHER["web/__init__.py"]
    assert not (site / "listener").exists() and not (site / "migrations").exists()
    for folder in ("server", "listener", "migrations", "web"):
        assert (site / "codebase_mcp" / folder / "__init__.py").is_file()
    assert (site / "codebase_mcp" / "web" / "static" / "index.html").is_file()

    env = {**e2e_env, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()  # not the checkout: nothing of ours is importable from the working directory
    theirs = _run(env, work, "-c", "import server, web; print(server.WHOSE, web.WHOSE, server.__file__)")
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout.split() == ["someone", "else's", "someone", "else's", str(site / "server" / "__init__.py")]

    ours = _run(env, work, "-c", "import codebase_mcp, server.cli, web; print(server.cli.__file__, web.__file__)")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split() == [
        str(site / "codebase_mcp" / "server" / "cli.py"),
        str(site / "codebase_mcp" / "web" / "__init__.py"),
    ]

    # The whole command from the installed copy: migrations, chunking workers, the model, search.
    project = f"installed-{uuid.uuid4().hex[:8]}"
    # More files than a run prepares inline: the chunking workers (forkserver children) import the
    # installed copy too.
    files = {f"src/mod_{i:03d}.py": f"def helper_{i}(x):\n    return x + {i}\n" for i in range(STORE_INLINE_LIMIT + 6)}
    repo = write_files(
        tmp_path / "repo", {**files, "src/backoff.py": "def exponential_backoff(attempt):\n    return 2 ** attempt\n"}
    )
    indexed = _run(env, work, "-m", "codebase_mcp", "index", str(repo), "--project", project)
    assert indexed.returncode == 0, indexed.stderr
    assert f"{STORE_INLINE_LIMIT + 7} files indexed" in indexed.stdout + indexed.stderr
    found = _run(env, work, "-m", "codebase_mcp", "search", "exponential_backoff", "--project", project, "--json")
    assert found.returncode == 0, found.stderr
    (first, *_) = json.loads(found.stdout)["results"]
    assert first["file_path"] == "src/backoff.py" and first["symbol"] == "exponential_backoff"
    # The MCP server over stdio from the installed copy: its health, and the same search as a tool.
    async with stdio_client(env, tmp_path / "stdio.log") as client:
        health = (await client.call_tool("health", {})).structured_content
        assert health is not None and health["status"] == "ok"
        hits = await client.call_tool("search_code", {"query": "exponential_backoff", "project_id": project})
        assert hits.structured_content is not None
        assert hits.structured_content["results"][0]["file_path"] == "src/backoff.py"
    removed = _run(env, work, "-m", "codebase_mcp", "projects", "remove", project, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert os.path.isdir(site / "server")  # still theirs after all of it
