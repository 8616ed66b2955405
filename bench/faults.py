"""Long-running fault injection against real `codebase-mcp` processes on a private embedded PostgreSQL.

Usage: python bench/faults.py SCENARIO [--rounds N] [--projects N] [--data-dir DIR]

Scenarios (each prints one line per round and a summary; exit status 1 if anything did not hold):
  flood       `serve --no-workers` + 2 workers, --projects projects (default 200) with one job each,
              then idle: PostgreSQL connections held, total and per process kind (target: < 50).
  kill        kill -9 of the server mid-job at a random moment, --rounds times: no process of its
              group survives, and the restarted server finishes the job.
  pg-restart  `pg_ctl stop -m immediate` mid-job (the server's keeper starts PostgreSQL again),
              --rounds times: the job still completes.
  listener    pg_terminate_backend on every LISTEN connection mid-job, --rounds times: watch_indexing
              still returns the end.
  swap        ALLOWED_ROOTS=root; root/swap becomes a symlink to an outside tree at a random moment of
              a job, --rounds times: nothing outside is ever stored.

Everything runs on loopback and on a data dir of its own (default /tmp/codebase-mcp-faults); every
process it starts is stopped before it exits. Figures taken while others use the machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import asyncpg
import httpx
from fastmcp import Client

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.db.embedded import EmbeddedPostgres
from tests.repos import make_python_repo

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "faults-bench-token-0123456789abcdef"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(check: Callable[[], Awaitable[T | None]], within: float, interval: float = 0.2) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within}s")
        await asyncio.sleep(interval)


def group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


@dataclass
class Bench:
    data_dir: Path
    work: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.work / f"proc{len(self.procs)}-{args[0]}.log", "ab")  # noqa: SIM115 - child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "codebase_mcp", *args], env=env or self.env, cwd=self.work,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    async def http(self, *extra: str, env: dict[str, str] | None = None, port: int | None = None) -> tuple[Any, int]:
        port = port or free_port()
        proc = self.spawn("serve", "--transport", "http", "--port", str(port), *extra, env=env)

        async def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                async with httpx.AsyncClient(timeout=2, headers={"Authorization": f"Bearer {TOKEN}"}) as h:
                    return (await h.get(f"http://127.0.0.1:{port}/web/api/projects")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, 180)
        return proc, port

    def kill_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def client(port: int) -> Client[Any]:
    return Client(f"http://127.0.0.1:{port}/mcp", auth=TOKEN, timeout=600)


async def start(c: Client[Any], repo: Path, project: str) -> dict[str, Any]:
    result = await c.call_tool("start_indexing_background", {"repo_path": str(repo), "project_id": project})
    return dict(result.structured_content or {})


async def job_status(admin_dsn: str, database: str, job_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(admin_dsn.replace("/postgres?", f"/{database}?"))
    try:
        row = await conn.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", uuid.UUID(job_id))
        assert row is not None
        return row
    finally:
        await conn.close()


async def wait_final(admin_dsn: str, database: str, job_id: str, within: float = 300) -> asyncpg.Record:
    async def final() -> asyncpg.Record | None:
        row = await job_status(admin_dsn, database, job_id)
        return row if row["status"] in ("completed", "failed", "cancelled") else None

    return await wait_for(final, within, 0.5)


# --- scenarios ---------------------------------------------------------------------------------


async def flood(b: Bench, admin: str, projects: int) -> bool:
    env = {**b.env, "POOL_IDLE_SECONDS": "5"}
    _, port = await b.http("--no-workers", env=env)
    b.spawn("worker", env=env)
    b.spawn("worker", env=env)
    repo = make_python_repo(b.work / "tiny", 1)
    conn = await asyncpg.connect(admin)
    peak = 0
    t0 = time.monotonic()
    jobs = []
    async with client(port) as c:
        for i in range(projects):
            jobs.append(await start(c, repo, f"flood-{i:03d}"))
            held = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'codebase%'")
            peak = max(peak, held)
            if (i + 1) % 25 == 0:
                print(f"  {i + 1} projects queued in {time.monotonic() - t0:.0f}s; connections now {held}", flush=True)
    failed = 0
    for job in jobs:
        row = await wait_final(admin, job["database_name"], job["job_id"], 900)
        failed += row["status"] != "completed"
    print(f"  all {projects} jobs final in {time.monotonic() - t0:.0f}s ({failed} not completed)", flush=True)
    await asyncio.sleep(20)  # idle: pools shrink (POOL_IDLE_SECONDS=5), sweeps are short-lived
    samples = []
    for _ in range(10):
        samples.append(
            await conn.fetch(
                "SELECT application_name, count(*) AS n FROM pg_stat_activity "
                "WHERE application_name LIKE 'codebase%' GROUP BY 1 ORDER BY 1"
            )
        )
        await asyncio.sleep(1)
    await conn.close()
    totals = [sum(r["n"] for r in s) for s in samples]
    print(f"flood: {projects} projects x 3 processes idle: connections held min {min(totals)} max {max(totals)} "
          f"(peak while queueing {peak}); by kind at the max: "
          + ", ".join(f"{r['application_name']}={r['n']}" for r in samples[totals.index(max(totals))]))  # fmt: skip
    logs = "".join(p.read_text(errors="replace") for p in b.work.glob("proc*.log"))
    too_many = logs.count("too many clients")
    print(f"flood: 'too many clients' in logs: {too_many}; jobs not completed: {failed}")
    return max(totals) < 50 and failed == 0 and too_many == 0


async def kill(b: Bench, admin: str, rounds: int) -> bool:
    held = 0
    repo = make_python_repo(b.work / "repo", 200)
    port = free_port()
    for r in range(rounds):
        proc, _ = await b.http(port=port)
        async with client(port) as c:
            job = await start(c, repo, f"kill-{r}")
        await asyncio.sleep(random.uniform(0.2, 4.0))
        children = [p for p in group(proc.pid) if p != proc.pid]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        pgid = proc.pid

        async def gone(pgid: int = pgid) -> bool:
            return not group(pgid)

        with contextlib.suppress(TimeoutError):
            await wait_for(gone, 10, 0.1)
        orphans = len(group(pgid))
        restarted, _ = await b.http(port=port)
        row = await wait_final(admin, job["database_name"], job["job_id"])
        ok = orphans == 0 and row["status"] == "completed"
        held += ok
        verdict = "held" if ok else "BROKEN"
        print(f"kill round {r}: {len(children)} children at the kill, {orphans} left after 10 s, job "
              f"{row['status']} after {row['attempts']} attempts -> {verdict}", flush=True)  # fmt: skip
        os.killpg(restarted.pid, signal.SIGKILL)
        restarted.wait()
        (repo / "pkg" / "mod_0000.py").write_text(f"# round {r}\n")  # something to do next round
    print(f"kill: {held}/{rounds} held")
    return held == rounds


async def pg_restart(b: Bench, admin: str, rounds: int, embedded: EmbeddedPostgres) -> bool:
    held = 0
    _, port = await b.http()
    repo = make_python_repo(b.work / "repo", 200)
    from server.db.embedded import _bin_dir

    for r in range(rounds):
        async with client(port) as c:
            job = await start(c, repo, f"pgr-{r}")
        await asyncio.sleep(random.uniform(0.5, 4.0))
        running = embedded.running()
        assert running is not None
        # A crash-like stop; the server's keeper (server/db/keeper.py) starts it again by itself.
        await asyncio.to_thread(
            subprocess.run,
            [str(_bin_dir() / "pg_ctl"), "-D", str(embedded.pgdata), "-m", "immediate", "-w", "stop"],
            user="pgserver" if os.geteuid() == 0 else None, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

        async def back(old: int = running.pid) -> bool:
            now = embedded.running()
            return now is not None and now.pid != old

        await wait_for(back, 60)
        row = await wait_final(admin, job["database_name"], job["job_id"])
        ok = row["status"] == "completed"
        held += ok
        print(f"pg-restart round {r}: job {row['status']} after {row['attempts']} attempts -> "
              f"{'held' if ok else 'BROKEN: ' + str(row['error_message'])}", flush=True)  # fmt: skip
        (repo / "pkg" / "mod_0000.py").write_text(f"# round {r}\n")
    print(f"pg-restart: {held}/{rounds} held")
    return held == rounds


async def listener(b: Bench, admin: str, rounds: int) -> bool:
    held = 0
    _, port = await b.http()
    repo = make_python_repo(b.work / "repo", 120)
    conn = await asyncpg.connect(admin)
    for r in range(rounds):
        async with client(port) as c:
            job = await start(c, repo, f"lst-{r}")
            watch = asyncio.create_task(c.call_tool("watch_indexing", {"job_id": job["job_id"]}, timeout=600))
            await asyncio.sleep(random.uniform(0.3, 3.0))
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'codebase-mcp-listener'"
            )
            result = await watch
        status = (result.structured_content or {}).get("status")
        ok = status == "completed"
        held += ok
        print(f"listener round {r}: {killed} LISTEN connections killed, watch returned {status} -> "
              f"{'held' if ok else 'BROKEN'}", flush=True)  # fmt: skip
        (repo / "pkg" / "mod_0000.py").write_text(f"# round {r}\n")
    await conn.close()
    print(f"listener: {held}/{rounds} held")
    return held == rounds


async def swap(b: Bench, admin: str, rounds: int) -> bool:
    held = 0
    root = b.work / "root"
    outside = b.work / "outside"
    make_python_repo(outside, 150, prefix="mod")
    for f in (outside / "pkg").iterdir():
        f.write_text(f.read_text() + "\nSECRET_OUTSIDE_MARKER = 1\n")
    env = {**b.env, "ALLOWED_ROOTS": str(root)}
    _, port = await b.http(env=env)
    for r in range(rounds):
        target = root / "swap"
        if target.is_symlink():
            target.unlink()
        make_python_repo(target, 150)
        async with client(port) as c:
            job = await start(c, target, "swap")
        await asyncio.sleep(random.uniform(0.0, 3.0))
        shutil.rmtree(target)
        target.symlink_to(outside, target_is_directory=True)
        row = await wait_final(admin, job["database_name"], job["job_id"])
        db = await asyncpg.connect(admin.replace("/postgres?", f"/{job['database_name']}?"))
        leaked = await db.fetchval("SELECT count(*) FROM chunks WHERE content LIKE '%SECRET_OUTSIDE_MARKER%'")
        await db.close()
        ok = leaked == 0
        held += ok
        print(f"swap round {r}: job {row['status']} ({(row['error_message'] or '')[:70]}), outside chunks stored: "
              f"{leaked} -> {'held' if ok else 'BROKEN'}", flush=True)  # fmt: skip
        target.unlink()
    print(f"swap: {held}/{rounds} held")
    return held == rounds


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["flood", "kill", "pg-restart", "listener", "swap"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/codebase-mcp-faults"))
    args = parser.parse_args()
    shutil.rmtree(args.data_dir, ignore_errors=True)
    work = args.data_dir / "work"
    work.mkdir(parents=True)
    embedded = EmbeddedPostgres(args.data_dir, port=free_port(), durable=False)
    running = embedded.ensure_running()
    admin = running.dsn("postgres")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REGISTRY_DATABASE_URL")}
    env.update(
        CODEBASE_MCP_DATA_DIR=str(args.data_dir), EMBEDDED_PG_PORT=str(running.port), HTTP_AUTH_TOKEN=TOKEN,
        PYTHONPATH=str(ROOT), HEARTBEAT_INTERVAL_SECONDS="0.5", STALE_JOB_SECONDS="5",
        WORKER_POLL_INTERVAL_SECONDS="5", PROGRESS_UPDATE_INTERVAL_SECONDS="0.5", LOG_LEVEL="WARNING",
    )  # fmt: skip
    bench = Bench(args.data_dir, work, env)
    try:
        if args.scenario == "flood":
            ok = await flood(bench, admin, args.projects)
        elif args.scenario == "kill":
            ok = await kill(bench, admin, args.rounds)
        elif args.scenario == "pg-restart":
            ok = await pg_restart(bench, admin, args.rounds, embedded)
        elif args.scenario == "listener":
            ok = await listener(bench, admin, args.rounds)
        else:
            ok = await swap(bench, admin, args.rounds)
    finally:
        bench.kill_all()
        embedded.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
