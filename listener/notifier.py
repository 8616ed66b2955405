"""One dedicated LISTEN connection per database, fanned out to bounded per-subscriber queues.

Modelled on River's notifier. NOTIFY is only a hint: whenever notifications may have been lost
(reconnect, missing LISTENs, a subscriber's queue overflowing) subscribers get a `resync` event
and must re-read the table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from listener.subscription import Event, Outcome, Subscription

log = logging.getLogger(__name__)

Connect = Callable[[str], Awaitable[asyncpg.Connection]]


@dataclass
class DsnStats:
    notifications: int = 0  # received on a channel with subscribers
    delivered: int = 0  # put into a subscriber's queue (new or replacing a pending event)
    coalesced: int = 0  # of those, replaced a pending event of the same key
    stale: int = 0  # dropped: version not newer than what the subscriber already had
    dropped: int = 0  # pending events thrown away unread, superseded by a resync
    overflows: int = 0  # queues that hit maxsize and were reset to a resync
    resyncs: int = 0  # resync events handed out (overflow, reconnect, missing LISTEN)
    reconnects: int = 0
    reconnect_failures: int = 0
    relistens: int = 0  # probes that found LISTENs missing on a live connection
    probe_failures: int = 0


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_payload(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"raw": text}
    return data if isinstance(data, dict) else {"raw": text}


class _Link:
    """One database: its connection, the channels LISTENed on it and their subscribers."""

    def __init__(self, dsn: str, stats: DsnStats, topic_key: str) -> None:
        self.dsn = dsn
        self.stats = stats
        self.topic_key = topic_key
        self.conn: asyncpg.Connection | None = None
        self.listening: set[str] = set()  # channels LISTENed on `conn`
        self.subs: dict[str, dict[str | None, set[Subscription]]] = {}  # channel -> topic -> subscribers
        self.lock = asyncio.Lock()  # serialises every use of `conn` (asyncpg allows one at a time)
        self.lost = asyncio.Event()
        self.supervisor: asyncio.Task[None] | None = None
        self.connected_once = False
        self.closed = False

    # -- subscribers ---------------------------------------------------------
    def add(self, sub: Subscription) -> None:
        self.subs.setdefault(sub.channel, {}).setdefault(sub.topic, set()).add(sub)

    def remove(self, sub: Subscription) -> bool:
        topics = self.subs.get(sub.channel, {})
        group = topics.get(sub.topic, set())
        if sub not in group:
            return False
        group.discard(sub)
        if not group:
            del topics[sub.topic]
        if not topics:
            del self.subs[sub.channel]
        return True

    def all_subs(self, channel: str | None = None) -> Iterator[Subscription]:
        for name, topics in list(self.subs.items()):
            if channel is None or name == channel:
                for group in list(topics.values()):
                    yield from list(group)

    def count(self) -> int:
        return sum(1 for _ in self.all_subs())

    # -- delivery (synchronous: runs inside asyncpg's read path) ---------------
    def on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            received = time.monotonic()
            topics = self.subs.get(channel)
            if not topics:
                return
            self.stats.notifications += 1
            data = parse_payload(str(payload))
            value = data.get(self.topic_key)
            topic = None if value is None else str(value)
            event = Event(channel, topic, data, "notify", received)
            receivers = list(topics.get(None, ()))
            if topic is not None:
                receivers += topics.get(topic, ())
            for sub in receivers:
                self._offer(sub, event, topic)
        except Exception:
            log.exception("notification on %s dropped", channel)

    def _offer(self, sub: Subscription, event: Event, key: str | None) -> None:
        dropped = sub.queue.dropped
        outcome = sub.queue.put(event, key)
        if outcome in (Outcome.QUEUED, Outcome.COALESCED):
            self.stats.delivered += 1
            if outcome is Outcome.COALESCED:
                self.stats.coalesced += 1
        elif outcome is Outcome.STALE:
            self.stats.stale += 1
        elif outcome is Outcome.OVERFLOW:
            self.stats.overflows += 1
            self.stats.resyncs += 1
        self.stats.dropped += sub.queue.dropped - dropped

    def resync(self, channel: str | None = None) -> None:
        for sub in self.all_subs(channel):
            dropped = sub.queue.dropped
            sub.queue.resync()
            self.stats.resyncs += 1
            self.stats.dropped += sub.queue.dropped - dropped

    # -- connection state ----------------------------------------------------
    def on_termination(self, conn: object) -> None:
        if conn is self.conn:
            log.warning("LISTEN connection lost (%s)", redact(self.dsn))
            self.drop()

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        self.listening.clear()
        self.lost.set()
        if conn is not None:
            conn.terminate()


class Notifier:
    """Subscribe to NOTIFY channels of many databases through one connection per database."""

    def __init__(
        self,
        *,
        connect: Connect = asyncpg.connect,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        connect_timeout: float = 10.0,
        topic_key: str = "id",
    ) -> None:
        self._connect = connect
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout
        self.topic_key = topic_key
        self._links: dict[str, _Link] = {}
        self._stats: dict[str, DsnStats] = {}
        self._closed = False

    # -- public --------------------------------------------------------------
    async def subscribe(self, dsn: str, channel: str, topic: str | None = None, *, maxsize: int = 100) -> Subscription:
        """Subscribe to `channel` on `dsn` (only payloads whose topic key equals `topic`, unless None).

        Returns once LISTEN is active on the server: read current state after this, miss nothing.
        """
        sub = Subscription(dsn, channel, topic, maxsize=maxsize, on_close=self._unsubscribe)
        while True:
            if self._closed:
                raise RuntimeError("notifier is closed")
            link = self._links.get(dsn)
            if link is None:
                stats = self._stats.setdefault(dsn, DsnStats())
                link = self._links[dsn] = _Link(dsn, stats, self.topic_key)
            async with link.lock:
                if link.closed:  # its last subscriber left while we waited; start afresh
                    continue
                try:
                    await self._attach(link, sub)
                except BaseException:
                    link.remove(sub)
                    if not link.subs:
                        await self._retire(link)
                    raise
                return sub

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for dsn, stats in self._stats.items():
            link = self._links.get(dsn)
            out[dsn] = {
                **asdict(stats),
                "subscribers": link.count() if link else 0,
                "connected": int(link is not None and link.conn is not None),
            }
        return out

    def backend_pid(self, dsn: str) -> int | None:
        """Server pid of the LISTEN connection for `dsn` (None while disconnected)."""
        link = self._links.get(dsn)
        conn = link.conn if link else None
        return conn.get_server_pid() if conn is not None else None

    async def close(self) -> None:
        """Close every connection and end every subscription."""
        self._closed = True
        links, self._links = list(self._links.values()), {}
        for link in links:
            async with link.lock:
                for sub in link.all_subs():
                    sub.queue.close()
                link.subs.clear()
                await self._retire(link)

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- subscribe / unsubscribe (callers hold link.lock) ----------------------
    async def _attach(self, link: _Link, sub: Subscription) -> None:
        if link.conn is None:
            await self._open(link)
        link.add(sub)
        if sub.channel not in link.listening:
            assert link.conn is not None
            await link.conn.add_listener(sub.channel, link.on_notification)
            link.listening.add(sub.channel)
        if link.supervisor is None:
            link.supervisor = asyncio.create_task(self._supervise(link), name=f"notifier {redact(link.dsn)}")

    async def _unsubscribe(self, sub: Subscription) -> None:
        link = self._links.get(sub.dsn)
        if link is None or not link.remove(sub):  # removed at once: no further deliveries
            return
        async with link.lock:
            if link.closed:
                return
            if not link.subs:
                await self._retire(link)
                return
            if sub.channel in link.subs or sub.channel not in link.listening:
                return
            link.listening.discard(sub.channel)
            if link.conn is not None:
                try:
                    await link.conn.remove_listener(sub.channel, link.on_notification)
                except Exception as exc:  # the probe or termination listener will deal with it
                    log.warning("UNLISTEN %s failed: %r", sub.channel, exc)

    async def _retire(self, link: _Link) -> None:
        link.closed = True
        if self._links.get(link.dsn) is link:
            del self._links[link.dsn]
        supervisor, link.supervisor = link.supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.wait([supervisor])
        conn, link.conn = link.conn, None
        if conn is not None:
            try:
                async with asyncio.timeout(5):
                    await conn.close()
            except Exception:
                conn.terminate()

    # -- connection lifecycle ------------------------------------------------
    async def _open(self, link: _Link) -> None:
        """Connect, LISTEN on every subscribed channel; after a loss, resync every subscriber."""
        async with asyncio.timeout(self.connect_timeout):
            conn = await self._connect(link.dsn)
        try:
            conn.add_termination_listener(link.on_termination)
            for channel in list(link.subs):
                await conn.add_listener(channel, link.on_notification)
        except BaseException:
            conn.terminate()
            raise
        link.conn = conn
        link.listening = set(link.subs)
        link.lost.clear()
        if link.connected_once:
            link.stats.reconnects += 1
            link.resync()
        link.connected_once = True

    async def _supervise(self, link: _Link) -> None:
        attempt = 0
        while not link.closed:
            if link.conn is None:
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                async with link.lock:
                    if link.closed or link.conn is not None:
                        continue
                    try:
                        await self._open(link)
                    except Exception as exc:
                        link.stats.reconnect_failures += 1
                        log.warning("reconnect to %s failed (attempt %d): %r", redact(link.dsn), attempt, exc)
                        continue
                attempt = 0
                continue
            try:
                async with asyncio.timeout(self.probe_interval):
                    await link.lost.wait()
                continue
            except TimeoutError:
                pass
            async with link.lock:
                if not link.closed and link.conn is not None:
                    await self._probe(link, link.conn)

    async def _probe(self, link: _Link, conn: asyncpg.Connection) -> None:
        """A live round trip that also checks our LISTENs are still in place."""
        try:
            rows = await conn.fetch("SELECT pg_listening_channels() AS channel", timeout=self.probe_timeout)
            missing = link.listening - {row["channel"] for row in rows}
            for channel in sorted(missing):
                await conn.execute(f"LISTEN {quote_ident(channel)}", timeout=self.probe_timeout)
        except Exception as exc:
            log.warning("probe of %s failed: %r", redact(link.dsn), exc)
            link.stats.probe_failures += 1
            if conn is link.conn:
                link.drop()
            return
        if missing:
            log.warning("LISTEN on %s missing from %s; restored", sorted(missing), redact(link.dsn))
            link.stats.relistens += 1
            for channel in missing:
                link.resync(channel)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.reconnect_max, self.reconnect_min * 2 ** min(attempt, 30))
        return random.uniform(ceiling / 2, ceiling)
