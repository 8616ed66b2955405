"""The browser's JSON API (under /web/api): projects, jobs, start, cancel and search.

Expected failures (`UserError`) answer 400, 404 or 409 with `{"error": message}`; the same
validation and the same SQL as the MCP tools (`App.enqueue`, `server.jobs.queries`, `CodeSearch`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.app import App
from server.db.registry import Project, UnknownProjectError
from server.errors import UserError
from server.jobs import queries
from server.jobs.models import IndexingJobCreate, IndexingJobProgress, JobRow, parse_job_id
from server.jobs.paths import validate_repo_path
from server.projects import find_config, project_id_from_config
from server.search.engine import CodeSearch
from server.search.request import MAX_CONTEXT_LINES, MAX_LIMIT, SearchRequest
from server.validation import describe_validation_error
from web.errors import bad_request, conflict, not_found

MAX_LISTED = 200
Handler = Callable[[Request], Awaitable[Response]]


class StartRequest(BaseModel):
    """Body of `POST /web/api/jobs`."""

    model_config = ConfigDict(extra="forbid")

    repo_path: str = Field(min_length=1, max_length=4096, description="Repository directory on the server")
    project_id: str | None = Field(default=None, max_length=255, description="Default: the repository's config")
    force_reindex: bool = False


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"{name}: must be a whole number (got {raw[:40]!r})") from None
    if not low <= value <= high:
        raise InvalidParameter(f"{name}: must be between {low} and {high} (got {value})")
    return value


class InvalidParameter(UserError, ValueError):
    """A query parameter of the browser API that is out of range."""


def api_routes(app: App) -> dict[str, tuple[Handler, list[str]]]:
    """Handlers by path (relative to /web/api) with their methods."""
    search_engine: list[CodeSearch] = []

    def engine() -> CodeSearch:
        if not search_engine or search_engine[0].cluster is not app.cluster:
            search_engine[:] = [CodeSearch.from_app(app)]
        return search_engine[0]

    def view(row: JobRow) -> dict[str, Any]:
        return IndexingJobProgress.from_row(row, include_traceback=app.settings.debug).model_dump(mode="json")

    async def project_of(request: Request) -> Project:
        project = await app.registry.get(request.path_params["project"])
        if project is None:
            raise UnknownProjectError(f"unknown project {request.path_params['project']!r}")
        return project

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except UnknownProjectError as exc:
                return not_found(str(exc))
            except UserError as exc:
                return bad_request(str(exc))

        return run

    async def projects(_: Request) -> Response:
        listed = await app.registry.list_projects()
        return JSONResponse([{"id": p.id, "name": p.name, "database_name": p.database_name} for p in listed])

    async def jobs(request: Request) -> Response:
        project = await project_of(request)
        rows = await queries.list_jobs(await app.pool(project), limit=_int(request, "limit", 50, 1, MAX_LISTED))
        return JSONResponse([view(r) for r in rows])

    async def start(request: Request) -> Response:
        try:
            body = StartRequest.model_validate(json.loads(await request.body() or b"{}"))
        except ValidationError as exc:
            return bad_request(describe_validation_error(exc))
        except ValueError:
            return bad_request('the body must be JSON: {"repo_path": ..., "project_id": ..., "force_reindex": ...}')
        path = validate_repo_path(body.repo_path, allowed_roots=app.settings.allowed_roots)
        wanted = (body.project_id or "").strip() or None
        if wanted is None and (config := find_config(path)) is not None:
            wanted = project_id_from_config(config)
        project = (await app.resolver.resolve(wanted, None, create=True)).project
        job = IndexingJobCreate(
            repo_path=str(path), repo_name=path.name or str(path), project_id=project.id,
            force_reindex=body.force_reindex,
        )  # fmt: skip
        row, created = await app.enqueue(project, job)
        return JSONResponse(
            {"job_id": str(row.id), "project_id": project.id, "status": row.status, "coalesced": not created,
             "job": view(row)},
            status_code=202 if created else 200,
        )  # fmt: skip

    async def cancel(request: Request) -> Response:
        project = await project_of(request)
        job_id = parse_job_id(request.path_params["job_id"])
        pool = await app.pool(project)
        cancelled = await queries.request_cancel(pool, job_id)
        if cancelled is None:
            row = await queries.get(pool, job_id)
            if row is None:
                return not_found(f"job {job_id} not found in project {project.id!r}")
            return conflict(f"job {job_id} is already {row.status}; only pending or running jobs can be cancelled")
        return JSONResponse({"job_id": str(job_id), "status": cancelled.status, "job": view(cancelled)})

    async def search(request: Request) -> Response:
        project = await project_of(request)
        query = request.query_params.get("q", "")
        search_request = SearchRequest(
            query, project.id,
            request.query_params.get("repository") or None,
            request.query_params.get("language") or None,
            request.query_params.get("path_glob") or None,
            _int(request, "limit", 10, 1, MAX_LIMIT),
            _int(request, "context_lines", 2, 0, MAX_CONTEXT_LINES),
            request.query_params.get("scope") or "all",
        )  # fmt: skip
        response = await engine().search(search_request)
        return JSONResponse(response.model_dump(mode="json"))

    return {
        "/projects": (guarded(projects), ["GET"]),
        "/projects/{project}/jobs": (guarded(jobs), ["GET"]),
        "/jobs": (guarded(start), ["POST"]),
        "/projects/{project}/jobs/{job_id}/cancel": (guarded(cancel), ["POST"]),
        "/projects/{project}/search": (guarded(search), ["GET"]),
    }
