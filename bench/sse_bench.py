"""SSE fan-out: many concurrent browser streams on one job, and `get_indexing_status` latency.

Method. A `codebase-mcp serve --transport http --no-workers` child process on loopback, on the
embedded PostgreSQL of CODEBASE_MCP_DATA_DIR (or DATABASE_URL), with a bearer token (the
streams pass the same auth and Host/Origin middleware as a browser's). Per wave, one job is queued
through the page's API and set running by this script; `--clients` raw-socket SSE clients (asyncio
protocols, no HTTP library in the way, connected in batches) follow its stream (`--stream job`:
the job's own, `project`: the project's). Then `--rounds` progress writes, one at a time: the
clock starts when the UPDATE has returned (committed) and stops, per client, when that client
has received the event of the new version; then the final (completed) state, timed the same way.
Printed per wave: per-client latency p50/p95/p99/max over all rounds, per round the time until
the last client had it ("every client"), the final state's per-client latency, and the server's
CPU time per commit. The server's RSS is read from /proc before the first wave, with the clients
connected, and after they left (`--settle` seconds later); a second wave (`--waves`) tells
memory kept by the allocator from memory that grows with every wave. With `--python-heap` the
server runs under `tracemalloc` (bench/heap_probe.py) and the Python heap it holds is read at the
same three moments: RSS keeps what the allocators keep for reuse, the traced heap shows what the
server itself still holds (tracing slows the server: take latencies from a run without it).

Last, `get_indexing_status` through FastMCP's in-memory client (a server built in this process on
the same database), `--status-calls` times after a warm-up; p50/p99/max.

Loopback and 2 shared cores: the clients' own parsing competes with the server for the CPU, and so
does everything else running on the machine. Compare figures taken in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastmcp import Client, FastMCP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codebase_mcp  # noqa: F401  (puts the product's folders on sys.path when run as a script)
from server.app import App
from server.mcp.server import build_server
from server.settings import Settings

EVENT_ID = re.compile(rb"event: (?:job|end)\r\nid: (\d+)\r\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Arrivals:
    """When each client first saw each version."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.times: dict[int, list[float]] = {}
        self.complete: dict[int, asyncio.Event] = {}

    def event(self, version: int) -> asyncio.Event:
        return self.complete.setdefault(version, asyncio.Event())

    def record(self, version: int, at: float) -> None:
        seen = self.times.setdefault(version, [])
        seen.append(at)
        if len(seen) >= self.clients:
            self.event(version).set()


class SseClient(asyncio.Protocol):
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.buffer = b""
        self.seen: set[int] = set()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        end = 0
        for match in EVENT_ID.finditer(self.buffer):
            version = int(match.group(1))
            if version not in self.seen:
                self.seen.add(version)
                self.arrivals.record(version, now)
            end = match.end()
        self.buffer = self.buffer[end:] if end else self.buffer[-256:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def open_clients(port: int, path: str, headers: dict[str, str], n: int, arrivals: Arrivals) -> list[SseClient]:
    loop = asyncio.get_running_loop()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
    clients: list[SseClient] = []
    for start in range(0, n, 100):  # batches: stay within the listen backlog
        batch = await asyncio.gather(
            *(
                loop.create_connection(lambda: SseClient(arrivals), "127.0.0.1", port)
                for _ in range(min(100, n - start))
            )
        )
        for transport, protocol in batch:
            transport.write(request)
            clients.append(protocol)
        await asyncio.sleep(0.05)
    return clients


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc: independent of other load)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heap_mib(proc: subprocess.Popen[bytes], probe: Path | None) -> float | None:
    """The Python heap the server holds now (`--python-heap`), asked for by SIGUSR1."""
    if probe is None:
        return None
    probe.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not probe.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not report its heap")
        time.sleep(0.02)
    return int(probe.read_text()) / 2**20


def spawn_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    entry = [str(Path(__file__).with_name("heap_probe.py"))] if "HEAP_PROBE_FILE" in env else ["-m", "codebase_mcp"]
    cmd = [sys.executable, *entry, "serve", "--transport", "http", "--host", "127.0.0.1",
           "--port", str(port), "--no-workers"]  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = spawn_server(port, env, log)
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            try:
                auth = {"Authorization": f"Bearer {env['HTTP_AUTH_TOKEN']}"}
                if (await http.get(f"http://127.0.0.1:{port}/web/api/projects", headers=auth)).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError("server not ready")


