"""A lock that lets urgent (query-time) work go before pending background work."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class PriorityGate:
    """Mutual exclusion where an urgent waiter is always admitted before any normal waiter.

    Used around the single inference slot of the local model: background indexing embeds in
    small sub-batches, each taking the gate on its own, so a query waits for at most the one
    sub-batch already running. Thread-based, so it works across event loops and plain threads.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextlib.contextmanager
    def hold(self, *, urgent: bool = False) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._busy or (not urgent and self._urgent_waiting):
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    @property
    def urgent_waiting(self) -> int:
        with self._cond:
            return self._urgent_waiting
