"""Background-job latencies on one embedded PostgreSQL, next to procrastinate in the same run.

Usage: python bench/jobs_bench.py [--iterations 100] [--calls 200] [--data-dir DIR]

Measures, against idle workers whose job function only waits to be cancelled (so the
figures are the push paths, not indexing):
  - dispatch: start call → job function running
  - cancel:   cancel call → job task stopped (CancelledError inside the job function)
  - get_indexing_status round trip
  - commit → subscriber: a job-row write → the listener's subscriber has the notification
Ours, three ways: MCP tool calls (in-memory FastMCP client) to a server whose worker runs in
the same process (woken in-process by the start call); MCP tool calls with a standalone worker
(woken by NOTIFY); and that standalone worker driven by the same SQL the tools run
(`queries.create` / `queries.request_cancel`), comparable with procrastinate's direct library
calls (`defer_async`, `cancel_job_by_id_async(abort=True)`). procrastinate (optional:
`pip install procrastinate`, not a dependency) runs interleaved with ours on the same server.
Figures, not assertions: a durable commit on a small VM swings a lot over minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from fastmcp import Client

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.db.cluster import with_database
from server.db.embedded import EmbeddedPostgres
from server.embeddings import Embedder, create_embedder
from server.indexer.pipeline import IndexResult
from server.indexer.progress import Progress
from server.jobs import queries
from server.jobs.channels import JOBS_CHANNEL
from server.jobs.models import IndexingJobCreate
from server.jobs.running import JobRun
from server.mcp.server import build_server
from server.settings import Settings

OURS_IN_SERVER = "ours: worker in server"
OURS_STANDALONE = "ours: standalone worker"
OURS_DIRECT = "ours: standalone, SQL calls"
PROCRASTINATE = "procrastinate"


class Marks:
    """When each job function started and stopped (time.monotonic), awaitable in either order."""

    def __init__(self) -> None:
        self._futures: dict[tuple[str, str], asyncio.Future[float]] = {}

    def _future(self, kind: str, key: str) -> asyncio.Future[float]:
        return self._futures.setdefault((kind, key), asyncio.get_running_loop().create_future())

    def mark(self, kind: str, key: str) -> None:
        future = self._future(kind, key)
        if not future.done():
            future.set_result(time.monotonic())

    async def wait(self, kind: str, key: str) -> float:
        return await asyncio.wait_for(self._future(kind, key), 30)


async def poll(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (1 ms steps, 30 s at most) until `check` is true."""
    deadline = time.monotonic() + 30
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.001)


async def wait_until_cancelled(marks: Marks, key: str) -> None:
    marks.mark("started", key)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        marks.mark("stopped", key)
        raise


class WaitingApp(App):
    """An App whose jobs do nothing but wait to be cancelled."""

    def __init__(self, settings: Settings, embedder: Embedder, marks: Marks) -> None:
        super().__init__(settings, embedder=embedder)
        self.marks = marks

    async def run_job(self, run: JobRun) -> IndexResult:
        await wait_until_cancelled(self.marks, str(run.job_id))
        raise AssertionError("unreachable: the job waits until it is cancelled")


@dataclass
class Samples:
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, metric: str, system: str, seconds: float) -> None:
        self.values.setdefault((metric, system), []).append(seconds * 1000)

    def row(self, metric: str, system: str) -> str:
        data = self.values.get((metric, system))
        if not data:
            return ""
        cuts = statistics.quantiles(data, n=100, method="inclusive")
        return f"{statistics.median(data):8.2f} {cuts[98]:8.2f} {max(data):8.2f} {len(data):5d}"


@dataclass
class OurSide:
    name: str
    client: Client[Any]
    worker_app: App
    pool: asyncpg.Pool  # the project database, for the direct-SQL variant
    repo: Path
    project_id: str
    marks: Marks
    database: str = ""  # the project database's name
    direct: bool = False  # True: queries.create / request_cancel instead of MCP tool calls

    async def _start(self) -> str:
        if self.direct:
            job = IndexingJobCreate(repo_path=str(self.repo), repo_name=self.repo.name, project_id=self.project_id)
            row, _ = await queries.create(self.pool, job)
            registry = await self.worker_app.cluster.registry_pool()
            await queries.hint_claimable(registry, self.database)  # workers LISTEN on the registry only
            return str(row.id)
        args = {"repo_path": str(self.repo), "project_id": self.project_id}
        result = await self.client.call_tool("start_indexing_background", args)
        return str(result.structured_content["job_id"])  # type: ignore[index]

    async def _cancel(self, job_id: str) -> None:
        if self.direct:
            assert await queries.request_cancel(self.pool, uuid.UUID(job_id)) is not None
        else:
            await self.client.call_tool("cancel_indexing_background", {"job_id": job_id, "project_id": self.project_id})

    async def cycle(self, samples: Samples) -> str:
        t0 = time.monotonic()
        job_id = await self._start()
        t1 = time.monotonic()
        started = await self.marks.wait("started", job_id)
        samples.add("dispatch: call start → job running", self.name, started - t0)
        samples.add("dispatch: call returned → job running", self.name, started - t1)
        t0 = time.monotonic()
        await self._cancel(job_id)
        t1 = time.monotonic()
        stopped = await self.marks.wait("stopped", job_id)
        samples.add("cancel: call start → task stopped", self.name, stopped - t0)
        samples.add("cancel: call returned → task stopped", self.name, stopped - t1)
        worker = self.worker_app.worker
        assert worker is not None

        async def idle() -> bool:  # slot released: ready for the next job
            return not worker.running

        await poll(idle, f"{self.name} worker still busy")
        return job_id


