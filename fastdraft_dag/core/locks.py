"""The one exclusive file lock: `flock`, which the kernel releases when its holder dies.

Artifact builds, the trainer's checkpoints and the target registry all serialise on it. A crash
(kill -9 included) never leaves a stale lock, and it works without any Dagster instance: two runs
without DAGSTER_HOME still exclude each other.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created, with its directory, if absent) for the block.

    The holder writes itself in (pid@host); while another process holds the lock, `on_wait`
    hears once who holds it ("... is held by pid 12@host; waiting for it to finish") and the
    caller blocks until it is free. Without `on_wait` it simply blocks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"{path} is held by {_holder(fd)}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}@{socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int, patience: float = 1.0) -> str:
    """Who holds the lock, as it wrote itself in. A holder that has only just taken the lock
    may not have written yet (two runs starting together), so an empty file is read again."""
    deadline = time.monotonic() + patience
    while True:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if holder or time.monotonic() > deadline:
            return holder or "unknown"
        time.sleep(0.02)
