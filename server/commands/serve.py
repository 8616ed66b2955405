"""`codebase-mcp serve` (stdio or HTTP), `codebase-mcp token` and `codebase-mcp worker`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from server.settings import Settings

if TYPE_CHECKING:
    from server.http_auth import HttpToken

STDIO_HINT = (
    "codebase-mcp: MCP server on stdio, waiting for an MCP client to talk to it (Ctrl-C to stop).\n"
    "  Try it now:  npx @modelcontextprotocol/inspector {exe} serve\n"
    "  or search from the shell:  codebase-mcp index /path/to/repo && codebase-mcp search 'what you look for'"
)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.app import App
    from server.http_auth import TokenFileError, load_or_create_token
    from server.http_guard import HostPolicy
    from server.mcp.server import build_server

    if args.no_workers:
        settings.run_workers_in_server = False
    host = args.host or settings.http_host
    port = args.port if args.port is not None else settings.http_port
    token: HttpToken | None = None
    if args.transport == "http":
        try:  # before anything starts: a bad token file or allow-list stops here
            token = load_or_create_token(settings)
            HostPolicy.build(port or 1, settings.http_allowed_hosts, settings.http_allowed_origins)
        except (TokenFileError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    app = App(settings, single_client=args.transport == "stdio")
    mcp = build_server(app)
    if token is None:
        if sys.stdin.isatty():  # a person at a terminal, not an MCP client: say what is going on
            exe = os.path.abspath(sys.argv[0]) if sys.argv[0].endswith("codebase-mcp") else "codebase-mcp"
            print(STDIO_HINT.format(exe=exe), file=sys.stderr)
        mcp.run(show_banner=False)
        return 0
    from server.app import check_database
    from server.http import serve_http

    asyncio.run(check_database(settings))  # uvicorn would print a lifespan traceback instead of one line
    if not _is_loopback(host):
        logging.getLogger(__name__).warning(
            "listening on %s: reachable from other machines; the bearer token is the only protection and "
            "travels in clear text without TLS in front",
            host,
        )
    _print_http_banner(host, port, token)
    serve_http(app, mcp, token=token.value, host=host, port=port, log_level=settings.log_level.lower())
    return 0


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"  # listening everywhere: loopback reaches it too
    return f"[{host}]" if ":" in host else host


def _print_http_banner(host: str, port: int, token: HttpToken) -> None:
    base = f"http://{_url_host(host)}:{port}"
    shown = token.value if token.source != "setting" else "<HTTP_AUTH_TOKEN>"
    where = f" (kept in {token.path})" if token.path else " (from HTTP_AUTH_TOKEN)"
    lines = [
        f"codebase-mcp: MCP endpoint {base}/mcp needs the header 'Authorization: Bearer <token>'",
        f"codebase-mcp: access token{where}: {shown}",
        f"codebase-mcp: jobs page {base}/web/#token={shown}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from server.http_auth import TokenFileError, load_or_create_token, rotate_token

    try:
        token = rotate_token(settings) if args.rotate else load_or_create_token(settings)
    except TokenFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.rotate and settings.http_auth_token is not None:
        print("note: HTTP_AUTH_TOKEN is set and takes precedence over the rotated file", file=sys.stderr)
    print(token.value)
    return 0


async def _worker(settings: Settings) -> int:
    from server.app import App

    app = App(settings)
    await app.start(workers=True)
    assert app.worker is not None
    print(f"worker {app.worker.worker_id} running; Ctrl-C to stop", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.close()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.concurrency:
        settings.max_concurrent_indexing_jobs = args.concurrency
    return asyncio.run(_worker(settings))