class ProcrastinateSide:
    name = PROCRASTINATE

    def __init__(self, app: Any, task: Any, marks: Marks, doing: object) -> None:
        self.app = app
        self.task = task
        self.marks = marks
        self.doing = doing  # procrastinate's Status.DOING

    async def cycle(self, samples: Samples) -> str:
        key = uuid.uuid4().hex
        t0 = time.monotonic()
        job_id: int = await self.task.defer_async(key=key)
        t1 = time.monotonic()
        started = await self.marks.wait("started", key)
        samples.add("dispatch: call start → job running", self.name, started - t0)
        samples.add("dispatch: call returned → job running", self.name, started - t1)
        t0 = time.monotonic()
        await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        t1 = time.monotonic()
        stopped = await self.marks.wait("stopped", key)
        samples.add("cancel: call start → task stopped", self.name, stopped - t0)
        samples.add("cancel: call returned → task stopped", self.name, stopped - t1)

        async def idle() -> bool:
            return bool(await self.app.job_manager.get_job_status_async(job_id) != self.doing)

        await poll(idle, "procrastinate worker still busy")
        return key


def _settings(server_dsn: str, data_dir: Path, registry: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=server_dsn,
        registry_database_url=with_database(server_dsn, registry),
        data_dir=data_dir,
        worker_poll_interval_seconds=60,  # no polling help: pushes only
        cancellation_check_interval_seconds=60,
        heartbeat_interval_seconds=60,
        stale_job_seconds=600,
    )


@contextlib.asynccontextmanager
async def our_side(
    name: str, server_dsn: str, data_dir: Path, embedder: Embedder, repo: Path, *, standalone: bool
) -> AsyncIterator[OurSide]:
    marks = Marks()
    slug = "standalone" if standalone else "inserver"
    settings = _settings(server_dsn, data_dir, f"bench_jobs_registry_{slug}")
    serving = WaitingApp(settings, embedder, marks)
    await serving.start(workers=not standalone)
    worker_app = serving
    if standalone:
        worker_app = WaitingApp(settings, embedder, marks)
        await worker_app.start(workers=True)
    try:
        project = await serving.registry.get_or_create(f"bench-{slug}")
        pool = await serving.cluster.pool(project.database_name)
        async with Client(build_server(serving, manage_app=False)) as client:
            yield OurSide(name, client, worker_app, pool, repo, project.id, marks, project.database_name)
    finally:
        if worker_app is not serving:
            await worker_app.close()
        await serving.close()


