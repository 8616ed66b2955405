"""Fault injection on real processes: what a crash, an attacker or a careless operator does.

Covered elsewhere: SIGKILL mid-job and killed LISTEN connections (test_job_resilience.py), HTTP
without a token and with a foreign Host/Origin (test_http_security.py). Long runs (many kills,
PostgreSQL restarts, a flood of projects) are in bench/faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.conftest import Connect, Processes, start_job, wait_for
from tests.repos import make_python_repo

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 150.0


def _group(pgid: int) -> dict[int, str]:
    """Live processes of a process group: pid → command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found[int(entry)] = cmdline
    return found


async def test_sigkill_of_the_server_leaves_no_orphans(processes: Processes, tmp_path: Path) -> None:
    """kill -9 of the main process only (as a client or the OOM killer does, not of the group)."""
    server = await processes.http_server()
    repo = make_python_repo(tmp_path / "repo", 150)  # enough changed files to start the chunker pool
    async with server.client() as client:
        await start_job(client, repo, f"e2e-{uuid.uuid4().hex[:8]}")

    async def pool_running() -> dict[int, str] | None:
        children = {pid: cmd for pid, cmd in _group(server.proc.pid).items() if pid != server.proc.pid}
        return children if any("forkserver" in cmd for cmd in children.values()) and len(children) >= 3 else None

    children = await wait_for(pool_running, within=JOB_TIMEOUT, interval=0.1)
    assert any("resource_tracker" in cmd for cmd in children.values()), children
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.popen.wait(timeout=10)

    async def all_gone() -> bool:
        return not _group(server.proc.pid)

    try:
        await wait_for(all_gone, within=10, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"orphans left behind: {_group(server.proc.pid)}") from None


async def test_symlink_swap_between_queueing_and_running(
    processes: Processes, tmp_path: Path, e2e_env: dict[str, str], connect_db: Connect
) -> None:
    """Queue $ROOT/swap while nothing can run it, then `rm -r $ROOT/swap && ln -s /outside $ROOT/swap`."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "pkg" / "secret.py").write_text("def leaked_outside_secret():\n    return 'outside'\n")
    repo = make_python_repo(root / "swap", 3)
    env = {**e2e_env, "ALLOWED_ROOTS": str(root)}
    queue = await processes.http_server("--no-workers", env=env)
    async with queue.client() as client:
        job = await start_job(client, repo, f"e2e-{uuid.uuid4().hex[:8]}")
        assert job.status == "pending"
        shutil.rmtree(repo)
        repo.symlink_to(outside, target_is_directory=True)
        await processes.worker(env)
        db = await connect_db(job.database_name)

        async def finished() -> asyncpg.Record | None:
            row = await db.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", uuid.UUID(job.job_id))
            return row if row is not None and row["status"] in ("completed", "failed", "cancelled") else None

        row = await wait_for(finished, within=JOB_TIMEOUT, interval=0.2)
        assert row["status"] == "failed", row["progress_message"]
        assert "escapes the allowed roots" in row["error_message"]
        assert await db.fetchval("SELECT count(*) FROM chunks WHERE content LIKE '%leaked_outside_secret%'") == 0
        assert await db.fetchval("SELECT count(*) FROM files") == 0


def test_cli_indexes_a_repository_with_hostile_file_names(e2e_env: dict[str, str], tmp_path: Path) -> None:
    """`touch r/$'\\xff'.py; codebase-mcp index r` used to fail the whole repository."""
    repo = tmp_path / "r"
    repo.mkdir()
    names = [b"\xff.py", b"new\nline.py", b"-rf.py", b"--version.py", b"*.py", b"[x].py", b"n" * 250 + b".py"]
    for i, raw in enumerate(names):
        with open(os.fsencode(repo) + b"/" + raw, "wb") as fh:
            fh.write(f"def hostile_{i}():\n    return {i}\n".encode())
    (repo / "ok.py").write_text("def fine():\n    return 0\n")
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    cli = [sys.executable, "-m", "codebase_mcp"]
    done = subprocess.run(
        [*cli, "index", str(repo), "--project", project, "--json"],
        env=e2e_env, cwd=tmp_path, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    summary = json.loads(done.stdout)
    assert summary["files_indexed"] == len(names) + 1
    found = subprocess.run(
        [*cli, "search", "hostile_0", "--project", project, "--json"],
        env=e2e_env, cwd=tmp_path, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr.decode(errors="replace")
    first = json.loads(found.stdout)["results"][0]
    assert (first["file_path"], first["symbol"]) == ("\\xff.py", "hostile_0")
    assert first["context_source"] in ("file", "none")


OWNER_SCRIPT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from server import lifeline

if __name__ == "__main__":
    if sys.argv[1] == "poll":  # the fallback where pidfd_open is missing
        del os.pidfd_open
        pid = os.fork()
        if pid == 0:
            lifeline.watch_owner(os.getppid())
            time.sleep(600)
            os._exit(0)
        print(pid, flush=True)
    else:
        ctx = multiprocessing.get_context("forkserver")
        pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=lifeline.die_with, initargs=(os.getpid(),))
        print(" ".join(str(p) for p in {pool.submit(os.getpid).result() for _ in range(8)}), flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("mode", ["pidfd", "poll"])
def test_lifeline_ends_workers_of_a_killed_owner(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNER_SCRIPT)
    owner = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert workers and all(_group(owner.pid).get(p) for p in workers)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group(owner.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group(owner.pid), _group(owner.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(owner.pid, signal.SIGKILL)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        lines = (data_dir / "pg18" / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    return int(lines[0]) if len(lines) > 7 and lines[7].strip() == "ready" else None


async def test_db_stop_under_a_server_is_refused_and_forced_stop_heals(
    processes: Processes, tmp_path: Path, e2e_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in e2e_env.items() if k not in ("DATABASE_URL", "REGISTRY_DATABASE_URL")}
    env["CODEBASE_MCP_DATA_DIR"] = str(data_dir)
    server = await processes.http_server(env=env)
    first_pid = _postmaster_pid(data_dir)
    assert first_pid is not None

    def db_stop(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "codebase_mcp", "db", "stop", *extra],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    refused = await asyncio.to_thread(db_stop)
    assert refused.returncode == 1, refused
    assert f"pid {server.proc.pid}" in refused.stderr and "--force" in refused.stderr
    assert _postmaster_pid(data_dir) == first_pid  # untouched

    forced = await asyncio.to_thread(db_stop, "--force")
    assert forced.returncode == 0 and forced.stdout.strip() == "stopped", forced

    async def restarted() -> int | None:
        pid = _postmaster_pid(data_dir)
        return pid if pid is not None and pid != first_pid else None

    await wait_for(restarted, within=30, interval=0.2)
    # Pools and listeners recover: a job runs and its end is pushed to the watcher.
    async with server.client() as client:
        job = await start_job(client, make_python_repo(tmp_path / "repo", 3), f"e2e-{uuid.uuid4().hex[:8]}")
        watched = await client.call_tool("watch_indexing", {"job_id": job.job_id}, timeout=JOB_TIMEOUT)
        assert watched.structured_content["status"] == "completed", watched.structured_content
    async with server.http(timeout=30) as http:
        assert (await http.get("/web/api/projects")).status_code == 200
    assert "starting it again" in server.proc.log()

    server.proc.kill()  # SIGKILL: its entry goes stale, `db stop` no longer refuses
    after = await asyncio.to_thread(db_stop)
    assert after.returncode == 0 and after.stdout.strip() == "stopped", after


OUR_CONNECTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name LIKE 'codebase-mcp%' AND (datname = $1 OR datname = ANY($2::text[]))
"""


