"""`codebase-mcp serve` (stdio or HTTP) and `codebase-mcp worker`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from server.settings import Settings

STDIO_HINT = (
    "codebase-mcp: MCP server on stdio, waiting for an MCP client to talk to it (Ctrl-C to stop).\n"
    "  Try it now:  npx @modelcontextprotocol/inspector {exe} serve\n"
    "  or search from the shell:  codebase-mcp index /path/to/repo && codebase-mcp search 'what you look for'"
)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.app import App
    from server.mcp.server import build_server

    if args.no_workers:
        settings.run_workers_in_server = False
    app = App(settings, single_client=args.transport == "stdio")
    mcp = build_server(app)
    if args.transport == "stdio":
        if sys.stdin.isatty():  # a person at a terminal, not an MCP client: say what is going on
            exe = os.path.abspath(sys.argv[0]) if sys.argv[0].endswith("codebase-mcp") else "codebase-mcp"
            print(STDIO_HINT.format(exe=exe), file=sys.stderr)
        mcp.run(show_banner=False)
        return 0
    import uvicorn

    from server.app import check_database
    from server.http import build_http_app

    asyncio.run(check_database(settings))  # uvicorn would print a lifespan traceback instead of one line

    host = args.host or settings.http_host
    port = args.port if args.port is not None else settings.http_port
    print(f"codebase-mcp: MCP at http://{host}:{port}/mcp, jobs page at http://{host}:{port}/web/", file=sys.stderr)
    # log_config=None: uvicorn's records go through our handler (LOG_FILE, LOG_LEVEL) like every other
    uvicorn.run(build_http_app(app, mcp), host=host, port=port, log_level=settings.log_level.lower(), log_config=None)
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
