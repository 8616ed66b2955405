"""Events, the bounded coalescing queue behind each subscriber, and the Subscription handle."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

EventKind = Literal["notify", "resync"]


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    topic: str | None
    payload: dict[str, Any]
    kind: EventKind = "notify"
    received_at: float = 0.0  # time.monotonic() when the notification reached this process


class Outcome(enum.Enum):
    """What `CoalescingQueue.put` did with an event (the notifier counts these)."""

    QUEUED = "queued"  # a new key, appended
    COALESCED = "coalesced"  # replaced the pending event of the same key in place
    STALE = "stale"  # version not newer than one already queued or delivered: dropped
    OVERFLOW = "overflow"  # too many distinct keys: everything dropped, one resync queued
    CLOSED = "closed"


class SubscriptionClosed(Exception):
    """`get()` on a subscription that is closed (iteration simply ends)."""


_RESYNC = object()  # key of the queued resync; it never counts against maxsize


def event_version(payload: dict[str, Any]) -> int | None:
    version = payload.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


class CoalescingQueue:
    """At most `maxsize` pending keys; newer events of a key replace older ones where they stand.

    `put` never blocks or awaits, so a slow reader cannot stall whoever feeds it. When a new key
    would exceed `maxsize`, the queue throws everything away and holds one resync event instead:
    the reader must re-read the source of truth.
    """

    def __init__(
        self, maxsize: int = 100, *, channel: str = "", topic: str | None = None, version_memory: int = 10_000
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.channel = channel  # channel and topic stamped on resync events
        self.topic = topic
        self._version_memory = version_memory
        self._pending: dict[Hashable, Event] = {}
        self._versions: dict[Hashable, int] = {}  # highest version queued or delivered, per key
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # pending events discarded on overflow

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, event: Event, key: Hashable | None) -> Outcome:
        """Queue `event` under `key` (None: never coalesced); synchronous and non-blocking."""
        if self._closed:
            return Outcome.CLOSED
        if key is None:
            key = object()
        version = event_version(event.payload)
        if version is not None:
            seen = self._versions.get(key)
            if seen is not None and version <= seen:
                return Outcome.STALE
            self._remember(key, version)
        if key in self._pending:
            self._pending[key] = event  # dict assignment keeps the first arrival's position
            return Outcome.COALESCED
        if len(self._pending) - (_RESYNC in self._pending) >= self.maxsize:
            self.resync(received_at=event.received_at)
            return Outcome.OVERFLOW
        self._pending[key] = event
        self._ready.set()
        return Outcome.QUEUED

    def resync(self, *, received_at: float | None = None) -> None:
        """Replace whatever is pending with a single resync event."""
        if self._closed:
            return
        self.dropped += sum(1 for k in self._pending if k is not _RESYNC)
        self._pending.clear()
        self._versions.clear()  # the reader re-reads the truth; old versions no longer matter
        stamp = time.monotonic() if received_at is None else received_at
        self._pending[_RESYNC] = Event(self.channel, self.topic, {}, "resync", stamp)
        self._ready.set()

    def get_nowait(self) -> Event | None:
        if not self._pending:
            return None
        key = next(iter(self._pending))
        return self._pending.pop(key)

    async def get(self) -> Event:
        while not self._pending:
            if self._closed:
                raise SubscriptionClosed
            self._ready.clear()
            await self._ready.wait()
        key = next(iter(self._pending))
        return self._pending.pop(key)

    def close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._ready.set()

    def _remember(self, key: Hashable, version: int) -> None:
        self._versions.pop(key, None)  # re-insert: the dict's order doubles as least-recently-updated
        self._versions[key] = version
        if len(self._versions) > self._version_memory:
            del self._versions[next(iter(self._versions))]


class Subscription:
    """One subscriber's view of a channel (optionally narrowed to one topic).

    Iterate it (`async for event in sub`) or `await sub.get()`; close it with `await sub.close()`
    or `async with`. Closing ends the iteration.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        topic: str | None,
        *,
        maxsize: int,
        on_close: Callable[[Subscription], Awaitable[None]],
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.topic = topic
        self.queue = CoalescingQueue(maxsize, channel=channel, topic=topic)
        self._on_close = on_close
        self._closing = False

    @property
    def closed(self) -> bool:
        return self.queue.closed

    def __len__(self) -> int:
        return len(self.queue)

    async def get(self) -> Event:
        """The next event; raises `SubscriptionClosed` once the subscription is closed."""
        return await self.queue.get()

    def get_nowait(self) -> Event | None:
        return self.queue.get_nowait()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.queue.close()
        await self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.queue.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} pending"
        return f"<Subscription {self.channel!r} topic={self.topic!r} {state}>"
