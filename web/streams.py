"""Server-Sent-Event streams of jobs: one job, one project, every project (all through `app.hub`).

Events:
- `job`: one version of one job (`IndexingJobProgress` as JSON). On a job stream the event id is
  the job's `version`; on a project or all-projects stream it is a cursor (the job's `updated_at`
  in microseconds), so a browser that reconnects sends `Last-Event-ID` and gets what changed
  since (re-read from the table, and 30 s more: clients ignore versions they already have).
- `ready`: a project stream has sent its current state (`{"resumed": bool, "jobs": n}`).
- `end`: a job stream's job reached its final state (the final row again); the stream closes.

Frames are encoded once per change and event kind and shared by every stream that sends them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from server.app import App
from server.db.registry import Project
from server.errors import UserError
from server.jobs.models import parse_job_id
from server.jobs.watch import Cursor, JobChange, JobWatch, follow_job
from web.errors import bad_request, not_found

PING_SECONDS = 15
RETRY_MILLISECONDS = 1000  # how soon a browser reconnects after the stream broke


def frame(event: str, data: str, event_id: str | None = None) -> bytes:
    """One SSE event; `data` is single-line JSON."""
    head = f"event: {event}\r\n" + (f"id: {event_id}\r\n" if event_id is not None else "")
    return (head + f"retry: {RETRY_MILLISECONDS}\r\ndata: {data}\r\n\r\n").encode()


def change_frame(change: JobChange, event: str, event_id: str) -> bytes:
    """The frame of `change`, built once however many streams send it."""
    key = (event, event_id)
    cached = change.frames.get(key)
    if cached is None:
        cached = change.frames[key] = frame(event, change.data, event_id)
    return cached


def sse(stream: AsyncIterator[bytes], watch: JobWatch) -> EventSourceResponse:
    """The response; the watch is closed however it ends (the background task runs even when the
    stream never started, e.g. for HEAD)."""
    return EventSourceResponse(
        _closing(stream, watch), ping=PING_SECONDS, headers={"X-Accel-Buffering": "no"},
        background=BackgroundTask(watch.close),
    )  # fmt: skip


async def _project(app: App, request: Request) -> Project | Response:
    try:
        project = await app.registry.get(request.path_params["project"])
    except UserError as exc:
        return bad_request(str(exc))
    return project if project is not None else not_found("unknown project")


def stream_routes(app: App) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """Handlers by path (relative to /web/api)."""

    async def job_events(request: Request) -> Response:
        project = await _project(app, request)
        if isinstance(project, Response):
            return project
        try:
            job_id = parse_job_id(request.path_params["job_id"])
        except UserError as exc:
            return bad_request(str(exc))
        last = request.headers.get("last-event-id", "").strip()
        after = int(last) if last.isdigit() and len(last) < 19 else -1
        try:
            watch = await app.hub.watch_job(project, job_id)
        except UserError as exc:
            return not_found(str(exc))

        async def subscribed() -> JobWatch:
            return watch

        async def stream() -> AsyncIterator[bytes]:
            async for change in follow_job(subscribed, after_version=after):
                version = str(change.row.version)
                yield change_frame(change, "job", version)
                if change.row.is_terminal:
                    yield change_frame(change, "end", version)

        return sse(stream(), watch)

    async def project_events(request: Request) -> Response:
        project = await _project(app, request)
        if isinstance(project, Response):
            return project
        cursor = Cursor.parse(request.headers.get("last-event-id"))
        watch = await app.hub.watch_project(project, cursor=cursor)
        return sse(_wide(watch, resumed=cursor is not None), watch)

    async def all_events(request: Request) -> Response:
        cursor = Cursor.parse(request.headers.get("last-event-id"))
        watch = await app.hub.watch_all(cursor=cursor)
        return sse(_wide(watch, resumed=cursor is not None), watch)

    return {
        "/projects/{project}/jobs/{job_id}/events": job_events,
        "/projects/{project}/events": project_events,
        "/events": all_events,
    }


async def _wide(watch: JobWatch, *, resumed: bool) -> AsyncIterator[bytes]:
    """A project (or all-projects) stream: the current state, `ready`, then every change."""
    cursor = watch.cursor

    def encoded(change: JobChange) -> bytes:
        nonlocal cursor
        cursor = _later(cursor, change.row.updated_at)
        return change_frame(change, "job", str(Cursor.of(cursor)))

    count = 0
    while (change := watch.get_nowait()) is not None:
        count += 1
        yield encoded(change)
    yield frame("ready", json.dumps({"resumed": resumed, "jobs": count}))
    async for change in watch:
        yield encoded(change)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


async def _closing(stream: AsyncIterator[bytes], watch: JobWatch) -> AsyncIterator[bytes]:
    """`stream`, and the watch closed however it ends (client gone, server stopping)."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await watch.close()
