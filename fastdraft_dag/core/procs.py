"""Child processes that cannot outlive, or inherit the locks of, the process that started them.

`kill -9` of `fastdraft run` gives its children no chance to clean up: a forked worker pool
kept running under PID 1, and since fork copies every open descriptor, kept the build lock's
flock too, so the rerun waited forever on a dead pid. Workers are therefore spawned (a fresh
interpreter: Python's descriptors are not inheritable) and ask the kernel for a signal when
their parent dies.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` when the parent dies; False if it is already gone.

    Linux only (prctl); elsewhere, or where prctl is refused, a no-op that returns True.
    """
    if not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return True
    return os.getppid() == int(parent_pid)  # the parent died before prctl


def _worker_init(parent_pid: int) -> None:
    if not die_with_parent(parent_pid):
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of spawned workers that die with this process and hold none of its locks."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
