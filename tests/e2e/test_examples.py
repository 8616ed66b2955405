"""Every script in docs/examples runs as documented against a temporary repository, so none rots."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT
from tests.repos import make_python_repo

EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


def test_every_example_is_listed_in_the_examples_readme() -> None:
    readme = (ROOT / "docs" / "examples" / "README.md").read_text()
    assert EXAMPLES, "no examples found"
    for example in EXAMPLES:
        assert example.name in readme, example.name


async def _run(example: Path, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, str(example), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
async def test_example_runs_against_a_temporary_repository(
    example: Path, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    repo = make_python_repo(tmp_path / "repo", 30)
    project = f"ex-{uuid.uuid4().hex[:8]}"
    # The example's own jobs are the subject: a repository watcher's catch-up run, queued as soon as the
    # first run has indexed the repository, would be the active job its forced run is handed instead.
    env = {**e2e_env, "WATCH_REPOSITORIES": "false"}
    done = await _run(example, str(repo), "--project", project, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    if example.name == "background_indexing_example.py":
        out = done.stdout
        assert re.search(r"^\[cancel\] cancelled: Cancelled", out, re.M), out
        assert re.search(r"^\[cancel\] final: cancelled\s", out, re.M), out
        # what the cancelled run stored is kept, so this run may find some files already indexed
        assert re.search(r"^\[poll\] completed\s+100%  \d+/31 files, \d+ chunks", out, re.M), out
        watched = [float(m) for m in re.findall(r"^\[watch\]\s+([\d.]+)/100", out, re.M)]
        assert len(watched) >= 2 and watched == sorted(watched) and watched[-1] == 100, out
        assert re.search(r"^\[watch\] final: completed\s+100%  31/31 files", out, re.M), out
        assert re.search(r"^\[fire-and-forget\] search meanwhile: \d+ results", out, re.M), out
        assert re.search(r"^\[fire-and-forget\] later: completed\s+100%", out, re.M), out
        assert re.search(rf"^repository repo \({re.escape(str(repo))}\): 31 files, \d+ chunks$", out, re.M), out


async def test_the_example_picks_the_project_from_the_working_directory(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    example = ROOT / "docs" / "examples" / "background_indexing_example.py"
    repo = make_python_repo(tmp_path / "repo", 2)
    (repo / ".codebase-mcp").mkdir()
    project = f"ex-{uuid.uuid4().hex[:8]}"
    (repo / ".codebase-mcp" / "config.json").write_text(f'{{"project": {{"id": "{project}"}}}}')
    done = await _run(example, str(repo), "--pattern", "poll", env=e2e_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"project {project} (config)\n")
    assert re.search(r"^\[poll\] completed\s+100%  3/3 files", done.stdout, re.M), done.stdout
