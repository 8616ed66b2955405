"""`codebase-mcp` command line: serve, token, worker, watch, index, search, repos, projects, db."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from server.settings import Settings, get_settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.commands.serve import cmd_serve as serve

    return serve(args, settings)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from server.commands.serve import cmd_worker as worker

    return worker(args, settings)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from server.commands.watch import cmd_watch as watch

    return watch(args, settings)


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from server.commands.serve import cmd_token as token

    return token(args, settings)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from server.commands.index import cmd_index as index

    return index(args, settings)


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from server.search.cli import run_search

    return asyncio.run(run_search(args, settings))


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "stop":
        from server.commands.db import db_stop

        return db_stop(settings, force=args.force)
    from server.commands.common import started_app

    async with started_app(settings) as app:
        if args.db_command == "upgrade":
            done = await app.registry.upgrade_all()
        elif args.db_command == "downgrade":
            done = await app.registry.downgrade_all(args.revision)
        else:
            done = [p.database_name for p in await app.registry.list_projects()]
    for name in done:
        print(name)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_db(args, settings))


def build_parser() -> argparse.ArgumentParser:
    from server.commands.repos import add_parsers as add_lifecycle_parsers

    parser = argparse.ArgumentParser(prog="codebase-mcp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default; it waits for an MCP client)")
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

    watch = sub.add_parser(
        "watch", help="watch indexed repositories and queue their changes (for deployments with `worker`s)"
    )
    watch.add_argument("paths", nargs="*", metavar="PATH", help="only these repositories (default: every one)")
    watch.set_defaults(func=cmd_watch)

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

    add_lifecycle_parsers(sub)

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


def _settings() -> Settings | str:
    """The settings, or one line naming each bad variable as its environment variable."""
    from pydantic import ValidationError

    from server.validation import error_line

    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            field, _, problem = error_line(e).partition(": ")
            problems.append(f"{field.replace('.', '_').upper()}: {problem}")
        return f"invalid configuration (environment or .env): {'; '.join(problems)}"


def main(argv: Sequence[str] | None = None) -> int:
    from server.runtime import quiet_libraries, setup_logging

    quiet_libraries()  # before anything imports fastmcp
    args = build_parser().parse_args(argv)
    from server.commands.common import exit_code_for, print_error, user_error_in

    settings = _settings()
    if isinstance(settings, str):
        print_error(settings)
        return 2
    setup_logging(settings)
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        found = user_error_in(exc)
        if found is None:
            raise
        print_error(str(found))
        return exit_code_for(found)
    return code


if __name__ == "__main__":
    sys.exit(main())
