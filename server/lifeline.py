"""Child processes that die with the process they work for, even when it is killed with SIGKILL.

The chunker pool (`concurrent.futures.ProcessPoolExecutor` on a forkserver) outlives a SIGKILLed
parent on its own: each worker holds the write ends of the pool's queues and of the forkserver's
"alive" pipe, so nobody ever sees end-of-file, and the workers, the forkserver and the
resource_tracker wait forever. `die_with(owner_pid)`, run as the pool's initializer, ends each
worker as soon as the owner exits; the forkserver and the resource_tracker then see their pipes
close and exit by themselves.

Two mechanisms, because a worker's parent is the forkserver, not the owner:

* `prctl(PR_SET_PDEATHSIG, SIGKILL)` (Linux): the kernel kills the worker if its parent (the
  forkserver) dies first;
* a daemon thread waiting on a pidfd of the owner (Linux 5.3+; elsewhere it polls the pid every
  half second) that exits the worker the moment the owner is gone.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5


def die_with(owner_pid: int) -> None:
    """Pool initializer: end this process when `owner_pid` (the pool's owner) exits."""
    set_parent_death_signal()
    watch_owner(owner_pid)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` when our parent dies (Linux only); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may be another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_owner(owner_pid: int) -> threading.Thread:
    """Start a daemon thread that exits this process as soon as `owner_pid` has exited."""
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(owner_pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already gone
        pidfd = None
    if not pid_alive(owner_pid):
        os._exit(1)
    thread = threading.Thread(target=_wait_then_exit, args=(owner_pid, pidfd), name="lifeline", daemon=True)
    thread.start()
    return thread


def _wait_then_exit(owner_pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # a pidfd turns readable when its process exits
    else:
        while pid_alive(owner_pid):
            time.sleep(POLL_SECONDS)
    os._exit(1)
