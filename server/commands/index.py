"""`codebase-mcp index PATH`: foreground indexing with a progress bar and a summary."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from server.commands.common import print_warning, started_app, stderr_console
from server.indexer.pipeline import Progress as IndexProgress
from server.jobs.paths import validate_repo_path
from server.lifecycle.repositories import empty_repository_warning
from server.settings import Settings


async def _index(args: argparse.Namespace, settings: Settings) -> int:
    console = stderr_console()
    path = validate_repo_path(str(Path(args.path).expanduser().absolute()), allowed_roots=settings.allowed_roots)
    async with started_app(settings) as app:
        if args.project is None:  # the repository's .codebase-mcp/config.json, else the default
            app.resolver.set_working_directory("cli", path, process_wide=True)
        resolved = await app.resolver.resolve(args.project, "cli", create=True)
        await app.check_repository_root(resolved.project, path)  # refused before a progress bar is drawn
        with Progress(
            TextColumn("[bold]{task.fields[phase]:<12}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("starting", total=100, phase="scanning")

            async def show(p: IndexProgress) -> None:
                tiers = f"static {p.static_coverage:.0%} · transformer {p.transformer_coverage:.0%}"
                eta = f" · ETA {p.eta_seconds:.0f}s" if p.eta_seconds is not None else ""
                description = escape(f"{p.message} [{tiers}{eta}]")
                bar.update(task, completed=p.percentage, description=description, phase=p.phase)

            run = await app.index_recorded(
                resolved.project, path, origin="cli", force_reindex=args.force, progress=show
            )
            result = run.result
    warning = empty_repository_warning(path, result)
    if args.json:
        print(json.dumps({
            "project": resolved.project.id, "job_id": str(run.row.id), "repository_id": str(result.repository_id),
            "files_scanned": result.files_scanned, "files_indexed": result.files_indexed,
            "files_unchanged": result.files_unchanged, "files_deleted": result.files_deleted,
            "skipped": result.files_skipped, "chunks_created": result.chunks_created,
            "chunks_embedded": result.chunks_embedded, "total_chunks": result.total_chunks,
            "searchable_seconds": round(result.searchable_seconds, 2), "seconds": round(result.duration_seconds, 2),
            "warning": warning,
        }))  # fmt: skip
    else:
        skipped = sum(result.files_skipped.values())
        console.print(
            f"[green]indexed[/green] {escape(str(path))} into project [bold]{escape(resolved.project.id)}[/bold]: "
            f"{result.files_indexed} files indexed, {result.files_unchanged} unchanged, "
            f"{result.files_deleted} deleted, {skipped} skipped; {result.chunks_created} chunks "
            f"({result.total_chunks} in total); searchable after {result.searchable_seconds:.1f}s, "
            f"done in {result.duration_seconds:.1f}s"
        )
    if warning:
        print_warning(warning)
    return 0


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_index(args, settings))
