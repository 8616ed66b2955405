"""Where an asyncio task is stuck: for the logs of a shutdown that had to leave a task behind, and
for tests that wait for a task to end."""

from __future__ import annotations

import asyncio
from typing import Any


def task_stack(task: asyncio.Task[Any]) -> str:
    """Where `task` is suspended: its chain of awaits, outermost first, and what the innermost awaits
    (for logs and test failures; `Task.print_stack` shows only the outermost frame)."""
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:  # a future, or a finished coroutine
            lines.append(f"  awaiting {awaited!r}")
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)
