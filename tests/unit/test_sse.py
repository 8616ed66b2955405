"""The event stream and its writer: frames go out at once, wait in order while the socket is full
(coalesced by key), and a client too far behind is dropped rather than buffered without bound."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from web.sse import MAX_PENDING, EventStream, Writer


class Socket:
    """An ASGI `send` whose writes finish at once unless the socket is marked full."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.more: list[bool] = []
        self.full: asyncio.Future[None] | None = None

    async def send(self, message: Message) -> None:
        if self.full is not None:
            await self.full
        if message["type"] != "http.response.body":
            return
        self.bodies.append(message["body"])
        self.more.append(message["more_body"])

    def block(self) -> None:
        self.full = asyncio.get_running_loop().create_future()

    def drain(self) -> None:
        assert self.full is not None
        self.full.set_result(None)
        self.full = None


async def test_frames_are_written_synchronously_while_the_socket_has_room() -> None:
    sock = Socket()
    writer = Writer(sock.send, on_broken=lambda: None)
    writer.push("a", b"1")
    writer.push("a", b"2")
    assert sock.bodies == [b"1", b"2"]  # no task switch needed
    writer.finish()
    assert sock.more == [True, True, False] and writer.done.done()


async def test_a_full_socket_keeps_order_and_only_the_newest_frame_per_key() -> None:
    sock = Socket()
    writer = Writer(sock.send, on_broken=lambda: None)
    sock.block()
    writer.push("a", b"a1")  # waits for the socket
    writer.push("b", b"b1")
    writer.push("a", b"a2")
    writer.push("a", b"a3")  # replaces a2, after b1
    writer.finish()
    assert sock.bodies == [] and not writer.done.done()
    sock.drain()
    await asyncio.wait_for(writer.done, 2)
    assert sock.bodies == [b"a1", b"b1", b"a3", b""]
    assert sock.more[-1] is False


async def test_a_client_too_far_behind_is_dropped() -> None:
    sock = Socket()
    broken: list[bool] = []
    writer = Writer(sock.send, on_broken=lambda: broken.append(True))
    sock.block()
    for key in range(MAX_PENDING + 2):
        writer.push(key, b"x")
    assert broken == [True] and writer.broken
    writer.push("late", b"y")  # ignored once broken
    writer.close()
    assert writer.done.done()


async def test_a_stream_stopped_while_it_closes_still_runs_all_of_on_close_and_completes() -> None:
    sock = Socket()
    left = asyncio.Event()
    closed: list[str] = []

    async def receive() -> Message:
        await left.wait()
        return {"type": "http.disconnect"}

    async def on_close() -> None:
        stream.stop()  # e.g. the server stopping (end_all) just as the client leaves
        await asyncio.sleep(0.01)
        closed.append("detached")

    stream = EventStream(lambda w: w.push("a", b"x"), on_close=on_close, ping_seconds=10)
    task = asyncio.create_task(stream({"type": "http", "method": "GET"}, receive, sock.send))
    await asyncio.sleep(0.01)
    assert sock.bodies == [b"x"]
    left.set()
    await asyncio.wait_for(task, 2)  # returns: no cancellation escapes
    assert closed == ["detached"]
    assert sock.more[-1] is False  # the response was completed


async def test_stop_ends_a_stream_whose_client_stays() -> None:
    sock = Socket()
    closed: list[bool] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # never leaves
        raise AssertionError

    async def on_close() -> None:
        closed.append(True)

    stream = EventStream(lambda w: None, on_close=on_close, ping_seconds=10)
    task = asyncio.create_task(stream({"type": "http", "method": "GET"}, receive, sock.send))
    await asyncio.sleep(0.01)
    stream.stop()
    await asyncio.wait_for(task, 2)
    assert closed == [True] and sock.bodies == [b""] and sock.more == [False]
