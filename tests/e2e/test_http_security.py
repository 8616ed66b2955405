"""`serve --transport http` is safe to expose on loopback: a bearer token on /mcp, /web/api and
every SSE stream, a browser session cookie obtained without the token reaching any URL, and a
Host/Origin allow-list against DNS rebinding and cross-site requests."""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from fastmcp import Client

from server.http_auth import SESSION_COOKIE
from tests.e2e.conftest import CHILD_ENV, HttpServer, Processes, free_port, start_job
from tests.repos import make_python_repo

pytestmark = pytest.mark.e2e

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def _mcp_post(server: HttpServer, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        return await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


async def test_token_is_required_on_mcp_web_api_and_sse(processes: Processes, tmp_path: Path) -> None:
    server = await processes.http_server()
    bearer = server.auth_headers

    # /mcp: FastMCP's verifier, 401 with a Bearer challenge without or with a wrong token.
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic eDp5"}):
        refused = await _mcp_post(server, headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert (await _mcp_post(server, bearer)).status_code == 200
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises, it must not get in
        async with Client(f"{server.base_url}/mcp", timeout=30) as anonymous:
            await anonymous.call_tool("health", {})

    project = f"e2e-{uuid.uuid4().hex[:8]}"
    async with server.client() as client:
        job = await start_job(client, make_python_repo(tmp_path / "repo", 3), project)
    events = f"/web/api/projects/{project}/jobs/{job.job_id}/events"
    wide = [f"/web/api/projects/{project}/events", "/web/api/events"]  # project-wide and all-projects streams
    protected = ["/web/api/projects", f"/web/api/projects/{project}/jobs", events, *wide]
    actions = ["/web/api/jobs", f"/web/api/projects/{project}/jobs/{job.job_id}/cancel"]

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as anonymous:
        for path in protected:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
                response = await anonymous.get(path, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
        for path in actions:  # starting and cancelling from the page need it too
            assert (await anonymous.post(path, json={"repo_path": str(tmp_path)})).status_code == 401, path
        search = await anonymous.get(f"/web/api/projects/{project}/search", params={"q": "x"})
        assert search.status_code == 401
        page = await anonymous.get("/web/")  # the page itself holds no data
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert (await anonymous.get("/web/app.js")).status_code == 200
        # A session is granted for the bearer token only.
        assert (await anonymous.post("/web/api/session")).status_code == 401

    async with server.http(timeout=30) as http:
        for path in protected[:2]:
            assert (await http.get(path)).status_code == 200, path
        exchange = await http.post("/web/api/session")
    assert exchange.status_code == 204
    set_cookie = exchange.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/web/api"):
        assert attribute.lower() in set_cookie.lower(), set_cookie
    cookie = exchange.cookies[SESSION_COOKIE]
    assert server.token not in cookie

    # What the page does next: cookie only, no Authorization header, EventSource included.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, cookies={SESSION_COOKIE: cookie}) as browser:
        projects = await browser.get("/web/api/projects")
        assert projects.status_code == 200 and project in {p["id"] for p in projects.json()}
        async with browser.stream("GET", events, headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            body = "".join([line async for line in stream.aiter_lines()])
        assert "event: end" in body
        for path in wide:  # these never end: the current state, then `ready`
            async with browser.stream("GET", path, headers={"Accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200, path
                seen = []
                async for line in stream.aiter_lines():
                    seen.append(line)
                    if line == "event: ready":
                        break
            assert job.job_id in "".join(seen), (path, seen)
        # Cookies cannot be turned back into a session, nor forged.
        assert (await browser.post("/web/api/session")).status_code == 401
        forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, cookies={SESSION_COOKIE: forged}) as forger:
        assert (await forger.get("/web/api/projects")).status_code == 401


async def test_foreign_host_and_origin_get_403(processes: Processes, e2e_env: dict[str, str]) -> None:
    env = {
        **e2e_env,
        "HTTP_ALLOWED_HOSTS": "dev.example.test, other.example.test:9",
        "HTTP_ALLOWED_ORIGINS": "https://ui.example.test",
    }
    server = await processes.http_server(env=env)
    port = server.port

    async def status(path: str, headers: dict[str, str]) -> int:
        async with server.http(timeout=30) as http:
            if path == "/mcp":
                response = await http.post(path, json=INITIALIZE, headers={**MCP_HEADERS, **headers})
            else:
                response = await http.get(path, headers=headers)
            return response.status_code

    for path in ("/mcp", "/web/api/projects", "/web/"):
        # DNS rebinding: the right socket, a foreign name (even with a valid token).
        assert await status(path, {"Host": "attacker.example"}) == 403, path
        assert await status(path, {"Host": f"attacker.example:{port}"}) == 403, path
        assert await status(path, {"Host": f"127.0.0.1:{port + 1}"}) == 403, path
        assert await status(path, {"Host": "other.example.test:10"}) == 403, path
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "dev.example.test:1234"):
            assert await status(path, {"Host": host}) == 200, (path, host)
        assert await status(path, {"Host": "other.example.test:9"}) == 200, path
        # Cross-site pages: the right name, a foreign Origin.
        for origin in (
            "http://attacker.example",
            f"http://attacker.example:{port}",
            "null",
            "https://ui.example.test:8",
        ):
            assert await status(path, {"Origin": origin}) == 403, (path, origin)
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "https://ui.example.test"):
            assert await status(path, {"Origin": origin}) == 200, (path, origin)
    # The streams and the page's actions sit behind the same guard (a stream that got through would not end).
    async with server.http(timeout=30) as http:
        for path in ("/web/api/events", "/web/api/projects/any/events", "/web/api/projects/any/jobs/x/events"):
            for headers in ({"Host": "attacker.example"}, {"Origin": "http://attacker.example"}):
                async with http.stream("GET", path, headers=headers) as stream:
                    assert stream.status_code == 403, (path, headers)
        for headers in ({"Host": "attacker.example"}, {"Origin": f"http://attacker.example:{port}"}):
            answer = await http.post("/web/api/jobs", json={"repo_path": "/tmp"}, headers=headers)
            assert answer.status_code == 403, headers
    # Refused before authentication: no hint whether the token was right.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as anonymous:
        answer = await anonymous.get("/web/api/projects", headers={"Host": "attacker.example"})
    assert answer.status_code == 403 and "HTTP_ALLOWED_HOSTS" in answer.json()["error"]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # TCP_LISTEN
                    found.add(address)
    return found


async def test_generated_token_is_private_reused_printed_and_kept_out_of_logs(
    processes: Processes, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in e2e_env.items() if k != "HTTP_AUTH_TOKEN"}
    env["CODEBASE_MCP_DATA_DIR"] = str(data_dir)
    assert "HTTP_AUTH_TOKEN" in CHILD_ENV  # the others use a fixed one; this test must not
    port = free_port()

    async def start() -> tuple[HttpServer, str]:
        # No --host: the default bind address is what is checked.
        proc = processes.spawn("serve", "--transport", "http", "--port", str(port), env=env)
        token_file = data_dir / "http-token"
        server = HttpServer(proc, port, token="")
        for _ in range(600):
            if token_file.exists() and token_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        server.token = token_file.read_text().strip()
        await server.wait_ready()
        return server, token_file.read_text().strip()

    first, token = await start()
    token_file = data_dir / "http-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.stat().st_uid == os.geteuid()
    assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
    async with first.client() as client:
        assert (await client.call_tool("health", {})).structured_content["status"] == "ok"
    # The browser's way in: the page, then the exchange; the token never travels in a URL.
    async with httpx.AsyncClient(base_url=first.base_url, timeout=30) as browser:
        assert (await browser.get("/web/")).status_code == 200
        exchange = await browser.post("/web/api/session", headers={"Authorization": f"Bearer {token}"})
        assert exchange.status_code == 204
        assert (await browser.get("/web/api/projects")).status_code == 200
    first.proc.kill()

    second, reused = await start()
    assert reused == token  # MCP client configurations keep working across restarts
    async with httpx.AsyncClient(base_url=second.base_url, timeout=30) as http:
        assert (await http.get("/web/api/projects", headers=second.auth_headers)).status_code == 200

    for server in (first, second):
        log = server.proc.log()
        assert f"http://127.0.0.1:{port}/web/#token={token}" in log
        assert f"http://127.0.0.1:{port}/mcp" in log
        assert '"GET /web/api/projects HTTP/1.1" 200' in log  # access logging is on ...
        leaks = [line for line in log.splitlines() if token in line and not line.startswith("codebase-mcp: ")]
        assert leaks == []  # ... and the token shows up only in the start-up banner
