"""The HTTP transport's bearer token: where it comes from, how it is checked, and browser sessions.

The token is `HTTP_AUTH_TOKEN` when set; otherwise one is generated on the first
`serve --transport http` and kept, mode 0600, in the data directory (`http-token`), so MCP client
configurations keep working across restarts. Every comparison is constant-time.

Browsers cannot put a header on an `EventSource`, so the page trades the token (sent once in an
`Authorization` header) for a session cookie: `v1.<issued>.<hmac>`, signed with a key derived from
the token. Changing the token therefore ends every browser session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastmcp.server.auth import AccessToken, TokenVerifier

from server.errors import UserError
from server.settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "http-token"
SESSION_COOKIE = "codebase_mcp_session"
SESSION_MAX_AGE_SECONDS = 7 * 24 * 3600
_CLOCK_SKEW_SECONDS = 60
_MIN_LENGTH = 16
TokenSource = Literal["setting", "file", "generated"]


class TokenFileError(UserError, RuntimeError):
    """The token file exists but cannot be trusted or read."""


@dataclass(frozen=True)
class HttpToken:
    value: str
    source: TokenSource
    path: Path | None

    def __repr__(self) -> str:  # never print the secret by accident
        return f"HttpToken(source={self.source!r}, path={self.path!r})"


def token_path(settings: Settings) -> Path:
    return settings.data_dir.expanduser() / TOKEN_FILE


def load_or_create_token(settings: Settings) -> HttpToken:
    """The configured token, else the one kept in the data dir, else a new one (stored 0600)."""
    if settings.http_auth_token is not None:
        return HttpToken(settings.http_auth_token.get_secret_value(), "setting", None)
    path = token_path(settings)
    existing = _read_token_file(path)
    if existing is not None:
        return HttpToken(existing, "file", path)
    token = secrets.token_urlsafe(32)
    if _create_token_file(path, token):
        return HttpToken(token, "generated", path)
    raced = _read_token_file(path)  # another process created it first: use theirs
    if raced is None:
        raise TokenFileError(f"{path} vanished while it was being created; start again")
    return HttpToken(raced, "file", path)


def rotate_token(settings: Settings) -> HttpToken:
    """Replace the stored token with a new one (running servers keep the old one until restarted)."""
    path = token_path(settings)
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)  # not 0700: the postgres user (root runs) must enter it
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_private(tmp, token)
    os.replace(tmp, path)
    return HttpToken(token, "generated", path)


def _write_private(path: Path, token: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_token_file(path: Path, token: str) -> bool:
    """Create `path` holding `token`, atomically (written aside, then linked); False if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)  # not 0700: the postgres user (root runs) must enter it
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    _write_private(tmp, token)
    try:
        os.link(tmp, path)  # fails if the file exists: never overwrites a token in use
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _read_token_file(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"cannot open the HTTP token file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"{path} is not a regular file; remove it to have a new token generated")
        if st.st_uid != os.geteuid():
            raise TokenFileError(f"{path} belongs to another user (uid {st.st_uid}); refusing to use it")
        if st.st_mode & 0o077:
            log.warning("%s was readable by others (mode %o); restricting it to 0600", path, st.st_mode & 0o777)
            os.fchmod(fd, 0o600)
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    token = data.decode("ascii", "replace").strip()
    if len(token) < _MIN_LENGTH or not all("!" <= ch <= "~" for ch in token):
        raise TokenFileError(f"{path} does not hold a valid token; remove it to have a new one generated")
    return token


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header value."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class StaticTokenVerifier(TokenVerifier):
    """Accepts exactly one bearer token (FastMCP `auth=`); also signs and checks browser sessions."""

    def __init__(self, token: str) -> None:
        super().__init__()
        if len(token) < _MIN_LENGTH:
            raise ValueError("the HTTP token must be at least 16 characters")
        self._token = token.encode()
        self._session_key = hashlib.sha256(b"codebase-mcp web session key\0" + self._token).digest()

    def matches(self, presented: str | None) -> bool:
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._token)

    async def verify_token(self, token: str) -> AccessToken | None:
        if not self.matches(token):
            return None
        return AccessToken(token=token, client_id="codebase-mcp-user", scopes=[], expires_at=None)

    # -- browser sessions ----------------------------------------------------------------------
    def issue_session(self, now: float) -> str:
        issued = int(now)
        return f"v1.{issued}.{self._mac(issued)}"

    def check_session(self, value: str | None, now: float) -> bool:
        if not value:
            return False
        version, _, rest = value.partition(".")
        issued_text, _, mac = rest.partition(".")
        if version != "v1" or not issued_text.isdigit() or len(issued_text) > 12:
            return False
        issued = int(issued_text)
        if not now - SESSION_MAX_AGE_SECONDS <= issued <= now + _CLOCK_SKEW_SECONDS:
            return False
        return hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(issued).encode())

    def _mac(self, issued: int) -> str:
        return hmac.new(self._session_key, f"web-session:v1:{issued}".encode(), hashlib.sha256).hexdigest()
