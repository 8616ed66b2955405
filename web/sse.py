"""A lean `text/event-stream` ASGI response for many concurrent browsers.

The job hub's fan-out hands each change to every stream synchronously (`JobWatch.push_to`), and
the stream writes its frame (encoded once, shared) at once through uvicorn's `send`: no task wakes
per stream and change. `send` only waits when the client's socket is full; such a write finishes
in a task of its own while the next frames wait, coalesced by key (only a job's newest frame),
at most MAX_PENDING keys, past which the stream is closed and the browser reconnects and re-reads.
The stream's own task only waits for the client to leave and sends a comment every
`ping_seconds`. `end_all()` ends every open stream (server shutdown: uvicorn stops waiting).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable
from typing import Any, cast

from starlette.types import Message, Receive, Scope, Send

__all__ = ["EventStream", "Writer", "end_all"]

MAX_PENDING = 256
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
PING = b": ping\r\n\r\n"
_open: set[EventStream] = set()


def end_all() -> int:
    """End every open stream (their clients reconnect to whoever serves next); returns how many."""
    streams = list(_open)
    for stream in streams:
        stream.stop()
    return len(streams)


class _Resume:
    """Re-yields what a suspended `send` coroutine yielded, so the running task waits on it."""

    def __init__(self, yielded: Any) -> None:
        self.yielded = yielded

    def __await__(self) -> Generator[Any, None, None]:
        yield self.yielded


class Writer:
    """Writes one stream's frames in order; `push` and `finish` never block."""

    def __init__(self, send: Send, on_broken: Callable[[], None]) -> None:
        self._send = send
        self._on_broken = on_broken
        self._pending: dict[Hashable, bytes] = {}
        self._busy: asyncio.Task[None] | None = None
        self._finishing = False
        self._completed = False
        self.broken = False
        self.done = asyncio.get_running_loop().create_future()  # set once the response is complete

    def push(self, key: Hashable, frame: bytes) -> None:
        """Send `frame` now, or (while a write waits for the socket) after the ones before it,
        replacing a frame of the same `key` that is still waiting."""
        if self.broken or self._finishing:
            return
        if self._busy is None:
            self._write({"type": "http.response.body", "body": frame, "more_body": True})
            return
        self._pending.pop(key, None)
        self._pending[key] = frame
        if len(self._pending) > MAX_PENDING:  # a client this far behind re-reads when it reconnects
            self._break()

    def finish(self) -> None:
        """End the response after what is pending."""
        if self.broken or self._finishing:
            return
        self._finishing = True
        if self._busy is None:
            self._complete()

    def close(self) -> None:
        if self._busy is not None:
            self._busy.cancel()
        self._pending.clear()
        if not self.done.done():
            self.done.set_result(None)

    def _complete(self) -> None:
        if not self._completed:
            self._completed = True
            self._write({"type": "http.response.body", "body": b"", "more_body": False})
        if self._busy is None and not self.done.done():
            self.done.set_result(None)

    def _write(self, message: Message) -> None:
        coro = cast(Coroutine[Any, Any, None], self._send(message))  # ASGI servers' send is a coroutine
        try:
            yielded = coro.send(None)  # uvicorn writes to the socket right away unless it is full
        except StopIteration:
            return
        except Exception:
            self._break()
            return
        self._busy = asyncio.ensure_future(self._resume(coro, yielded))

    async def _resume(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        try:
            while True:
                try:
                    await _Resume(yielded)
                except BaseException:
                    coro.close()
                    raise
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            self._busy = None
            self._break()
            return
        self._busy = None
        while self._pending and self._busy is None:
            key = next(iter(self._pending))
            self._write({"type": "http.response.body", "body": self._pending.pop(key), "more_body": True})
        if self._busy is None and self._finishing:
            self._complete()

    def _break(self) -> None:
        self.broken = True
        self._pending.clear()
        self._on_broken()


Start = Callable[[Writer], None]


class EventStream:
    """The response. `start(writer)` runs once the headers are sent: it hooks the writer up to its
    source (e.g. `JobWatch.push_to`), which calls `writer.push` / `writer.finish` from then on.
    `on_close` runs however the stream ends (finished, client gone, server stopping).

    Ending never cancels the stream's task: `stop()` resolves a future the task waits on, so
    `on_close` (which detaches the watch) always runs to its end."""

    def __init__(
        self,
        start: Start,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        ping_seconds: float = 15.0,
    ) -> None:
        self.start = start
        self.on_close = on_close
        self.ping_seconds = ping_seconds
        self._ended: asyncio.Future[None] | None = None
        self._stopped = False

    def stop(self) -> None:
        """End the stream now (the client left, the stream is done, or the server stops)."""
        self._stopped = True
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer: Writer | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            self._ended = asyncio.get_running_loop().create_future()
            if self._stopped:
                return
            _open.add(self)
            writer = Writer(send, on_broken=self.stop)
            writer.done.add_done_callback(lambda _: self.stop())
            self.start(writer)
            await self._until_gone(receive, writer, self._ended)
        finally:
            _open.discard(self)
            if writer is not None:
                writer.finish()  # a complete response (unless the client is too far behind: then uvicorn closes it)
                writer.close()
            if self.on_close is not None:
                await self.on_close()

    async def _until_gone(self, receive: Receive, writer: Writer, ended: asyncio.Future[None]) -> None:
        """Until the client leaves or `stop()`; a comment every `ping_seconds` meanwhile."""
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            while True:
                done, _ = await asyncio.wait((gone, ended), timeout=self.ping_seconds, return_when="FIRST_COMPLETED")
                if done:
                    return
                writer.push("ping", PING)
        finally:
            gone.cancel()
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved: a failed receive just ends the stream


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
