"""The embedded PostgreSQL: a password on TCP, the Unix socket private, old data dirs upgraded."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import asyncpg
import pytest

from server.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

LEGACY_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _refused_without_password(port: int) -> None:
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", password="guess", database="postgres")


async def _works(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"
    finally:
        await conn.close()


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedPostgres:
    return EmbeddedPostgres(tmp_path / "data", port=_free_port(), durable=False)


async def test_tcp_needs_the_generated_password(embedded: EmbeddedPostgres) -> None:
    try:
        running = embedded.ensure_running()
        await _refused_without_password(running.port)
        await _works(running.dsn("postgres", tcp=True))
        await _works(running.dsn("postgres"))  # the socket: no password
        password_file = embedded.password_path()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert running.password == password_file.read_text().strip() and len(running.password) >= 32
        assert running.password not in repr(running)
        assert stat.S_IMODE(running.socket_dir.stat().st_mode) == 0o700
        # A second process finds it secured already: nothing changes, the same password.
        again = EmbeddedPostgres(embedded.data_dir, port=embedded.port).ensure_running()
        assert (again.pid, again.password) == (running.pid, running.password)
    finally:
        embedded.stop()


async def test_a_trust_data_dir_is_upgraded_while_running_and_when_stopped(embedded: EmbeddedPostgres) -> None:
    try:
        running = embedded.ensure_running()
        # Make it what older versions left behind: trust everywhere, no password.
        socket_conn = await asyncpg.connect(running.dsn("postgres"))
        await socket_conn.execute("ALTER ROLE postgres PASSWORD NULL")
        (embedded.pgdata / "pg_hba.conf").write_text(LEGACY_HBA)
        await socket_conn.execute("SELECT pg_reload_conf()")
        await socket_conn.close()
        embedded.password_path().unlink()
        legacy = await asyncpg.connect(host="127.0.0.1", port=running.port, user="postgres", database="postgres")
        await legacy.close()  # anyone on the machine got in

        upgraded = EmbeddedPostgres(embedded.data_dir, port=embedded.port).ensure_running()  # running: upgraded
        assert upgraded.pid == running.pid
        await _refused_without_password(running.port)
        await _works(upgraded.dsn("postgres", tcp=True))

        (embedded.pgdata / "pg_hba.conf").write_text(LEGACY_HBA)  # legacy again, and stopped
        embedded.stop()
        restarted = embedded.ensure_running()
        await _refused_without_password(restarted.port)
        await _works(restarted.dsn("postgres", tcp=True))
        assert "codebase-mcp auth v1" in (embedded.pgdata / "pg_hba.conf").read_text()
    finally:
        embedded.stop()


def test_a_socket_directory_of_someone_else_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)  # long enough for the socket to go under /tmp
    embedded = EmbeddedPostgres(deep, port=0, durable=False)
    sock_dir = embedded._socket_dir()
    assert sock_dir.parent == Path("/tmp") and stat.S_IMODE(sock_dir.stat().st_mode) == 0o700
    sock_dir.chmod(0o777)
    assert stat.S_IMODE(embedded._socket_dir().stat().st_mode) == 0o700  # tightened again
    sock_dir.rmdir()
    sock_dir.symlink_to(tmp_path)  # planted by someone who guessed the name
    try:
        with pytest.raises(Exception, match="not a directory of this user"):
            embedded._socket_dir()
    finally:
        sock_dir.unlink()