async def fan_out(args: argparse.Namespace, app: App, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    port = free_port()
    probe = workdir / "heap" if args.python_heap else None
    if probe is not None:
        env = {**env, "HEAP_PROBE_FILE": str(probe)}
    proc = await start_server(port, env, workdir / "server.log")
    headers = {"Authorization": f"Bearer {env['HTTP_AUTH_TOKEN']}"}
    project = await app.registry.get_or_create(args.project)
    pool = await app.pool(project)

    async def running_job(http: httpx.AsyncClient) -> tuple[uuid.UUID, str]:
        repo = workdir / f"repo-{uuid.uuid4().hex[:6]}"
        repo.mkdir()
        answer = (await http.post("/web/api/jobs", json={"repo_path": str(repo), "project_id": project.id})).json()
        job_id = uuid.UUID(answer["job_id"])
        await pool.execute("UPDATE indexing_jobs SET status = 'running', started_at = now() WHERE id = $1", job_id)
        path = (f"/web/api/projects/{project.id}/jobs/{job_id}/events" if args.stream == "job"
                else f"/web/api/projects/{project.id}/events")  # fmt: skip
        return job_id, path

    async def wave(http: httpx.AsyncClient) -> dict[str, Any]:
        """`--clients` streams on a fresh running job, `--rounds` progress commits, the final one, gone."""
        job_id, path = await running_job(http)
        arrivals = Arrivals(args.clients)
        version = await pool.fetchval("SELECT version FROM indexing_jobs WHERE id = $1", job_id)
        clients = await open_clients(port, path, headers, args.clients, arrivals)
        await asyncio.wait_for(arrivals.event(version).wait(), 120)  # everyone has the current state
        await asyncio.sleep(1)
        connected = rss_mib(proc.pid)
        connected_heap = heap_mib(proc, probe)

        per_client: list[float] = []
        every: list[float] = []
        cpu = 0.0
        for i in range(args.rounds):
            before = cpu_seconds(proc.pid)
            version = await pool.fetchval(
                "UPDATE indexing_jobs SET progress_percentage = $2, progress_message = $3 "
                "WHERE id = $1 RETURNING version",
                job_id, min(99, i + 1), f"round {i}",
            )  # fmt: skip
            committed = time.monotonic()
            await asyncio.wait_for(arrivals.event(version).wait(), 60)
            times = [t - committed for t in arrivals.times[version]]
            await asyncio.sleep(0.05)  # the server has written to every socket; its CPU time is in
            cpu += cpu_seconds(proc.pid) - before
            per_client += times
            every.append(max(times))
            await asyncio.sleep(args.interval)

        final = await pool.fetchval(
            "UPDATE indexing_jobs SET status = 'completed', completed_at = now(), progress_percentage = 100 "
            "WHERE id = $1 RETURNING version",
            job_id,
        )
        committed = time.monotonic()
        await asyncio.wait_for(arrivals.event(final).wait(), 60)
        final_times = [t - committed for t in arrivals.times[final]]
        for c in clients:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(args.settle)
        return {
            "per_client_ms": [1000 * pct(per_client, q) for q in (0.5, 0.95, 0.99, 1.0)],
            "every_client_ms": [1000 * pct(every, q) for q in (0.5, 0.95, 0.99, 1.0)],
            "final_ms": [1000 * pct(final_times, q) for q in (0.5, 0.95, 0.99, 1.0)],
            "connected_mib": connected,
            "after_mib": rss_mib(proc.pid),
            "connected_heap_mib": connected_heap,
            "after_heap_mib": heap_mib(proc, probe),
            "server_cpu_ms_per_commit": 1000 * cpu / args.rounds,
        }

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as http:
            _, path = await running_job(http)  # one client first: code paths warm, a baseline that is not cold
            (one,) = await open_clients(port, path, headers, 1, Arrivals(1))
            await asyncio.sleep(0.5)
            assert one.transport is not None
            one.transport.close()
            await asyncio.sleep(args.settle)
            baseline = rss_mib(proc.pid)
            baseline_heap = heap_mib(proc, probe)
            waves = [await wave(http) for _ in range(args.waves)]
        return {"clients": args.clients, "stream": args.stream, "rounds": args.rounds, "baseline_mib": baseline,
                "baseline_heap_mib": baseline_heap, "waves": waves}  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def status_calls(args: argparse.Namespace, app: App) -> dict[str, Any]:
    project = await app.registry.require(args.project)
    pool = await app.pool(project)
    job_id = await pool.fetchval("SELECT id FROM indexing_jobs ORDER BY created_at DESC LIMIT 1")
    call = {"job_id": str(job_id), "project_id": project.id}
    async with Client(build_server(app, manage_app=False)) as client:
        for _ in range(100):
            await client.call_tool("get_indexing_status", call)
        times = []
        for _ in range(args.status_calls):
            t = time.perf_counter()
            await client.call_tool("get_indexing_status", call)
            times.append(time.perf_counter() - t)
    # FastMCP's own floor: a trivial tool (no database, no project) through the same kind of client.
    bare = FastMCP("bare")

    @bare.tool
    def echo(job_id: str, project_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "project_id": project_id, "status": "completed", "progress": 100}

    floor = []
    async with Client(bare) as client:
        for _ in range(100):
            await client.call_tool("echo", call)
        for _ in range(args.status_calls):
            t = time.perf_counter()
            await client.call_tool("echo", call)
            floor.append(time.perf_counter() - t)
    sql = []
    for _ in range(args.status_calls):
        t = time.perf_counter()
        await pool.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
        sql.append(time.perf_counter() - t)
    return {
        "status_ms": [1000 * pct(times, q) for q in (0.5, 0.99, 1.0)],
        "bare_select_ms": [1000 * statistics.median(sql), 1000 * pct(sql, 0.99)],
        "bare_tool_ms": [1000 * pct(floor, q) for q in (0.5, 0.99, 1.0)],
    }


async def main(args: argparse.Namespace) -> None:
    env = {**os.environ, "HTTP_AUTH_TOKEN": secrets.token_urlsafe(24), "LOG_LEVEL": "WARNING"}
    settings = Settings(run_workers_in_server=False)
    app = App(settings)
    await app.start(workers=False)
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        try:
            result = await fan_out(args, app, env, Path(tmp))
            result.update(await status_calls(args, app))
        finally:
            await app.close()
    load = os.getloadavg()
    print(json.dumps(result) if args.json else render(result, load))


def render(r: dict[str, Any], load: tuple[float, float, float]) -> str:
    def q(values: list[float]) -> str:
        return "   ".join(f"{name} {v:7.1f} ms" for name, v in zip(("p50", "p95", "p99", "max"), values, strict=True))

    lines = [
        f"SSE fan-out: {r['clients']} clients on one {r['stream']} stream, {r['rounds']} commits per wave "
        f"(load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})",
        f"  server RSS before the first wave: {r['baseline_mib']:.1f} MiB",
    ]
    if r["baseline_heap_mib"] is not None:
        lines.append(f"  server Python heap (traced) before the first wave: {r['baseline_heap_mib']:.2f} MiB")
    for i, w in enumerate(r["waves"], 1):
        lines += [
            f"  wave {i}",
            f"    commit -> each client    {q(w['per_client_ms'])}",
            f"    commit -> every client   {q(w['every_client_ms'])}   (per commit: the last client)",
            f"    final state -> each client {q(w['final_ms'])}",
            f"    server CPU per commit (read, fan-out, {r['clients']} writes): {w['server_cpu_ms_per_commit']:.1f} ms"
            " (/proc utime+stime: what one free core needs)",
            f"    server RSS {w['connected_mib']:.1f} MiB with the clients "
            f"({(w['connected_mib'] - r['baseline_mib']) * 1024 / r['clients']:.1f} KiB each above the baseline), "
            f"{w['after_mib']:.1f} MiB after they left",
        ]
        if w["connected_heap_mib"] is not None:
            lines.append(
                f"    server Python heap {w['connected_heap_mib']:.2f} MiB with the clients "
                f"({(w['connected_heap_mib'] - r['baseline_heap_mib']) * 1024 / r['clients']:.1f} KiB each), "
                f"{w['after_heap_mib']:.2f} MiB after they left "
                f"({w['after_heap_mib'] - r['baseline_heap_mib']:+.2f} MiB against the baseline)"
            )
    lines.append(
        f"get_indexing_status (in-memory client)  p50 {r['status_ms'][0]:.2f} ms   p99 {r['status_ms'][1]:.2f} ms"
        f"   max {r['status_ms'][2]:.2f} ms   (the row's SELECT alone: p50 {r['bare_select_ms'][0]:.2f} ms)\n"
        f"a trivial FastMCP tool, same client      p50 {r['bare_tool_ms'][0]:.2f} ms"
        f"   p99 {r['bare_tool_ms'][1]:.2f} ms   max {r['bare_tool_ms'][2]:.2f} ms   (FastMCP's own floor)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between commits")
    parser.add_argument("--stream", choices=["job", "project"], default="job")
    parser.add_argument("--waves", type=int, default=2, help="times the clients connect, follow a job and leave")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    parser.add_argument("--status-calls", type=int, default=1000)
    parser.add_argument("--project", default="sse-bench")
    parser.add_argument("--python-heap", action="store_true", help="trace the server's Python heap (slower server)")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main(parser.parse_args()))
