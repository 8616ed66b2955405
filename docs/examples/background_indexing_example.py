"""Background indexing with codebase-mcp through a real MCP client (FastMCP, stdio).

The script starts `codebase-mcp serve` as a subprocess, exactly as an MCP client such as
Claude Code does, and shows four ways to index a repository without blocking on it:

  poll             start_indexing_background, then get_indexing_status every second
  watch            start_indexing_background, then watch_indexing: progress is pushed to you
  cancel           start a job and cancel it with cancel_indexing_background
  fire-and-forget  start a job, keep working (search already answers), look at the job later

Run it (from a venv where `pip install codebase-mcp` or `pip install -e .` was done):

    python docs/examples/background_indexing_example.py ~/src/myrepo
    python docs/examples/background_indexing_example.py ~/src/myrepo --pattern watch

Your environment (DATABASE_URL, CODEBASE_MCP_DATA_DIR, ...) is passed on to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

FINAL = {"completed", "failed", "cancelled"}
PATTERNS = ("cancel", "poll", "watch", "fire-and-forget")


def server_command() -> list[str]:
    """`codebase-mcp` next to this Python (a venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).with_name("codebase-mcp")
    found = str(beside) if beside.exists() else shutil.which("codebase-mcp")
    if found is None:
        sys.exit("codebase-mcp is not installed here: run `pip install -e .` (or `pip install codebase-mcp`) first")
    return [found, "serve"]


def connect() -> Client[Any]:
    command, *args = server_command()
    # MCP clients do not pass your shell's environment on by default: hand it over explicitly.
    transport = StdioTransport(command, args, env=dict(os.environ), keep_alive=False)
    return Client(transport, timeout=600, init_timeout=120)


async def call(client: Client[Any], tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, {k: v for k, v in arguments.items() if v is not None})
    assert result.structured_content is not None
    return result.structured_content


def show(job: dict[str, Any]) -> str:
    counts = f"{job['files_indexed']}/{job['files_scanned']} files, {job['chunks_created']} chunks"
    line = f"{job['status']:<9} {job['progress_percentage']:>3}%  {counts}  {job['progress_message']}"
    return line + (f"  error: {job['error_message']}" if job.get("error_message") else "")


async def start_and_poll(client: Client[Any], repo: Path, project: str | None) -> dict[str, Any]:
    """The simplest pattern: one short call to start, then short status calls until the job ends."""
    started = await call(client, "start_indexing_background", repo_path=str(repo), project_id=project)
    print(f"[poll] job {started['job_id']} {started['status']}: {started['message']}")
    deadline, shown = time.monotonic() + 3600, ""
    while True:
        job = await call(client, "get_indexing_status", job_id=started["job_id"])
        if show(job) != shown:  # print changes only
            shown = show(job)
            print(f"[poll] {shown}")
        if job["status"] in FINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {started['job_id']} still {job['status']} after an hour")
        await asyncio.sleep(1.0)


async def watch_with_progress(client: Client[Any], repo: Path, project: str | None) -> dict[str, Any]:
    """One long call that stays open: every change of the job arrives as an MCP progress notification."""
    started = await call(
        client, "start_indexing_background", repo_path=str(repo), project_id=project, force_reindex=True
    )
    print(f"[watch] job {started['job_id']} {started['status']}")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        print(f"[watch] {progress:5.1f}/{total or 100:.0f}  {message}")

    result = await client.call_tool("watch_indexing", {"job_id": started["job_id"]}, progress_handler=on_progress)
    job = result.structured_content
    assert job is not None
    print(f"[watch] final: {show(job)}")
    return job


async def cancel(client: Client[Any], repo: Path, project: str | None) -> dict[str, Any]:
    """Start, then change your mind: the worker stops within milliseconds and keeps what it stored."""
    started = await call(
        client, "start_indexing_background", repo_path=str(repo), project_id=project, force_reindex=True
    )
    print(f"[cancel] job {started['job_id']} {started['status']}")
    try:
        cancelled = await call(client, "cancel_indexing_background", job_id=started["job_id"])
        print(f"[cancel] {cancelled['status']}: {cancelled['message']}")
    except ToolError as exc:  # it finished before the cancel arrived: nothing to stop
        print(f"[cancel] too late: {exc}")
    job = await call(client, "get_indexing_status", job_id=started["job_id"])
    print(f"[cancel] final: {show(job)}")
    return job


async def fire_and_forget(client: Client[Any], repo: Path, project: str | None) -> dict[str, Any]:
    """Start and move on. Search works while indexing runs (full text first, vectors as they come)."""
    started = await call(client, "start_indexing_background", repo_path=str(repo), project_id=project)
    print(f"[fire-and-forget] job {started['job_id']} queued; doing other work meanwhile")
    found = await call(client, "search_code", query="main entry point", project_id=project, limit=3)
    print(f"[fire-and-forget] search meanwhile: {len(found['results'])} results ({found['mode']})")
    # Later (another turn of the conversation): the job's state, as a tool call or as the resource.
    while True:
        contents = await client.read_resource(f"indexing-job://{started['job_id']}")
        if json.loads(getattr(contents[0], "text", "{}")).get("status") in FINAL:
            break
        await asyncio.sleep(1.0)
    jobs = await call(client, "list_indexing_jobs", project_id=project, limit=5)
    job: dict[str, Any] = next(j for j in jobs["jobs"] if j["job_id"] == started["job_id"])
    print(f"[fire-and-forget] later: {show(job)}")
    return job


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="repository to index")
    parser.add_argument("--pattern", choices=(*PATTERNS, "all"), default="all")
    parser.add_argument("--project", help="project id (default: the repository's .codebase-mcp/config.json or default)")
    args = parser.parse_args()
    repo = args.repo.expanduser().resolve()
    runs = {"poll": start_and_poll, "watch": watch_with_progress, "cancel": cancel, "fire-and-forget": fire_and_forget}
    chosen = PATTERNS if args.pattern == "all" else (args.pattern,)
    async with connect() as client:
        if args.project is None:  # like an assistant: say where we work, the server picks the project
            here = await call(client, "set_working_directory", directory=str(repo))
            print(f"project {here['project_id']} ({here['source']})")
        failed = []
        for name in chosen:
            job = await runs[name](client, repo, args.project)
            if job["status"] == "failed":
                failed.append(name)
        listed = await call(client, "list_repositories", project_id=args.project)
        for repo in listed["repositories"]:  # what the project holds now
            print(f"repository {repo['name']} ({repo['root_path']}): {repo['files']} files, {repo['chunks']} chunks")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