async def test_a_flood_of_projects_leaves_few_connections_held(
    processes: Processes, tmp_path: Path, e2e_env: dict[str, str], connect_db: Connect, registry_db: str
) -> None:
    """`serve --no-workers` + 2 workers, 40 projects with a job each, then idle: connections do not
    grow with projects (they were ~2 per project and process, and the 48th project failed)."""
    env = {**e2e_env, "POOL_IDLE_SECONDS": "1", "MAX_CONCURRENT_INDEXING_JOBS": "2"}
    queue = await processes.http_server("--no-workers", env=env)
    await asyncio.gather(processes.worker(env), processes.worker(env))
    repo = make_python_repo(tmp_path / "tiny", 1)
    jobs = []
    async with queue.client() as client:
        for i in range(40):
            jobs.append(await start_job(client, repo, f"e2e-flood-{i:02d}-{uuid.uuid4().hex[:6]}"))
    admin = await connect_db("postgres")
    databases = [j.database_name for j in jobs]

    async def all_completed() -> bool:
        statuses = []
        for job in jobs:
            db = await connect_db(job.database_name)
            statuses.append(await db.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", uuid.UUID(job.job_id)))
            await db.close()
        assert "failed" not in statuses, statuses
        return all(s == "completed" for s in statuses)

    await wait_for(all_completed, within=JOB_TIMEOUT * 2, interval=1.0)

    async def settled() -> int | None:
        held: int = await admin.fetchval(OUR_CONNECTIONS, registry_db, databases)
        return held if held <= 8 else None

    try:
        held = await wait_for(settled, within=30, interval=0.5)
    except TimeoutError:
        rows = await admin.fetch(
            "SELECT datname, application_name, count(*) FROM pg_stat_activity WHERE application_name LIKE "
            "'codebase-mcp%' AND (datname = $1 OR datname = ANY($2::text[])) GROUP BY 1, 2",
            registry_db, databases,
        )  # fmt: skip
        raise AssertionError(f"connections still held after 30 s idle: {[tuple(r) for r in rows]}") from None
    assert held <= 8  # 2 workers: a LISTEN link and a spare slot connection each, on the registry
    for proc in processes.started:
        assert "too many clients" not in proc.log()
