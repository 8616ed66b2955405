"""Streamable-HTTP MCP endpoint at /mcp, plus the browser's job pages under /web."""

from __future__ import annotations

from fastmcp import FastMCP
from starlette.applications import Starlette
from starlette.routing import Mount

from server.app import App


def build_http_app(app: App, mcp: FastMCP) -> Starlette:
    from web.routes import web_routes

    mcp_app = mcp.http_app(path="/mcp")
    return Starlette(
        routes=[*web_routes(app), Mount("/", app=mcp_app)],
        lifespan=mcp_app.lifespan,
    )
