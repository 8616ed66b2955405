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
from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.app import App
from server.db.registry import Project
from server.errors import UserError
from server.jobs.models import parse_job_id
from server.jobs.watch import Cursor, JobChange, JobWatch
from web.errors import bad_request, not_found
from web.sse import EventStream, Writer

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


def sse(watch: JobWatch, start: Callable[[Writer], None]) -> EventStream:
    """The stream; the watch is closed however it ends."""
    return EventStream(start, on_close=watch.close, ping_seconds=PING_SECONDS)


class _Endpoint:
    """A raw ASGI endpoint (no per-message `send` wrappers of Starlette's request/response layer:
    with a thousand streams every wrapper costs)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response | EventStream]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


async def _project(app: App, request: Request) -> Project | Response:
    try:
        project = await app.registry.get(request.path_params["project"])
    except UserError as exc:
        return bad_request(str(exc))
    return project if project is not None else not_found("unknown project")


def stream_routes(app: App) -> dict[str, _Endpoint]:
    """ASGI endpoints by path (relative to /web/api)."""

    async def job_events(request: Request) -> Response | EventStream:
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

        def start(out: Writer) -> None:
            def send(change: JobChange) -> None:
                row, version = change.row, str(change.row.version)
                if row.version > after:
                    out.push("job", change_frame(change, "job", version))
                    if row.is_terminal:
                        out.push("end", change_frame(change, "end", version))
                if row.is_terminal:
                    out.finish()

            watch.push_to(send, on_end=out.finish)  # the server stops: the browser reconnects

        return sse(watch, start)

    async def project_events(request: Request) -> Response | EventStream:
        project = await _project(app, request)
        if isinstance(project, Response):
            return project
        cursor = Cursor.parse(request.headers.get("last-event-id"))
        watch = await app.hub.watch_project(project, cursor=cursor)
        return sse(watch, _wide(watch, resumed=cursor is not None))

    async def all_events(request: Request) -> Response | EventStream:
        cursor = Cursor.parse(request.headers.get("last-event-id"))
        watch = await app.hub.watch_all(cursor=cursor)
        return sse(watch, _wide(watch, resumed=cursor is not None))

    return {
        "/projects/{project}/jobs/{job_id}/events": _Endpoint(job_events),
        "/projects/{project}/events": _Endpoint(project_events),
        "/events": _Endpoint(all_events),
    }


def _wide(watch: JobWatch, *, resumed: bool) -> Callable[[Writer], None]:
    """A project (or all-projects) stream: the current state, `ready`, then every change."""
    cursor = watch.cursor

    def start(out: Writer) -> None:
        def send(change: JobChange) -> None:
            nonlocal cursor
            cursor = _later(cursor, change.row.updated_at)
            out.push(change.row.id, change_frame(change, "job", str(Cursor.of(cursor))))

        count = watch.push_to(send, on_end=out.finish)
        out.push("ready", frame("ready", json.dumps({"resumed": resumed, "jobs": count})))

    return start


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a
