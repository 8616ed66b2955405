"""Browser routes: a jobs page and Server-Sent-Event streams fed by the listener.

The page and its script are public (they hold no data); everything under /web/api requires the
bearer token or the session cookie (`web/auth.py`), so routes added there are protected too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from server.app import App
from server.errors import UserError
from server.http_auth import StaticTokenVerifier
from server.jobs import queries
from server.jobs.models import IndexingJobProgress, JobRow, parse_job_id
from web.auth import API_PATH, RequireWebAuth, session_endpoint

STATIC = Path(__file__).resolve().parent / "static"
RESYNC_SECONDS = 15.0
# The page runs only its own script; nothing is sent elsewhere, nothing may frame it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def web_routes(app: App, verifier: StaticTokenVerifier) -> list[BaseRoute]:
    def view(row: JobRow) -> IndexingJobProgress:
        return IndexingJobProgress.from_row(row, include_traceback=app.settings.debug)

    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    async def script(_: Request) -> Response:
        return FileResponse(STATIC / "app.js", media_type="text/javascript", headers=PAGE_HEADERS)

    async def projects(_: Request) -> Response:
        return JSONResponse(
            [{"id": p.id, "database_name": p.database_name} for p in await app.registry.list_projects()]
        )

    async def jobs(request: Request) -> Response:
        try:
            project = await app.registry.get(request.path_params["project"])
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if project is None:
            return JSONResponse({"error": "unknown project"}, status_code=404)
        rows = await queries.list_jobs(await app.pool(project), limit=50)
        return JSONResponse([view(r).model_dump(mode="json") for r in rows])

    async def job_events(request: Request) -> Response:
        try:
            project = await app.registry.get(request.path_params["project"])
            job_id = parse_job_id(request.path_params["job_id"])
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if project is None:
            return JSONResponse({"error": "unknown project"}, status_code=404)
        pool = await app.pool(project)
        if await queries.get(pool, job_id) is None:
            return JSONResponse({"error": "unknown job"}, status_code=404)
        dsn = app.cluster.dsn_for(project.database_name)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            sub = await app.notifier.subscribe(dsn, "indexing_jobs", str(job_id), maxsize=8)
            try:
                sent = -1
                while True:
                    row = await queries.get(pool, job_id)  # subscribed first, then read
                    if row is None:
                        return
                    job = view(row)
                    if job.version > sent:
                        sent = job.version
                        yield ServerSentEvent(data=job.model_dump_json(), event="job", id=str(job.version))
                    if job.is_terminal:
                        yield ServerSentEvent(data=job.model_dump_json(), event="end")
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sub.get(), RESYNC_SECONDS)
            finally:
                await sub.close()

        return EventSourceResponse(stream(), ping=15)

    api = [
        Route("/session", session_endpoint(verifier), methods=["POST", "DELETE"]),
        Route("/projects", projects),
        Route("/projects/{project}/jobs", jobs),
        Route("/projects/{project}/jobs/{job_id}/events", job_events),
    ]
    return [
        Route("/web/", page),
        Route("/web/app.js", script),
        Mount(API_PATH, routes=api, middleware=[Middleware(RequireWebAuth, verifier=verifier)]),
    ]
