"""The `codebase-mcp` command line as a user runs it, against the test PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.repos import write_files


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _repo(root: Path) -> Path:
    return write_files(
        root,
        {
            "net/retry.py": """
                import time


                def retry_with_backoff(send, attempts=5):
                    \"\"\"Retry a failed HTTP request, waiting longer after each failure.\"\"\"
                    for attempt in range(attempts):
                        try:
                            return send()
                        except ConnectionError:
                            time.sleep(2 ** attempt)
                    raise RuntimeError('all retries failed')
                """,
            "config.py": """
                import json


                class ConfigLoader:
                    def load(self, path):
                        with open(path) as fh:
                            return json.load(fh)
                """,
        },
    )


def test_index_then_search_then_db_commands(server_env: dict[str, str], tmp_path: Path) -> None:
    project = f"cli-{uuid.uuid4().hex[:8]}"
    repo = _repo(tmp_path / "repo")

    indexed = _cli(server_env, "index", str(repo), "--project", project, "--json")
    assert indexed.returncode == 0, indexed.stderr
    summary = json.loads(indexed.stdout)
    assert summary["project"] == project and summary["files_indexed"] == 2 and summary["chunks_embedded"] > 0

    again = json.loads(_cli(server_env, "index", str(repo), "--project", project, "--json").stdout)
    assert again["files_indexed"] == 0 and again["files_unchanged"] == 2

    found = _cli(server_env, "search", "ConfigLoader", "--project", project, "--json")
    assert found.returncode == 0, found.stderr
    top = json.loads(found.stdout)["results"][0]
    assert top["file_path"] == "config.py" and top["symbol"] == "ConfigLoader"

    pretty = _cli(server_env, "search", "retry failed http requests", "--project", project)
    assert pretty.returncode == 0 and "net/retry.py" in pretty.stdout

    listed = _cli(server_env, "db", "list")
    upgraded = _cli(server_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert any(line.startswith("cb_proj_cli_") for line in listed.stdout.splitlines())
    assert "codebase_mcp_registry" in upgraded.stdout


def test_cli_errors_are_clear_and_nonzero(server_env: dict[str, str], tmp_path: Path) -> None:
    missing = _cli(server_env, "index", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in " ".join(missing.stderr.split())
    unknown = _cli(server_env, "search", "x", "--project", f"never-{uuid.uuid4().hex[:6]}")
    assert unknown.returncode == 2 and "unknown project" in " ".join(unknown.stderr.split())
    empty = _cli(server_env, "search", "   ", "--project", "default")
    assert empty.returncode == 2
