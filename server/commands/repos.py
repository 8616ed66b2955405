"""`codebase-mcp repos list|remove` and `codebase-mcp projects list|remove`."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from server.app import App
from server.commands.common import EXIT_USAGE, print_error, started_app, stderr_console
from server.db.registry import Project, UnknownProjectError
from server.lifecycle import projects as project_lifecycle
from server.lifecycle import repositories
from server.lifecycle.projects import ProjectInfo
from server.lifecycle.repositories import Repository
from server.settings import Settings

_SESSION = "cli"


def stdout_console() -> Console:
    """Tables fit a terminal; piped into a file they are not cut down to 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def repository_json(repo: Repository) -> dict[str, Any]:
    return {
        "id": str(repo.id), "name": repo.name, "root_path": repo.root_path, "files": repo.file_count,
        "chunks": repo.chunk_count, "unembedded_chunks": repo.unembedded_chunks,
        "last_indexed_at": repo.last_indexed_at.isoformat() if repo.last_indexed_at else None,
        "active_job_id": str(repo.active_job_id) if repo.active_job_id else None,
        "active_job_status": repo.active_job_status,
    }  # fmt: skip


async def _project_for(app: App, explicit: str | None, ref: str | None = None) -> Project:
    """--project, else the project a path's (or the working directory's) config names, else the default."""
    if explicit is None:
        here = Path(ref) if ref is not None and ref.startswith("/") and Path(ref).is_dir() else Path.cwd()
        app.resolver.set_working_directory(_SESSION, here, process_wide=True)
    return (await app.resolver.resolve(explicit, _SESSION)).project


async def _repos_list(app: App, args: argparse.Namespace) -> int:
    if args.all:
        chosen = await app.registry.list_projects()
    else:
        found = await _project_for_listing(app, args.project)
        chosen = [found] if found is not None else []
    infos = [await project_lifecycle.describe(app.cluster, p) for p in chosen]
    if args.json:
        rows = [{"project": i.project.id, **repository_json(r)} for i in infos for r in i.repositories]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("project", "repository", "root", "files", "chunks", "not embedded", "last indexed", "job")
    for info in infos:
        for r in info.repositories:
            when = r.last_indexed_at.strftime("%Y-%m-%d %H:%M") if r.last_indexed_at else "never"
            job = f"{r.active_job_status} {r.active_job_id}" if r.active_job_id else ""
            table.add_row(
                escape(info.project.id), escape(r.name), escape(r.root_path), str(r.file_count),
                str(r.chunk_count), str(r.unembedded_chunks), when, job,
            )  # fmt: skip
    if table.row_count:
        stdout_console().print(table)
    else:
        where = "any project" if args.all else f"project {chosen[0].id!r}" if chosen else "the default project"
        stderr_console().print(f"no repositories in {escape(where)}; index one with `codebase-mcp index PATH`")
    return 0


async def _project_for_listing(app: App, explicit: str | None) -> Project | None:
    try:
        return await _project_for(app, explicit)
    except UnknownProjectError:
        if explicit is None:
            return None  # nothing indexed here yet: an empty list, not an error
        raise


async def _repos_remove(app: App, args: argparse.Namespace) -> int:
    project = await _project_for(app, args.project, args.repository)
    pool = await app.pool(project)
    removed = await repositories.remove(pool, args.repository)
    stderr_console().print(
        f"[green]removed[/green] repository [bold]{escape(removed.name)}[/bold] ({escape(removed.root_path)}) "
        f"from project {escape(project.id)}: {removed.files} files, {removed.chunks} chunks"
    )
    return 0


async def _repos(args: argparse.Namespace, settings: Settings) -> int:
    async with started_app(settings) as app:
        if args.repos_command == "list":
            return await _repos_list(app, args)
        return await _repos_remove(app, args)


def cmd_repos(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_repos(args, settings))


def _project_json(info: ProjectInfo) -> dict[str, Any]:
    return {
        "id": info.project.id, "name": info.project.name, "database": info.project.database_name,
        "created_at": info.project.created_at.isoformat(), "repositories": len(info.repositories),
        "files": info.files, "chunks": info.chunks, "embedder": info.project.metadata.get("embedder"),
    }  # fmt: skip


async def _projects(args: argparse.Namespace, settings: Settings) -> int:
    async with started_app(settings) as app:
        cluster = app.cluster
        if args.projects_command == "list":
            infos = await project_lifecycle.list_projects(cluster, app.registry)
            if args.json:
                print(json.dumps([_project_json(i) for i in infos], indent=2))
                return 0
            table = Table("project", "database", "repositories", "files", "chunks", "created")
            for i in infos:
                table.add_row(
                    escape(i.project.id), i.project.database_name, str(len(i.repositories)), str(i.files),
                    str(i.chunks), i.project.created_at.strftime("%Y-%m-%d %H:%M"),
                )  # fmt: skip
            if infos:
                stdout_console().print(table)
            else:
                stderr_console().print("no projects yet; `codebase-mcp index PATH` creates one")
            return 0
        project = await app.registry.require(args.project_id)
        if not args.yes:
            info = await project_lifecycle.describe(cluster, project)
            print_error(
                f"removing project {project.id!r} drops database {project.database_name} with "
                f"{len(info.repositories)} repositories ({info.files} files, {info.chunks} chunks); "
                "re-run with --yes to confirm"
            )
            return EXIT_USAGE
        info = await project_lifecycle.remove(cluster, app.registry, project.id)
        stderr_console().print(
            f"[green]removed[/green] project [bold]{escape(project.id)}[/bold]: dropped database "
            f"{project.database_name} ({len(info.repositories)} repositories, {info.files} files, {info.chunks} chunks)"
        )
        return 0


def cmd_projects(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_projects(args, settings))


def add_parsers(sub: Any) -> None:
    repos = sub.add_parser("repos", help="list or remove the repositories of a project")
    repos_sub = repos.add_subparsers(dest="repos_command", required=True)
    listing = repos_sub.add_parser("list", help="repositories of the project (--all: of every project)")
    listing.add_argument("--project", help="default: from .codebase-mcp/config.json above the working directory")
    listing.add_argument("--all", action="store_true", help="every project")
    listing.add_argument("--json", action="store_true")
    remove = repos_sub.add_parser("remove", help="delete a repository's files, chunks and vectors")
    remove.add_argument("repository", help="its name, root path or id (see `repos list`)")
    remove.add_argument("--project", help="default: the project of the path, or of the working directory")
    repos.set_defaults(func=cmd_repos)

    projects = sub.add_parser("projects", help="list or remove projects (one database each)")
    projects_sub = projects.add_subparsers(dest="projects_command", required=True)
    plist = projects_sub.add_parser("list", help="projects with their repositories, files and chunks")
    plist.add_argument("--json", action="store_true")
    premove = projects_sub.add_parser("remove", help="drop a project's database and forget the project")
    premove.add_argument("project_id")
    premove.add_argument("--yes", action="store_true", help="confirm: everything indexed in it is deleted")
    projects.set_defaults(func=cmd_projects)
