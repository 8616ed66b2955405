"""The Notifier against real PostgreSQL: indexing_jobs triggers, fan-out, coalescing and reconnects."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg
import pytest

from listener import Event, Notifier, Subscription
from server.db.cluster import database_of
from server.db.embedded import RunningServer
from server.db.registry import Registry
from server.jobs.channels import JOBS_CHANNEL
from tests.polling import wait_for

CHANNEL = JOBS_CHANNEL


@dataclass
class JobsDb:
    dsn: str
    writer: asyncpg.Connection

    async def insert(self, name: str = "") -> str:
        name = name or uuid.uuid4().hex[:8]
        job = await self.writer.fetchval(
            "INSERT INTO indexing_jobs (repo_path, repo_name, project_id) VALUES ($1, $2, 'p') RETURNING id",
            f"/tmp/{name}",
            name,
        )
        return str(job)

    async def progress(self, job: str, pct: int) -> None:
        await self.writer.execute("UPDATE indexing_jobs SET progress_percentage = $2 WHERE id = $1", job, pct)


async def _jobs_db(registry: Registry, project_id: str) -> AsyncIterator[JobsDb]:
    project = await registry.get_or_create(project_id)
    dsn = registry.cluster.dsn_for(project.database_name)
    writer = await asyncpg.connect(dsn)
    try:
        yield JobsDb(dsn, writer)
    finally:
        await writer.close()


@pytest.fixture
async def db(registry: Registry, project_id: str) -> AsyncIterator[JobsDb]:
    async for jobs_db in _jobs_db(registry, project_id):
        yield jobs_db


@pytest.fixture
def app_name() -> str:
    return f"listener-test-{uuid.uuid4().hex[:8]}"


def named_connect(app_name: str) -> Callable[[str], Awaitable[asyncpg.Connection]]:
    async def connect(dsn: str) -> asyncpg.Connection:
        return await asyncpg.connect(dsn, server_settings={"application_name": app_name})

    return connect


@pytest.fixture
async def notifier(app_name: str) -> AsyncIterator[Notifier]:
    n = Notifier(connect=named_connect(app_name), probe_interval=0.3, reconnect_min=0.05, reconnect_max=0.5)
    yield n
    await n.close()


async def next_event(sub: Subscription, within: float = 5.0) -> Event:
    return await asyncio.wait_for(sub.get(), within)


async def backends(conn: asyncpg.Connection, app_name: str) -> list[int]:
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app_name)
    return [r["pid"] for r in rows]


async def test_update_delivers_the_trigger_payload(db: JobsDb, notifier: Notifier) -> None:
    sub = await notifier.subscribe(db.dsn, CHANNEL)
    job = await db.insert()  # right after subscribe: LISTEN is already active
    inserted = await next_event(sub)
    assert (inserted.kind, inserted.topic, inserted.payload["op"]) == ("notify", job, "insert")

    await db.progress(job, 40)
    event = await next_event(sub)
    assert event.channel == CHANNEL and event.topic == job and event.kind == "notify"
    assert event.payload == {"id": job, "status": "pending", "progress": 40, "version": 1, "op": "update"}
    assert inserted.received_at <= event.received_at <= time.monotonic()


async def test_topic_subscriber_sees_only_its_job_and_wildcard_sees_both(db: JobsDb, notifier: Notifier) -> None:
    a, b = await db.insert(), await db.insert()
    only_a = await notifier.subscribe(db.dsn, CHANNEL, a)
    everything = await notifier.subscribe(db.dsn, CHANNEL)

    await db.progress(b, 10)
    await db.progress(a, 20)
    seen = [(e.topic, e.payload["progress"]) for e in [await next_event(everything), await next_event(everything)]]
    assert seen == [(b, 10), (a, 20)]
    event = await next_event(only_a)
    assert (event.topic, event.payload["progress"]) == (a, 20)
    assert len(only_a) == 0  # b's earlier update never reached it


async def test_unread_progress_coalesces_to_the_latest_version(db: JobsDb, notifier: Notifier) -> None:
    job = await db.insert()
    sub = await notifier.subscribe(db.dsn, CHANNEL, job)
    for pct in range(1, 51):
        await db.progress(job, pct)
    await wait_for(lambda: notifier.stats()[db.dsn]["notifications"] >= 50, within=5, interval=0.01)

    start = time.monotonic()
    event = await next_event(sub)
    assert time.monotonic() - start < 0.5
    assert (event.payload["progress"], event.payload["version"]) == (50, 50)
    assert len(sub) == 0
    stats = notifier.stats()[db.dsn]
    assert stats["delivered"] == 50 and stats["coalesced"] == 49


async def test_slow_subscriber_neither_stalls_a_fast_one_nor_grows(db: JobsDb, notifier: Notifier) -> None:
    jobs = [await db.insert() for _ in range(20)]
    slow = await notifier.subscribe(db.dsn, CHANNEL, maxsize=5)
    fast = await notifier.subscribe(db.dsn, CHANNEL)

    async def read_fast() -> list[str | None]:
        return [(await next_event(fast)).topic for _ in jobs]

    reader = asyncio.create_task(read_fast())
    for job in jobs:
        await db.progress(job, 1)
    assert await asyncio.wait_for(reader, 5) == jobs  # every job, in commit order

    assert len(slow) <= 5
    overflow = await next_event(slow)
    assert (overflow.kind, overflow.payload) == ("resync", {})
    stats = notifier.stats()[db.dsn]
    assert stats["overflows"] >= 1 and stats["resyncs"] >= 1 and stats["dropped"] >= 5


async def test_overflow_replaces_the_backlog_with_one_resync(db: JobsDb, notifier: Notifier) -> None:
    jobs = [await db.insert() for _ in range(5)]
    sub = await notifier.subscribe(db.dsn, CHANNEL, maxsize=3)
    for job in jobs:
        await db.progress(job, 7)
    await wait_for(lambda: notifier.stats()[db.dsn]["notifications"] >= 5, within=5, interval=0.01)

    first, second = await next_event(sub), await next_event(sub)
    assert first.kind == "resync"  # jobs 0-2 queued, job 3 overflowed them all
    assert (second.kind, second.topic) == ("notify", jobs[4])
    assert len(sub) == 0
    assert notifier.stats()[db.dsn]["overflows"] == 1


async def test_terminated_backend_reconnects_resyncs_and_delivers_again(
    db: JobsDb, notifier: Notifier, app_name: str
) -> None:
    job = await db.insert()
    sub = await notifier.subscribe(db.dsn, CHANNEL, job)
    pid = notifier.backend_pid(db.dsn)
    assert pid is not None and await backends(db.writer, app_name) == [pid]

    assert await db.writer.fetchval("SELECT pg_terminate_backend($1)", pid)
    event = await next_event(sub)
    assert event.kind == "resync" and event.topic == job
    assert notifier.stats()[db.dsn]["reconnects"] == 1
    new_pid = notifier.backend_pid(db.dsn)
    assert new_pid is not None and new_pid != pid

    await db.progress(job, 55)
    event = await next_event(sub)
    assert (event.kind, event.payload["progress"]) == ("notify", 55)


async def test_missing_listen_on_a_live_connection_is_restored_with_a_resync(db: JobsDb, app_name: str) -> None:
    opened: list[asyncpg.Connection] = []

    async def connect(dsn: str) -> asyncpg.Connection:
        opened.append(await named_connect(app_name)(dsn))
        return opened[-1]

    async with Notifier(connect=connect, probe_interval=0.3) as notifier:
        job = await db.insert()
        sub = await notifier.subscribe(db.dsn, CHANNEL, job)
        await opened[0].execute("UNLISTEN *")  # as a pooling proxy's DISCARD ALL would; the probe is 0.3 s away

        event = await next_event(sub)
        assert event.kind == "resync"
        stats = notifier.stats()[db.dsn]
        assert stats["relistens"] == 1 and stats["reconnects"] == 0 and len(opened) == 1
        await db.progress(job, 9)
        assert (await next_event(sub)).payload["progress"] == 9


class FreezableProxy:
    """A TCP relay whose existing connections can be frozen: a half-open link, silent both ways."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen: list[asyncio.Event] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.refusing = False  # close new connections at once, as an unreachable server would

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        for gate in self.frozen:
            gate.set()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_w.close()
            return
        server_r, server_w = await asyncio.open_connection(*self.target)
        gate = asyncio.Event()
        self.frozen.append(gate)
        self.writers += [client_w, server_w]
        for src, dst in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(src, dst, gate))
            self.tasks.add(task)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event) -> None:
        while data := await src.read(65536):
            if gate.is_set():
                await asyncio.Event().wait()  # swallow everything, forever
            dst.write(data)
            await dst.drain()
        dst.close()  # pass the end of the stream on

    async def close(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()


async def test_half_open_connection_is_caught_by_the_probe(db: JobsDb, pg_server: RunningServer) -> None:
    assert pg_server.tcp_host is not None
    proxy = FreezableProxy(pg_server.tcp_host, pg_server.port)
    port = await proxy.start()
    assert pg_server.password is not None  # TCP needs the password (the socket does not)
    dsn = f"postgresql://postgres:{quote(pg_server.password, safe='')}@127.0.0.1:{port}/{database_of(db.dsn)}"
    notifier = Notifier(probe_interval=0.2, probe_timeout=0.3, reconnect_min=0.05, reconnect_max=0.5)
    try:
        job = await db.insert()
        sub = await notifier.subscribe(dsn, CHANNEL, job)
        proxy.freeze()  # no FIN, no RST: only an active probe can tell
        proxy.refusing = True
        await db.progress(job, 1)  # lost on the frozen link
        await wait_for(lambda: notifier.stats()[dsn]["reconnect_failures"] >= 2, within=5, interval=0.01)
        assert len(sub) == 0 and notifier.backend_pid(dsn) is None

        proxy.refusing = False
        event = await next_event(sub)
        assert event.kind == "resync"
        stats = notifier.stats()[dsn]
        assert stats["probe_failures"] == 1 and stats["reconnects"] == 1
        await db.progress(job, 2)
        assert (await next_event(sub)).payload["progress"] == 2
    finally:
        await notifier.close()
        await proxy.close()


async def test_two_databases_are_independent(db: JobsDb, registry: Registry, notifier: Notifier, app_name: str) -> None:
    async for other in _jobs_db(registry, f"t-{uuid.uuid4().hex[:10]}"):
        sub_a = await notifier.subscribe(db.dsn, CHANNEL)
        sub_b = await notifier.subscribe(other.dsn, CHANNEL)
        pid_a, pid_b = notifier.backend_pid(db.dsn), notifier.backend_pid(other.dsn)
        assert pid_a is not None and pid_b is not None and pid_a != pid_b
        assert sorted(await backends(db.writer, app_name)) == sorted([pid_a, pid_b])

        job_b = await other.insert()
        assert (await next_event(sub_b)).topic == job_b
        assert len(sub_a) == 0

        await db.writer.execute("SELECT pg_terminate_backend($1)", pid_a)
        assert (await next_event(sub_a)).kind == "resync"
        await other.progress(job_b, 3)
        event = await next_event(sub_b)
        assert (event.kind, event.payload["progress"]) == ("notify", 3)  # B never saw a resync
        stats = notifier.stats()
        assert stats[db.dsn]["reconnects"] == 1 and stats[other.dsn]["reconnects"] == 0
        assert notifier.backend_pid(other.dsn) == pid_b


async def test_close_ends_iteration(db: JobsDb, notifier: Notifier) -> None:
    sub = await notifier.subscribe(db.dsn, CHANNEL)
    kinds: list[str] = []

    async def consume() -> list[str]:
        async for event in sub:
            kinds.append(event.kind)
        return kinds

    reader = asyncio.create_task(consume())
    await db.insert()
    await wait_for(lambda: notifier.stats()[db.dsn]["delivered"] == 1, within=5, interval=0.01)
    # Closing drops whatever is still queued: close only once the reader has the event in hand.
    await wait_for(lambda: kinds == ["notify"], within=5, interval=0.01, what="the reader got the insert")
    await notifier.close()
    assert await asyncio.wait_for(reader, 2) == ["notify"]
    assert sub.closed
    with pytest.raises(RuntimeError):
        await notifier.subscribe(db.dsn, CHANNEL)


async def test_connection_closes_when_the_last_subscriber_leaves(db: JobsDb, notifier: Notifier, app_name: str) -> None:
    first = await notifier.subscribe(db.dsn, CHANNEL)
    second = await notifier.subscribe(db.dsn, "other_channel")
    pid = notifier.backend_pid(db.dsn)
    assert await backends(db.writer, app_name) == [pid]  # one connection for both channels

    await first.close()
    await first.close()  # idempotent
    assert await backends(db.writer, app_name) == [pid]
    async with second:
        await db.writer.execute("NOTIFY other_channel, 'not json'")
        event = await next_event(second)
        assert (event.payload, event.topic) == ({"raw": "not json"}, None)

    async def disconnected() -> bool:
        return not await backends(db.writer, app_name)

    await wait_for(disconnected, within=5, interval=0.02, what="listener backend gone")
    assert notifier.stats()[db.dsn]["connected"] == 0 and notifier.backend_pid(db.dsn) is None

    third = await notifier.subscribe(db.dsn, CHANNEL)  # a later subscriber opens a fresh one
    assert notifier.backend_pid(db.dsn) not in (None, pid)
    await third.close()
