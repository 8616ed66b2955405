"""Watching one repository folder with watchfiles (inotify on Linux, FSEvents, ReadDirectoryChangesW).

watchfiles' Rust core collects events in its own thread and returns them in batches: a batch
closes once no new (change, path) pair arrived for one step, or after `max_batch_ms`. Each
watcher blocks one thread of its own (never the event loop's shared executor, which the indexer
uses). Between batches it checks that the root folder is still the same folder: when it is
removed or replaced the watch ends, and once a folder is there again a new watch starts and a
`root_changed` change set asks for one incremental index to reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from watchfiles._rust_notify import RustNotify

from server.watch.changes import ChangeSet, classify

log = logging.getLogger(__name__)

Identity = tuple[int, int]  # (st_dev, st_ino) of the root folder
OnChanges = Callable[[ChangeSet], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchTiming:
    debounce_ms: int = 200  # a batch closes debounce_ms/2 … debounce_ms after the last new change
    max_batch_ms: int = 2000  # ... or this long after its first change, whatever keeps arriving
    check_seconds: float = 2.0  # how often an idle watcher checks that its root is still there
    poll_ms: int = 1000  # polling fallback interval (when the OS runs out of watches)

    @property
    def step_ms(self) -> int:
        return max(10, self.debounce_ms // 2)


def root_identity(root: Path) -> Identity | None:
    """The root folder's identity; None when it is missing or is no folder (a symlink counts as none)."""
    try:
        st = os.lstat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class RepositoryWatcher:
    """Calls `on_changes` with each batch of relevant changes under `root` until cancelled."""

    def __init__(self, root: Path, on_changes: OnChanges, timing: WatchTiming | None = None) -> None:
        self.root = root
        self.on_changes = on_changes
        self.timing = timing or WatchTiming()
        self.polling = False  # True after the OS refused more inotify watches
        self.watching = asyncio.Event()  # set while events are being received

    async def run(self) -> None:
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"watch-{self.root.name}")
        try:
            missed = False
            while True:
                identity = root_identity(self.root)
                if identity is None:
                    missed = True
                    await asyncio.sleep(self.timing.check_seconds)
                    continue
                if missed:  # it was gone or replaced, or the watch failed: reconcile everything
                    await self._deliver(ChangeSet(root_changed=True))
                missed = not await self._watch(executor, identity)
        finally:
            executor.shutdown(wait=False)

    async def _deliver(self, changes: ChangeSet) -> None:
        try:
            await self.on_changes(changes)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling changes under %s failed", self.root)

    def _open(self) -> RustNotify:
        try:
            return RustNotify([str(self.root)], False, self.polling, self.timing.poll_ms, True, True)
        except FileNotFoundError:
            raise
        except OSError as exc:  # e.g. ENOSPC: fs.inotify.max_user_watches reached
            if self.polling:
                raise
            log.warning("cannot watch %s with OS events (%s); polling every %d ms", self.root, exc, self.timing.poll_ms)
            self.polling = True
            return RustNotify([str(self.root)], False, True, self.timing.poll_ms, True, True)

    async def _watch(self, executor: ThreadPoolExecutor, identity: Identity) -> bool:
        """Watch while the root stays the same folder; False when events may have been missed."""
        loop = asyncio.get_running_loop()
        try:
            notify = await loop.run_in_executor(executor, self._open)
        except OSError as exc:
            log.warning("cannot watch %s: %s", self.root, exc)
            await asyncio.sleep(self.timing.check_seconds)
            return False
        stop = threading.Event()
        pending: Future[object] | None = None
        t = self.timing
        root = str(self.root)
        try:
            if root_identity(self.root) != identity:
                return False  # replaced while the watches were being set up
            self.watching.set()
            while True:
                pending = executor.submit(notify.watch, t.max_batch_ms, t.step_ms, int(t.check_seconds * 1000), stop)
                raw = await asyncio.wrap_future(pending)
                pending = None
                if raw == "stop":
                    return True
                if root_identity(self.root) != identity:
                    return False  # removed or replaced: what is there now is reconciled on return
                if raw == "timeout" or not isinstance(raw, set):
                    continue
                changes = classify(root, raw)
                if not changes.empty:
                    await self._deliver(changes)
        except RuntimeError as exc:  # WatchfilesRustInternalError: the OS watcher failed
            log.warning("watching %s failed (%s); starting again", self.root, exc)
            return False
        finally:
            self.watching.clear()
            stop.set()
            if pending is not None:  # let the thread see the stop (within one step) before closing
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(asyncio.wrap_future(pending))
            executor.submit(notify.close)