@contextlib.asynccontextmanager
async def procrastinate_side(server_dsn: str) -> AsyncIterator[ProcrastinateSide | None]:
    try:
        import procrastinate
    except ImportError:
        print("procrastinate is not installed (`pip install procrastinate`): comparison skipped\n")
        yield None
        return
    logging.getLogger("procrastinate").setLevel(logging.ERROR)  # it warns about apps defined in __main__
    database = "bench_jobs_procrastinate"
    admin = await asyncpg.connect(server_dsn)
    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
        await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    marks = Marks()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=with_database(server_dsn, database)))

    @app.task(name="bench_wait")
    async def bench_wait(key: str) -> None:
        await wait_until_cancelled(marks, key)

    async with app.open_async():
        conn = await asyncpg.connect(with_database(server_dsn, database))
        if await conn.fetchval("SELECT to_regclass('procrastinate_jobs') IS NULL"):
            await app.schema_manager.apply_schema_async()
        await conn.close()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=1, install_signal_handlers=False, wait=True, listen_notify=True)
        )
        await asyncio.sleep(1)  # let it LISTEN
        try:
            yield ProcrastinateSide(app, bench_wait, marks, procrastinate.jobs.Status.DOING)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def time_calls(samples: Samples, metric: str, system: str, n: int, call: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(n):
        t0 = time.monotonic()
        await call()
        samples.add(metric, system, time.monotonic() - t0)


async def commit_to_subscriber(samples: Samples, side: OurSide, n: int) -> None:
    """A job row written n times; the subscriber sees each write (async-commit progress and durable)."""
    app = side.worker_app
    project = await app.registry.require(side.project_id)
    pool = await app.cluster.pool(project.database_name)
    writer = "bench-writer:0:0"
    job_id: uuid.UUID = await pool.fetchval(
        """
        INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status, worker_id, heartbeat_at, started_at)
        VALUES ($1, 'notify-probe', $2, 'running', $3, now(), now()) RETURNING id
        """,
        f"/nonexistent/notify-probe/{uuid.uuid4().hex}",
        side.project_id,
        writer,
    )
    sub = await app.notifier.subscribe(app.cluster.dsn_for(project.database_name), JOBS_CHANNEL, str(job_id))
    try:
        for i in range(n):
            t0 = time.monotonic()
            progress = Progress(i % 100, f"tick {i}", "storing", files_scanned=i, files_indexed=i, chunks_created=i)
            await queries.update_progress(pool, job_id, writer, progress)
            t1 = time.monotonic()
            event = await asyncio.wait_for(sub.get(), 10)
            samples.add("commit→subscriber, async commit: write call start", OURS_IN_SERVER, event.received_at - t0)
            samples.add("commit→subscriber, async commit: write returned", OURS_IN_SERVER, event.received_at - t1)
        for i in range(n):
            t0 = time.monotonic()
            await pool.execute("UPDATE indexing_jobs SET progress_message = $2 WHERE id = $1", job_id, f"durable {i}")
            t1 = time.monotonic()
            event = await asyncio.wait_for(sub.get(), 10)
            samples.add("commit→subscriber, durable: write call start", OURS_IN_SERVER, event.received_at - t0)
            samples.add("commit→subscriber, durable: write returned", OURS_IN_SERVER, event.received_at - t1)
    finally:
        await sub.close()
        await pool.execute("UPDATE indexing_jobs SET status = 'cancelled', completed_at = now() WHERE id = $1", job_id)


def print_table(samples: Samples) -> None:
    metrics = list(dict.fromkeys(metric for metric, _ in samples.values))
    systems = [OURS_IN_SERVER, OURS_STANDALONE, OURS_DIRECT, PROCRASTINATE]
    print(f"{'metric (ms)':<52} {'system':<28} {'p50':>8} {'p99':>8} {'max':>8} {'n':>5}")
    for metric in metrics:
        for system in systems:
            line = samples.row(metric, system)
            if line:
                print(f"{metric:<52} {system:<28} {line}")


async def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobs-bench-")))
        embedded = EmbeddedPostgres(data_dir)
        server_dsn = embedded.ensure_running().dsn("postgres")
        if args.data_dir is None:
            stack.callback(embedded.stop)
        repo = data_dir / "repo"
        repo.mkdir(exist_ok=True)
        embedder = create_embedder("local")
        samples = Samples()
        async with (
            our_side(OURS_IN_SERVER, server_dsn, data_dir, embedder, repo, standalone=False) as in_server,
            our_side(OURS_STANDALONE, server_dsn, data_dir, embedder, repo, standalone=True) as standalone,
            procrastinate_side(server_dsn) as procrastinate,
        ):
            direct = dataclasses.replace(standalone, name=OURS_DIRECT, direct=True)
            sides: list[OurSide | ProcrastinateSide] = [in_server, standalone, direct]
            if procrastinate is not None:
                sides.append(procrastinate)
            for side in sides:  # warm-up: pools, prepared statements, LISTENs
                for _ in range(args.warmup):
                    await side.cycle(Samples())
            for i in range(args.iterations):
                order = sides[i % len(sides) :] + sides[: i % len(sides)]  # interleaved, rotating who goes first
                for side in order:
                    await side.cycle(samples)
            status_args = {"job_id": await in_server.cycle(Samples()), "project_id": in_server.project_id}
            await time_calls(
                samples, "get_indexing_status round trip", OURS_IN_SERVER, args.calls,
                lambda: in_server.client.call_tool("get_indexing_status", status_args),
            )  # fmt: skip
            await commit_to_subscriber(samples, in_server, args.calls)
        await embedder.aclose()
    print_table(samples)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100, help="dispatch+cancel cycles per system")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="status calls and commit→subscriber writes")
    parser.add_argument("--data-dir", type=Path, help="embedded PostgreSQL here, left running (default: a temp dir)")
    asyncio.run(main(parser.parse_args()))
