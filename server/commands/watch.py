"""`codebase-mcp watch [PATH...]`: watch indexed repositories and queue their changes for the workers."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from server.settings import Settings


async def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from server.app import App
    from server.jobs.paths import RepoPathError, validate_repo_path

    roots: list[Path] | None = None
    if args.paths:
        try:
            roots = [
                validate_repo_path(str(Path(p).expanduser().absolute()), allowed_roots=settings.allowed_roots)
                for p in args.paths
            ]
        except RepoPathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    app = App(settings)
    await app.start(workers=False)
    try:
        service = await app.start_watching(roots)
        watched = {root for _, root in service.watched}
        for root in roots or []:
            if str(root) not in watched:
                print(
                    f"{root}: not watched yet (not indexed, or another process watches it); retrying", file=sys.stderr
                )
        print(f"watching {len(watched)} repositories; workers index the changes; Ctrl-C to stop", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await app.close()


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_watch(args, settings))
