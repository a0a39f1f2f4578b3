"""Memory of a process tree, as the benchmarks report it: the proportional set size (PSS: pages
shared between processes split among them) of a process and every process below it, Ray's
included, read with psutil."""

from __future__ import annotations

import os
import threading

import psutil


def tree_pss_mib(pid: int) -> float:
    """The PSS of ``pid`` and all its descendants, in MiB (processes gone meanwhile count 0)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


class PeakMemory:
    """Samples the PSS of this process tree every ``interval`` seconds on a background thread
    (reading every process's smaps costs CPU: sample sparingly)."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.peak_mib = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, tree_pss_mib(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
