"""Host and Origin allow-lists in front of every HTTP route (DNS rebinding, cross-site requests).

A DNS-rebinding page reaches the loopback server under its own name (`Host: attacker.example`);
a cross-site page reaches it under the right name but says where it comes from (`Origin:`). The
MCP streamable-HTTP spec asks servers to validate Origin; both checks answer 403.

Allowed by default: `localhost`, `127.0.0.1` and `[::1]` with the serving port, and the matching
`http://` origins. `HTTP_ALLOWED_HOSTS` adds `host` (any port) or `host:port` entries;
`HTTP_ALLOWED_ORIGINS` adds `scheme://host[:port]` entries; `*` switches a check off. Requests
without an Origin header (MCP clients, curl) pass the Origin check; a `null` origin does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_HOST_RE = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_host(value: str) -> tuple[str, int | None] | None:
    """`Host` header → (host, port or None when absent); None when it is not a plain name or address."""
    match = _HOST_RE.fullmatch(value.strip().lower())
    if match is None:
        return None
    host = match["v6"] or match["name"]
    if match["port"] is None:
        return host, None
    port = int(match["port"])
    return (host, port) if 0 < port < 65536 else None


def normalise_origin(value: str) -> str | None:
    """`scheme://host:port` with the default port spelled out; None when it is not an origin."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or _DEFAULT_PORTS[parts.scheme]}"


@dataclass(frozen=True)
class HostPolicy:
    hosts: frozenset[tuple[str, int | None]]  # port None: any port
    origins: frozenset[str]
    any_host: bool = False
    any_origin: bool = False

    @classmethod
    def build(cls, port: int, extra_hosts: Sequence[str] = (), extra_origins: Sequence[str] = ()) -> HostPolicy:
        hosts: set[tuple[str, int | None]] = {(name, port) for name in LOOPBACK_NAMES}
        origins = {f"http://{'[::1]' if name == '::1' else name}:{port}" for name in LOOPBACK_NAMES}
        any_host = any_origin = False
        for entry in extra_hosts:
            if entry.strip() == "*":
                any_host = True
                continue
            parsed = parse_host(entry)
            if parsed is None:
                raise ValueError(f"HTTP_ALLOWED_HOSTS: {entry!r} is not a host or host:port")
            hosts.add(parsed)
        for entry in extra_origins:
            if entry.strip() == "*":
                any_origin = True
                continue
            origin = normalise_origin(entry)
            if origin is None:
                raise ValueError(f"HTTP_ALLOWED_ORIGINS: {entry!r} is not an origin like http://host:port")
            origins.add(origin)
        return cls(frozenset(hosts), frozenset(origins), any_host, any_origin)

    def host_allowed(self, header: str | None, scheme: str = "http") -> bool:
        if self.any_host:
            return True
        parsed = parse_host(header or "")
        if parsed is None:
            return False
        host, port = parsed[0], parsed[1] or _DEFAULT_PORTS.get(scheme, 80)
        return (host, port) in self.hosts or (host, None) in self.hosts

    def origin_allowed(self, header: str | None) -> bool:
        if header is None or self.any_origin:
            return True
        origin = normalise_origin(header)
        return origin is not None and origin in self.origins


class HostOriginGuard:
    """ASGI middleware: 403 for a Host or Origin outside the policy, before any route runs.

    `port=0` (an ephemeral port) takes the port from the listening socket of each request.
    """

    def __init__(
        self, app: ASGIApp, *, port: int, extra_hosts: Sequence[str] = (), extra_origins: Sequence[str] = ()
    ) -> None:
        self.app = app
        self._extra = (tuple(extra_hosts), tuple(extra_origins))
        self._policies: dict[int, HostPolicy] = {}
        self._port = port
        if port:
            self._policies[port] = HostPolicy.build(port, *self._extra)
        else:
            HostPolicy.build(8765, *self._extra)  # validate the settings now, not on the first request

    def _policy(self, scope: Scope) -> HostPolicy:
        port = self._port
        if not port:
            server = scope.get("server")
            port = int(server[1]) if server and server[1] else 80
        policy = self._policies.get(port)
        if policy is None:
            policy = self._policies[port] = HostPolicy.build(port, *self._extra)
        return policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        policy = self._policy(scope)
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        if not policy.host_allowed(headers.get("host"), scheme):
            await _forbid(scope, receive, send, "Host header not allowed; add it to HTTP_ALLOWED_HOSTS")
            return
        if not policy.origin_allowed(headers.get("origin")):
            await _forbid(scope, receive, send, "Origin not allowed; add it to HTTP_ALLOWED_ORIGINS")
            return
        await self.app(scope, receive, send)


async def _forbid(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
