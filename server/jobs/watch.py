"""The one way to follow jobs: a `JobWatch` on one job, one project or every project.

Every consumer (MCP `watch_indexing`, the browser's SSE streams, anything else) watches through
`JobHub` (`server/jobs/hub.py`), which reads each changed row once per database and hands the same
`JobChange` to every watch from memory. A watch's queue is the listener's `CoalescingQueue`:
bounded, coalesced by job id (only the newest version of a job waits), older versions dropped;
a queue that overflows holds one resync and the watch re-reads its own scope before going on.

The table is the truth: a watch reads its scope right after it is subscribed (`refresh`), and
again after every resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType

from listener import CoalescingQueue, Event, SubscriptionClosed
from server.db.registry import Project
from server.jobs.channels import JOBS_CHANNEL
from server.jobs.errors import JobNotFoundError
from server.jobs.models import IndexingJobProgress, JobRow

__all__ = ["Cursor", "JobChange", "JobWatch", "Scope", "follow_job"]

log = logging.getLogger(__name__)

# A resumed or re-read project stream goes this far back before its cursor: a transaction that
# stamped `updated_at` earlier may commit after one stamped later (clients drop versions they have).
RESUME_MARGIN = timedelta(seconds=30)
SEEN_MEMORY = 10_000  # jobs whose last handed-out version a watch remembers


@dataclass(frozen=True, eq=False, slots=True)
class JobChange:
    """One version of one job, read once and shared by every watch (never mutate it)."""

    project: Project
    row: JobRow
    view: IndexingJobProgress
    data: str  # `view` as JSON, serialised once for every stream
    received_at: float  # time.monotonic() when the notification (or the re-read) reached us
    frames: dict[tuple[str, str], bytes] = field(default_factory=dict)  # encoded once per stream kind

    @property
    def cursor(self) -> int:
        return Cursor.of(self.row.updated_at)


class Cursor:
    """A project stream's position: `updated_at` in microseconds since the epoch (SSE event ids)."""

    @staticmethod
    def of(moment: datetime) -> int:
        return int(moment.timestamp() * 1_000_000)

    @staticmethod
    def parse(text: str | None) -> datetime | None:
        """The moment of an event id sent back as `Last-Event-ID`; None when it is not one of ours."""
        if text is None or not text.strip().isdigit() or len(text.strip()) > 18:
            return None
        return datetime.fromtimestamp(int(text.strip()) / 1_000_000, tz=UTC)

    @staticmethod
    def resume_from(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment - RESUME_MARGIN


@dataclass(frozen=True, slots=True)
class Scope:
    """What a watch follows: one job, one project (`job_id` None) or every project (both None)."""

    project: Project | None = None
    job_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.job_id is not None and self.project is None:
            raise ValueError("a job watch needs its project")

    @property
    def kind(self) -> str:
        return "job" if self.job_id is not None else "project" if self.project is not None else "all"


Refresh = Callable[["JobWatch", datetime | None], Awaitable[list[JobChange]]]
Detach = Callable[["JobWatch"], Awaitable[None]]


class JobWatch:
    """One subscriber. Iterate it (`async for change in watch`) or `await watch.get()`; close it.

    Made by `JobHub.watch_*`, which subscribes it and then reads its scope (`refresh`). Each job's
    versions come out in increasing order, none twice.
    """

    def __init__(
        self, scope: Scope, *, maxsize: int, refresh: Refresh, detach: Detach, cursor: datetime | None
    ) -> None:
        self.scope = scope
        self.queue = CoalescingQueue(maxsize, channel=JOBS_CHANNEL)  # what the hub offers
        self._backlog: deque[JobChange] = deque()  # what a re-read found (not bounded by `maxsize`)
        self._seen: dict[uuid.UUID, int] = {}  # version handed out, per job
        self._refresh = refresh
        self._detach = detach
        # Newest `updated_at` handed out (or resumed from): a re-read of a project scope starts
        # there, less RESUME_MARGIN; without one it reads the most recent jobs.
        self.cursor = cursor
        self.refreshes = 0
        self._closed = False
        self._push: Callable[[JobChange], None] | None = None
        self._on_end: Callable[[], None] | None = None
        self._refreshing: asyncio.Future[list[JobChange]] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, change: JobChange, event: Event) -> None:
        """Queue a change (synchronous, never blocks; called by the hub's fan-out)."""
        if self._seen.get(change.row.id, -1) >= change.row.version:
            return
        if self._push is None:
            self.queue.put(event, change.row.id)
        elif (fresh := self._hand_out(change)) is not None:
            self._deliver(fresh)

    def push_to(self, receiver: Callable[[JobChange], None], *, on_end: Callable[[], None] | None = None) -> int:
        """From now on hand each change to `receiver` at once, from the hub's fan-out, instead of
        queueing it (no task wakes per change: for streams that write to a socket right away; the
        receiver must not block, and bounds and coalesces on its own). What is already queued goes
        first; returns how many changes that was. `on_end` runs if the hub shuts down (what ends
        an iterating watch with `SubscriptionClosed`)."""
        drained = 0
        self._push = receiver
        self._on_end = on_end
        while (change := self.get_nowait()) is not None:
            drained += 1
            self._deliver(change)
        if self.queue.get_nowait() is not None:  # a resync was queued: re-read, then push
            self._refreshing = asyncio.ensure_future(self.refresh())
        return drained

    def _deliver(self, change: JobChange) -> None:
        assert self._push is not None
        try:
            self._push(change)
        except Exception:  # a receiver's bug must not stop the feed that calls us
            log.exception("a job watch receiver failed")

    async def refresh(self) -> list[JobChange]:
        """Re-read the scope from the table; what it finds comes out next (older versions skipped)."""
        self.refreshes += 1
        changes = await self._refresh(self, Cursor.resume_from(self.cursor))
        self._backlog.extend(changes)
        if self._push is not None:
            while (change := self._from_backlog()) is not None:
                self._deliver(change)
        return changes

    def pending(self) -> int:
        return len(self._backlog) + len(self.queue)

    async def get(self) -> JobChange:
        """The next change; a resync (overflow, lost connection) is answered by a re-read first."""
        while True:
            change = self._from_backlog()
            if change is not None:
                return change
            event = await self.queue.get()  # SubscriptionClosed once closed
            if event.kind == "resync":
                await self.refresh()
                continue
            if (change := self._hand_out(event.payload["change"])) is not None:
                return change

    def get_nowait(self) -> JobChange | None:
        """A change ready now, if any (a queued resync stays queued for `get`)."""
        while True:
            change = self._from_backlog()
            if change is not None:
                return change
            event = self.queue.get_nowait()
            if event is None:
                return None
            if event.kind == "resync":
                self.queue.resync()  # put it back: `get` re-reads
                return None
            if (change := self._hand_out(event.payload["change"])) is not None:
                return change

    def _from_backlog(self) -> JobChange | None:
        while self._backlog:
            if (change := self._hand_out(self._backlog.popleft())) is not None:
                return change
        return None

    def _hand_out(self, change: JobChange) -> JobChange | None:
        row = change.row
        if self._seen.get(row.id, -1) >= row.version:
            return None
        self._seen.pop(row.id, None)  # re-inserted last: the oldest entries are forgotten first
        self._seen[row.id] = row.version
        if len(self._seen) > SEEN_MEMORY:
            del self._seen[next(iter(self._seen))]
        if self.cursor is None or row.updated_at > self.cursor:
            self.cursor = row.updated_at
        return change

    def end(self) -> None:
        """The hub is shutting down: no more changes (an iterating watch stops, a pushing one is told)."""
        self.queue.close()
        on_end, self._on_end, self._push = self._on_end, None, None
        if on_end is not None:
            try:
                on_end()
            except Exception:
                log.exception("a job watch's end callback failed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.queue.close()
        self._backlog.clear()
        self._push = self._on_end = None
        if self._refreshing is not None:
            self._refreshing.cancel()
        await self._detach(self)

    def __aiter__(self) -> JobWatch:
        return self

    async def __anext__(self) -> JobChange:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> JobWatch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def event_for(change: JobChange) -> Event:
    """The queue event carrying `change` (shared by every queue it is offered to)."""
    payload = {"version": change.row.version, "change": change}
    return Event(JOBS_CHANNEL, str(change.row.id), payload, "notify", change.received_at or time.monotonic())


async def follow_job(watch: Callable[[], Awaitable[JobWatch]], *, after_version: int = -1) -> AsyncIterator[JobChange]:
    """Each newer version of one job, from its current state to its final one (then it stops).

    `watch` makes the subscribed watch (e.g. `lambda: hub.watch_job(project, job_id)`); the job's
    current state comes first unless its version is not above `after_version` (a resumed stream).
    Raises `JobNotFoundError` if the job does not exist (or is deleted while followed).
    """
    subscribed = await watch()
    async with subscribed:
        while True:
            change = await subscribed.get()
            if change.row.version > after_version:
                after_version = change.row.version
                yield change
            if change.row.is_terminal:
                return


def missing_job(job_id: uuid.UUID) -> JobNotFoundError:
    return JobNotFoundError(f"job {job_id} no longer exists (finished jobs are deleted after the retention period)")
