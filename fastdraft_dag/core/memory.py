"""Peak memory of a step: this process and every process it started, sampled.

The largest user of memory is usually a child (the trainer behind Dagster Pipes, filter workers,
an export), so `ru_maxrss` of this process says little, and in the CLI's in-process runs it is
the peak of every earlier step too. A sampling thread sums the resident set of the process tree
twice a second; shared pages count once per process, so the figure is an upper bound.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

INTERVAL_S = 0.5


def tree_rss_bytes(root: psutil.Process) -> int:
    total = 0
    for proc in (root, *root.children(recursive=True)):
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # a child that just ended
            continue
    return total


class PeakMemory:
    """`with PeakMemory() as peak: ...`, then `peak.mib`: the largest sampled tree RSS."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s, self.peak_bytes = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="peak-memory")
        self._root = psutil.Process()

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self._root))
            if self._stop.wait(self.interval_s):
                return

    @property
    def mib(self) -> float:
        return round(self.peak_bytes / 2**20, 1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self._root))
