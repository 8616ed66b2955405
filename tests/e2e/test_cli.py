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
        [sys.executable, "-m", "codebase_mcp", *args],
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_an_unreachable_database_is_one_clear_line_and_a_nonzero_exit(server_env: dict[str, str]) -> None:
    port = _free_port()  # nothing listens there
    env = {**server_env, "DATABASE_URL": f"postgresql://someone:s3cret@127.0.0.1:{port}/postgres"}
    for args in (["search", "retry"], ["repos", "list"], ["projects", "list"], ["db", "list"], ["serve"]):
        done = _cli(env, *args)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.startswith(
            f"error: cannot connect to PostgreSQL at 127.0.0.1:{port}/postgres (DATABASE_URL)"
        )
        assert "Connection refused" in done.stderr and "s3cret" not in done.stderr
        assert done.stdout == ""


def test_bad_search_input_is_refused_before_the_database_is_reached(server_env: dict[str, str]) -> None:
    env = {**server_env, "DATABASE_URL": f"postgresql://x@127.0.0.1:{_free_port()}/postgres"}  # unreachable
    for args, expected in (
        (["--limit", "0"], "error: limit must be between 1 and 50, got 0\n"),
        (["--limit", "500"], "error: limit must be between 1 and 50, got 500\n"),
        (["--context", "99"], "error: context_lines must be between 0 and 20, got 99\n"),
    ):
        done = _cli(env, "search", "retry", *args)
        assert (done.returncode, done.stderr) == (2, expected)
    unknown = _cli(env, "search", "retry", "--language", "pyhton")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert unknown.stderr.startswith("error: unknown language 'pyhton' (did you mean python")
    assert "Known languages: bash, c, " in unknown.stderr and ", typescript, " in unknown.stderr


def test_language_aliases_filter_like_the_canonical_name(server_env: dict[str, str], tmp_path: Path) -> None:
    project = f"cli-{uuid.uuid4().hex[:8]}"
    repo = _repo(tmp_path / "repo")
    (repo / "notes.md").write_text("# Retry\n\nWe retry failed HTTP requests with backoff.\n")
    assert _cli(server_env, "index", str(repo), "--project", project).returncode == 0
    by_alias = json.loads(
        _cli(server_env, "search", "retry", "--project", project, "--language", "py", "--json").stdout
    )
    assert by_alias["results"] and {h["language"] for h in by_alias["results"]} == {"python"}


def test_invalid_settings_are_one_line(server_env: dict[str, str]) -> None:
    done = _cli({**server_env, "LOG_LEVEL": "loud"}, "projects", "list")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: invalid configuration (environment or .env): LOG_LEVEL:")
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in done.stderr


def test_an_empty_repository_is_indexed_with_a_warning(server_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "assets").mkdir(parents=True)
    (empty / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    project = f"cli-{uuid.uuid4().hex[:8]}"
    done = _cli(server_env, "index", str(empty), "--project", project, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["files_scanned"] == 0 and summary["warning"].startswith(f"no indexable files in {empty}")
    assert "binary" in summary["warning"]
    assert f"warning: no indexable files in {empty} (skipped: 1 binary" in done.stderr
    full = _cli(server_env, "index", str(_repo(tmp_path / "full")), "--project", project, "--json")
    assert json.loads(full.stdout)["warning"] is None and "warning" not in full.stderr


def test_logs_are_quiet_by_default_and_go_to_log_file_when_asked(server_env: dict[str, str], tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    quiet = _cli(server_env, "index", str(repo), "--project", f"cli-{uuid.uuid4().hex[:8]}", "--json")
    assert quiet.returncode == 0 and " INFO " not in quiet.stderr and "provisioned" not in quiet.stderr
    log_file = tmp_path / "logs" / "codebase-mcp.log"
    env = {**server_env, "LOG_LEVEL": "info", "LOG_FILE": str(log_file)}
    chatty = _cli(env, "index", str(repo), "--project", f"cli-{uuid.uuid4().hex[:8]}", "--json")
    assert chatty.returncode == 0 and " INFO " not in chatty.stderr
    assert " INFO server.db.registry: provisioned project cli-" in log_file.read_text()
