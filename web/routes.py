"""Browser routes: the jobs page and its files under /web/, the JSON API and SSE streams under /web/api.

The page and its files are public (they hold no data); everything under /web/api requires the
bearer token or the session cookie (`web/auth.py`), so routes added there are protected too.
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from server.app import App
from server.http_auth import StaticTokenVerifier
from web.api import api_routes
from web.auth import API_PATH, RequireWebAuth, session_endpoint
from web.streams import stream_routes

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
# The page runs only its own script and style; nothing is sent elsewhere, nothing may frame it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def web_routes(app: App, verifier: StaticTokenVerifier) -> list[BaseRoute]:
    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    def asset(name: str, media_type: str) -> Route:
        async def serve(_: Request) -> Response:
            return FileResponse(STATIC / name, media_type=media_type, headers=PAGE_HEADERS)

        return Route(f"/web/{name}", serve)

    api = [
        Route("/session", session_endpoint(verifier), methods=["POST", "DELETE"]),
        *(Route(path, handler, methods=methods) for path, (handler, methods) in api_routes(app).items()),
        *(Route(path, endpoint, methods=["GET"]) for path, endpoint in stream_routes(app).items()),
    ]
    return [
        Route("/web/", page),
        *(asset(n, t) for n, t in ASSETS.items()),
        Mount(API_PATH, routes=api, middleware=[Middleware(RequireWebAuth, verifier=verifier)]),
    ]
