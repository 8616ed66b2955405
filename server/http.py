"""Streamable-HTTP MCP endpoint at /mcp, plus the browser's job pages under /web.

Every request first passes the Host/Origin guard (`http_guard.py`); /mcp then needs the bearer
token (FastMCP `auth=`: 401 with `WWW-Authenticate: Bearer`), and /web/api the token or a session
cookie (`web/auth.py`). Only /web/ and its script are served without credentials.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastmcp import FastMCP
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from server.app import App
from server.http_auth import StaticTokenVerifier
from server.http_guard import HostOriginGuard


def build_http_app(app: App, mcp: FastMCP, *, token: str, port: int) -> Starlette:
    """The whole HTTP application; `port` is the one served (0: taken from each request's socket)."""
    from web.routes import web_routes

    verifier = StaticTokenVerifier(token)
    mcp.auth = verifier  # read by http_app(): /mcp answers 401 without the token
    # Our guard runs in front of every route; FastMCP's own one would only cover /mcp (and says 421).
    mcp_app = mcp.http_app(path="/mcp", host_origin_protection=False)
    return Starlette(
        routes=[*web_routes(app, verifier), Mount("/", app=mcp_app)],
        middleware=[
            Middleware(
                HostOriginGuard,
                port=port,
                extra_hosts=app.settings.http_allowed_hosts,
                extra_origins=app.settings.http_allowed_origins,
            )
        ],
        lifespan=mcp_app.lifespan,
    )


class _Server(uvicorn.Server):
    """uvicorn, ending the browsers' event streams when asked to stop (it waits for open ones)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        from web.sse import end_all

        end_all()
        super().handle_exit(sig, frame)


def serve_http(app: App, mcp: FastMCP, *, token: str, host: str, port: int, log_level: str) -> None:
    asgi = build_http_app(app, mcp, token=token, port=port)
    # log_config=None: uvicorn's records go through our handler (LOG_FILE, LOG_LEVEL) like every other
    config = uvicorn.Config(asgi, host=host, port=port, log_level=log_level, log_config=None)
    _Server(config).run()
