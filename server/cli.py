"""`codebase-mcp` command line: serve, worker, index, search, db."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from server.errors import UserError
from server.settings import Settings, get_settings

if TYPE_CHECKING:
    from server.http_auth import HttpToken


def _setup_logging(settings: Settings) -> None:
    # stdout belongs to the MCP stdio transport: logs go to stderr.
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "httpx", "mcp", "fastmcp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


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
        mcp.run()
        return 0
    import uvicorn

    from server.http import build_http_app

    if not _is_loopback(host):
        logging.getLogger(__name__).warning(
            "listening on %s: reachable from other machines; the bearer token is the only protection and "
            "travels in clear text without TLS in front",
            host,
        )
    _print_http_banner(host, port, token)
    uvicorn.run(
        build_http_app(app, mcp, token=token.value, port=port),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
    )
    return 0


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


async def _index(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from server.app import App
    from server.indexer.pipeline import Progress as IndexProgress
    from server.jobs.paths import validate_repo_path

    console = Console(stderr=True)
    path = validate_repo_path(str(Path(args.path).expanduser().absolute()), allowed_roots=settings.allowed_roots)
    app = App(settings)
    await app.start(workers=False)
    try:
        if args.project is None:  # the repository's .codebase-mcp/config.json, else the default
            app.resolver.set_working_directory("cli", path, process_wide=True)
        resolved = await app.resolver.resolve(args.project, "cli", create=True)
        with Progress(
            TextColumn("[bold]{task.fields[phase]:<10}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task("starting", total=100, phase="scanning")

            async def show(p: IndexProgress) -> None:
                tiers = f"static {p.static_coverage:.0%} · transformer {p.transformer_coverage:.0%}"
                eta = f" · ETA {p.eta_seconds:.0f}s" if p.eta_seconds is not None else ""
                bar.update(task, completed=p.percentage, description=f"{p.message} [{tiers}{eta}]", phase=p.phase)

            result = await app.index(resolved.project, path, force_reindex=args.force, progress=show)
        summary = {
            "project": resolved.project.id,
            "files_scanned": result.files_scanned,
            "files_indexed": result.files_indexed,
            "files_unchanged": result.files_unchanged,
            "files_deleted": result.files_deleted,
            "skipped": result.files_skipped,
            "chunks_created": result.chunks_created,
            "chunks_embedded": result.chunks_embedded,
            "total_chunks": result.total_chunks,
            "searchable_seconds": round(result.searchable_seconds, 2),
            "seconds": round(result.duration_seconds, 2),
        }
        if args.json:
            print(json.dumps(summary))
        else:
            skipped = sum(result.files_skipped.values())
            console.print(
                f"[green]indexed[/green] {path} into project [bold]{resolved.project.id}[/bold]: "
                f"{result.files_indexed} files indexed, {result.files_unchanged} unchanged, "
                f"{result.files_deleted} deleted, {skipped} skipped; {result.chunks_created} chunks "
                f"({result.total_chunks} in total); searchable after {result.searchable_seconds:.1f}s, "
                f"done in {result.duration_seconds:.1f}s"
            )
        return 0
    finally:
        await app.close()


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_index(args, settings))


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from server.search.cli import run_search

    return asyncio.run(run_search(args, settings))


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "stop":
        return _db_stop(settings, force=args.force)
    from server.app import App

    app = App(settings)
    await app.start(workers=False)
    try:
        if args.db_command == "upgrade":
            done = await app.registry.upgrade_all()
        elif args.db_command == "downgrade":
            done = await app.registry.downgrade_all(args.revision)
        else:
            done = [p.database_name for p in await app.registry.list_projects()]
        for name in done:
            print(name)
        return 0
    finally:
        await app.close()


def _db_stop(settings: Settings, *, force: bool) -> int:
    import os

    from server.db.embedded import EmbeddedPostgres
    from server.db.keeper import active_users

    if settings.database_url:
        print("DATABASE_URL is set: there is no embedded PostgreSQL to stop", file=sys.stderr)
        return 2
    embedded = EmbeddedPostgres(settings.data_dir, port=settings.embedded_pg_port)
    if embedded.running() is None:
        print("not running")
        return 0
    users = active_users(embedded.data_dir, exclude_pid=os.getpid())
    if users:
        listed = "\n".join(f"  pid {u.pid}: {u.command}" for u in users)
        if not force:
            print(
                f"warning: {len(users)} codebase-mcp process(es) use this embedded PostgreSQL:\n{listed}\n"
                "Stopping it under them fails their requests until they start it again (they do so within "
                "seconds). Stop them first, or pass --force.",
                file=sys.stderr,
            )
            return 1
        print(f"warning: stopping it under {len(users)} running process(es); they will start it again", file=sys.stderr)
    stopped = embedded.stop()
    print("stopped" if stopped else "not running")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_db(args, settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codebase-mcp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-workers", action="store_true", help="only queue jobs; standalone workers run them")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print the HTTP bearer token (generated and kept in the data dir)")
    token.add_argument("--rotate", action="store_true", help="replace it (restart HTTP servers afterwards)")
    token.set_defaults(func=cmd_token)

    worker = sub.add_parser("worker", help="run background indexing workers (any number, on any machine)")
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)

    index = sub.add_parser("index", help="index a repository in the foreground")
    index.add_argument("path")
    index.add_argument("--project")
    index.add_argument(
        "--force",
        action="store_true",
        help="re-read and re-chunk every file (unchanged chunk content keeps its cached embedding)",
    )
    index.add_argument("--json", action="store_true")
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="search indexed code")
    search.add_argument("query")
    search.add_argument("--project")
    search.add_argument("--repository")
    search.add_argument("--language")
    search.add_argument("--path", dest="path_glob")
    search.add_argument("--scope", default="all", help="all (default), code, tests or docs")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--context", type=int, default=2, dest="context_lines")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="upgrade the registry and every project database to head")
    down = db_sub.add_parser("downgrade", help="downgrade every project database to REV")
    down.add_argument("revision")
    db_sub.add_parser("list", help="list project databases")
    stop = db_sub.add_parser("stop", help="stop the embedded PostgreSQL (refused while codebase-mcp processes use it)")
    stop.add_argument("--force", action="store_true", help="stop it even though processes use it")
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; an expected failure (`UserError`) prints its message and exits with 2."""
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad environment variable or .env entry
        print(f"error: invalid configuration:\n{_settings_errors(exc)}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    try:
        code: int = args.func(args, settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


def _settings_errors(exc: ValidationError) -> str:
    """One line per bad setting, named as its environment variable."""
    from server.validation import error_line

    lines = []
    for e in exc.errors(include_url=False):
        field, _, problem = error_line(e).partition(": ")
        lines.append(f"  {field.replace('.', '_').upper()}: {problem}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
