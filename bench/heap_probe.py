"""`codebase-mcp` with its Python heap traced, for `sse_bench.py --python-heap`.

Runs the command line it is given (``python bench/heap_probe.py serve ...``) under ``tracemalloc``;
on SIGUSR1 it writes the bytes the Python heap holds now to the file named by ``HEAP_PROBE_FILE``.
RSS cannot tell memory the program still holds from memory its allocators keep for reuse (freed
objects leave partly used arenas and malloc pages behind); the traced heap can. Tracing costs time:
latencies measured beside it are not the product's.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codebase_mcp


def _report(signum: int, frame: FrameType | None) -> None:
    target = Path(os.environ["HEAP_PROBE_FILE"])
    partial = target.with_suffix(".partial")
    partial.write_text(str(tracemalloc.get_traced_memory()[0]))
    partial.replace(target)  # the reader never sees a half-written number


if __name__ == "__main__":
    tracemalloc.start()
    signal.signal(signal.SIGUSR1, _report)
    sys.exit(codebase_mcp.main(sys.argv[1:]))
