"""Who uses the embedded PostgreSQL, and bringing it back when it is stopped under them.

Every process that runs on the embedded server holds an exclusive `flock` on a file of its own in
`<data dir>/users/` for as long as it lives (the kernel drops it when the process dies, SIGKILL
included), so `codebase-mcp db stop` can tell who would break and refuse without `--force`.
While it runs, each such process also checks every second that the server is up and starts it
again if not (`ensure_running` serialises the restart across processes); then its pools drop
their dead connections and the listener, which reconnects by itself, resyncs its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from server.db.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

USERS_DIR = "users"
CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class User:
    pid: int
    command: str


class UserLease:
    """This process's entry in `<data dir>/users/`: locked until `release()` or death."""

    def __init__(self, data_dir: Path) -> None:
        folder = data_dir / USERS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}.lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:3]]).encode()[:200])
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def active_users(data_dir: Path, *, exclude_pid: int | None = None) -> list[User]:
    """Processes using the embedded server now; leftovers of dead processes are removed."""
    folder = data_dir / USERS_DIR
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    users = []
    for entry in entries:
        stem = entry.name.removesuffix(".lock")
        if not stem.isdigit() or int(stem) == exclude_pid:
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: that process is alive
                users.append(User(int(stem), os.read(fd, 200).decode(errors="replace")))
                continue
            with contextlib.suppress(OSError):
                entry.unlink()  # its process is gone
        finally:
            os.close(fd)
    return users


class EmbeddedKeeper:
    """Registers this process as a user and restarts the server whenever it finds it stopped."""

    def __init__(
        self,
        embedded: EmbeddedPostgres,
        *,
        on_restart: Callable[[], Awaitable[None]] | None = None,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self.embedded = embedded
        self.on_restart = on_restart
        self.interval = interval
        self.restarts = 0
        self._lease: UserLease | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._lease = UserLease(self.embedded.data_dir)
        self._task = asyncio.create_task(self._watch(), name="embedded-postgres-keeper")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    async def _watch(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(min(self.interval * 2**failures, 30.0))
            if self.embedded.running() is not None:
                failures = 0
                continue
            log.warning("embedded PostgreSQL in %s is not running; starting it again", self.embedded.data_dir)
            try:
                await asyncio.to_thread(self.embedded.ensure_running)
            except Exception:
                failures = min(failures + 1, 5)
                log.exception("could not restart the embedded PostgreSQL; retrying")
                continue
            failures = 0
            self.restarts += 1
            if self.on_restart is not None:
                try:
                    await self.on_restart()
                except Exception:
                    log.exception("recovering after the PostgreSQL restart failed")
