"""Authentication of the browser routes under /web/api (FastMCP's `auth=` covers /mcp only).

Accepted: `Authorization: Bearer <token>` or the session cookie that `POST /web/api/session`
hands out in exchange for the bearer token. The cookie is HttpOnly (page scripts never see it),
SameSite=Strict (no other site can make the browser send it) and scoped to /web/api.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.http_auth import SESSION_COOKIE, SESSION_MAX_AGE_SECONDS, StaticTokenVerifier, bearer_token

API_PATH = "/web/api"
_CHALLENGE = 'Bearer realm="codebase-mcp"'


def _cookie(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is simply no session
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


class RequireWebAuth:
    """ASGI middleware for the /web/api mount: 401 unless a valid bearer token or session cookie."""

    def __init__(self, app: ASGIApp, *, verifier: StaticTokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        presented = bearer_token(headers.get("authorization"))
        if presented is not None:
            if not self.verifier.matches(presented):
                await _unauthorized(scope, receive, send, "invalid bearer token", invalid=True)
                return
            scope.setdefault("state", {})["web_auth"] = "bearer"
        elif self.verifier.check_session(_cookie(headers), time.time()):
            scope.setdefault("state", {})["web_auth"] = "cookie"
        else:
            await _unauthorized(
                scope, receive, send,
                "authentication required: send 'Authorization: Bearer <token>' or open the page URL that "
                "`codebase-mcp serve --transport http` printed",
            )  # fmt: skip
            return

        async def no_store(message: Message) -> None:  # API answers are never cached
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, no_store)


async def _unauthorized(scope: Scope, receive: Receive, send: Send, message: str, *, invalid: bool = False) -> None:
    challenge = _CHALLENGE + (', error="invalid_token"' if invalid else "")
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge.encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def session_endpoint(verifier: StaticTokenVerifier) -> Callable[[Request], Awaitable[Response]]:
    """POST: bearer token → session cookie. DELETE: end the session."""

    async def session(request: Request) -> Response:
        if request.method == "DELETE":
            response = Response(status_code=204)
            response.delete_cookie(SESSION_COOKIE, path=API_PATH, httponly=True, samesite="strict")
            return response
        if request.scope.get("state", {}).get("web_auth") != "bearer":
            return JSONResponse(
                {"error": "a session is granted only for the bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            SESSION_COOKIE,
            verifier.issue_session(time.time()),
            max_age=SESSION_MAX_AGE_SECONDS,
            path=API_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    return session
