"""The HTTP token file, the verifier, browser session cookies and the Host/Origin policy."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.http_auth import (
    SESSION_MAX_AGE_SECONDS,
    StaticTokenVerifier,
    TokenFileError,
    bearer_token,
    load_or_create_token,
    rotate_token,
)
from server.http_guard import HostPolicy, normalise_origin, parse_host
from server.settings import Settings

pytestmark = pytest.mark.unit

TOKEN = "a-very-secret-token-0123456789"


def _settings(data_dir: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[arg-type]


def test_generated_token_is_0600_and_reused(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # a careless umask must not matter
    try:
        first = load_or_create_token(_settings(tmp_path / "data"))
    finally:
        os.umask(old_umask)
    assert first.source == "generated" and first.path == tmp_path / "data" / "http-token"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert len(first.value) >= 32
    again = load_or_create_token(_settings(tmp_path / "data"))
    assert (again.source, again.value) == ("file", first.value)
    assert first.value not in repr(first)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["http-token"]  # no temp files left


def test_setting_wins_and_no_file_is_written(tmp_path: Path) -> None:
    token = load_or_create_token(_settings(tmp_path, http_auth_token=TOKEN))
    assert (token.source, token.value, token.path) == ("setting", TOKEN, None)
    assert not (tmp_path / "http-token").exists()
    blank = load_or_create_token(_settings(tmp_path, http_auth_token=""))  # HTTP_AUTH_TOKEN= means generate
    assert blank.source == "generated"


@pytest.mark.parametrize("bad", ["short", "has spaces in the middle of it", "tab\tinside-a-long-token"])
def test_weak_or_unsendable_token_settings_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError, match="HTTP_AUTH_TOKEN"):
        _settings(tmp_path, http_auth_token=bad)


def test_readable_token_file_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "http-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        token = load_or_create_token(_settings(tmp_path))
    assert token.value == TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "readable by others" in caplog.text


def test_untrustworthy_token_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "http-token"
    path.write_text("tiny")
    with pytest.raises(TokenFileError, match="does not hold a valid token"):
        load_or_create_token(_settings(tmp_path))
    path.unlink()
    (tmp_path / "elsewhere").write_text(TOKEN)
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TokenFileError, match="cannot open"):
        load_or_create_token(_settings(tmp_path))
    path.unlink()
    path.write_text(TOKEN)
    path.chmod(0o600)
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(path, 4242, 4242)
        with pytest.raises(TokenFileError, match="another user"):
            load_or_create_token(_settings(tmp_path))


def test_rotate_replaces_the_token(tmp_path: Path) -> None:
    first = load_or_create_token(_settings(tmp_path))
    rotated = rotate_token(_settings(tmp_path))
    assert rotated.value != first.value
    assert load_or_create_token(_settings(tmp_path)).value == rotated.value
    assert stat.S_IMODE(rotated.path.stat().st_mode) == 0o600  # type: ignore[union-attr]


async def test_verifier_accepts_exactly_the_token() -> None:
    verifier = StaticTokenVerifier(TOKEN)
    assert verifier.matches(TOKEN)
    for other in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "\udcff" + TOKEN):
        assert not verifier.matches(other)
    assert (await verifier.verify_token(TOKEN)) is not None
    assert (await verifier.verify_token("nope-nope-nope-nope")) is None
    with pytest.raises(ValueError):
        StaticTokenVerifier("short")


def test_bearer_header_parsing() -> None:
    assert bearer_token(f"Bearer {TOKEN}") == TOKEN
    assert bearer_token(f"bearer   {TOKEN} ") == TOKEN
    for value in (None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN):
        assert bearer_token(value) is None


def test_session_cookies_expire_and_die_with_the_token() -> None:
    verifier = StaticTokenVerifier(TOKEN)
    now = 1_800_000_000.0
    cookie = verifier.issue_session(now)
    assert TOKEN not in cookie
    assert verifier.check_session(cookie, now)
    assert verifier.check_session(cookie, now + SESSION_MAX_AGE_SECONDS - 1)
    assert not verifier.check_session(cookie, now + SESSION_MAX_AGE_SECONDS + 1)
    assert not verifier.check_session(cookie, now - 3600)  # issued in the future
    assert not StaticTokenVerifier(TOKEN + "-rotated").check_session(cookie, now)
    version, issued, mac = cookie.split(".")
    for forged in (
        f"{version}.{int(issued) + 1}.{mac}",
        f"{version}.{issued}.{mac[:-1]}0",
        f"v2.{issued}.{mac}",
        f"{version}.-1.{mac}",
        "",
        "garbage",
        None,
    ):
        assert not verifier.check_session(forged, now), forged


def test_host_parsing() -> None:
    assert parse_host("LocalHost:8765") == ("localhost", 8765)
    assert parse_host("[::1]:8765") == ("::1", 8765)
    assert parse_host("127.0.0.1") == ("127.0.0.1", None)
    for bad in ("", "a b", "host:99999", "host:0", "::1", "host:port", "user@host", "host/x", "[::1"):
        assert parse_host(bad) is None, bad


def test_origin_normalisation() -> None:
    assert normalise_origin("http://LOCALHOST:8765") == "http://localhost:8765"
    assert normalise_origin("https://example.test") == "https://example.test:443"
    assert normalise_origin("http://[::1]:8765/") == "http://[::1]:8765"
    for bad in ("null", "file://x", "http://", "http://h/path", "http://u@h", "javascript:alert(1)", "http://h:x"):
        assert normalise_origin(bad) is None, bad


def test_default_policy_is_loopback_on_the_port() -> None:
    policy = HostPolicy.build(8765)
    for host in ("localhost:8765", "127.0.0.1:8765", "[::1]:8765"):
        assert policy.host_allowed(host), host
    for foreign in ("localhost", "localhost:8766", "attacker.example:8765", "127.0.0.2:8765", "", None, "localhost."):
        assert not policy.host_allowed(foreign), foreign
    assert policy.origin_allowed(None)  # not a browser
    assert policy.origin_allowed("http://127.0.0.1:8765")
    for origin in ("null", "http://attacker.example", "https://127.0.0.1:8765", "http://localhost:1"):
        assert not policy.origin_allowed(origin), origin


def test_configured_hosts_and_origins() -> None:
    policy = HostPolicy.build(80, ["code.example.test", "10.0.0.5:9000"], ["https://code.example.test"])
    assert policy.host_allowed("localhost")  # port 80 is the default port of http
    assert policy.host_allowed("code.example.test") and policy.host_allowed("code.example.test:1234")
    assert policy.host_allowed("10.0.0.5:9000") and not policy.host_allowed("10.0.0.5:9001")
    assert policy.origin_allowed("https://code.example.test:443")
    assert not policy.origin_allowed("http://code.example.test")
    anything = HostPolicy.build(80, ["*"], ["*"])
    assert anything.host_allowed("whatever.example") and anything.origin_allowed("null")
    with pytest.raises(ValueError, match="HTTP_ALLOWED_HOSTS"):
        HostPolicy.build(80, ["not a host"])
    with pytest.raises(ValueError, match="HTTP_ALLOWED_ORIGINS"):
        HostPolicy.build(80, [], ["example.test"])


def test_settings_split_allow_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HTTP_ALLOWED_HOSTS", "a.example, b.example:81,")
    monkeypatch.setenv("HTTP_ALLOWED_ORIGINS", "https://a.example")
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.http_allowed_hosts == ["a.example", "b.example:81"]
    assert settings.http_allowed_origins == ["https://a.example"]
