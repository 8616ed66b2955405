"""The coalescing, bounded subscriber queue on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from listener import CoalescingQueue, Event, Outcome, Subscription, SubscriptionClosed
from tests.polling import wait_for


def ev(key: str | None, version: int | None = None, **extra: Any) -> Event:
    payload: dict[str, Any] = {"id": key, **extra}
    if version is not None:
        payload["version"] = version
    return Event("jobs", key, payload, "notify", 0.0)


def drain(q: CoalescingQueue) -> list[Event]:
    out = []
    while (item := q.get_nowait()) is not None:
        out.append(item)
    return out


def test_newer_event_replaces_older_in_place_keeping_first_arrival_order() -> None:
    q = CoalescingQueue(10)
    assert q.put(ev("a", 1), "a") is Outcome.QUEUED
    assert q.put(ev("b", 1), "b") is Outcome.QUEUED
    assert q.put(ev("a", 2), "a") is Outcome.COALESCED
    assert q.put(ev("a", 3), "a") is Outcome.COALESCED
    got = drain(q)
    assert [(e.topic, e.payload["version"]) for e in got] == [("a", 3), ("b", 1)]


def test_versions_never_regress_even_after_delivery() -> None:
    q = CoalescingQueue(10)
    q.put(ev("a", 5), "a")
    assert q.put(ev("a", 4), "a") is Outcome.STALE
    assert q.put(ev("a", 5), "a") is Outcome.STALE
    assert [e.payload["version"] for e in drain(q)] == [5]
    assert q.put(ev("a", 3), "a") is Outcome.STALE  # already delivered 5
    assert q.put(ev("a", 6), "a") is Outcome.QUEUED
    assert [e.payload["version"] for e in drain(q)] == [6]


def test_events_without_version_or_key() -> None:
    q = CoalescingQueue(10)
    q.put(ev("a", progress=1), "a")
    q.put(ev("a", progress=2), "a")
    q.put(ev(None, n=1), None)
    q.put(ev(None, n=2), None)  # no key: never coalesced
    got = drain(q)
    assert [e.payload.get("progress", e.payload.get("n")) for e in got] == [2, 1, 2]


def test_overflow_drops_everything_for_one_resync() -> None:
    q = CoalescingQueue(3, channel="jobs", topic=None)
    for key in "abc":
        assert q.put(ev(key, 1), key) is Outcome.QUEUED
    assert q.put(ev("a", 2), "a") is Outcome.COALESCED  # known key: no overflow
    assert q.put(ev("d", 1), "d") is Outcome.OVERFLOW
    assert q.dropped == 3
    assert q.put(ev("e", 1), "e") is Outcome.QUEUED  # the resync does not take a slot
    got = drain(q)
    assert [(e.kind, e.channel, e.payload) for e in got[:1]] == [("resync", "jobs", {})]
    assert [e.topic for e in got[1:]] == ["e"]


def test_resync_supersedes_pending_and_repeated_resyncs_collapse() -> None:
    q = CoalescingQueue(10, channel="jobs", topic="a")
    q.put(ev("a", 7), "a")
    q.resync()
    q.resync()
    got = drain(q)
    assert [(e.kind, e.topic) for e in got] == [("resync", "a")]
    # after a resync the reader holds whatever the table said, so versions start afresh
    assert q.put(ev("a", 1), "a") is Outcome.QUEUED


async def test_get_waits_for_put_and_close_wakes_waiters() -> None:
    q = CoalescingQueue(10)
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.put(ev("a", 1), "a")
    assert (await asyncio.wait_for(waiter, 1)).topic == "a"

    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to its wait (tasks start in FIFO order)
    assert not waiter.done()
    q.close()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiter, 1)
    assert q.put(ev("b", 1), "b") is Outcome.CLOSED


async def test_subscription_iteration_ends_on_close_and_close_is_idempotent() -> None:
    closed: list[Subscription] = []

    async def on_close(sub: Subscription) -> None:
        closed.append(sub)

    sub = Subscription("dsn", "jobs", None, maxsize=5, on_close=on_close)
    sub.queue.put(ev("a", 1), "a")
    topics: list[str | None] = []

    async def consume() -> list[str | None]:
        async for e in sub:
            topics.append(e.topic)
        return topics

    reader = asyncio.create_task(consume())
    # Closing drops whatever is still queued: close only once the reader has the event in hand.
    await wait_for(lambda: topics == ["a"], within=1, interval=0.001, what="the reader got the event")
    async with sub:
        pass
    await sub.close()
    assert await asyncio.wait_for(reader, 1) == ["a"]
    assert closed == [sub]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CoalescingQueue(0)
