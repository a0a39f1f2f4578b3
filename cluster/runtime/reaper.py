"""Stopping the local Ray's processes when the cadence process that started them dies, even by SIGKILL.

A local Ray started inside a job (``connected()`` without an address) is stopped by ``ray.shutdown()``
when the job ends, is interrupted or fails.  A job killed outright runs no code at all, and Ray's
agents (``DashboardAgent``, ``RuntimeEnvAgent``) outlive their raylet.  So a small watcher process
is started beside the job: it reads nothing from a pipe the job holds open, noting every second Ray's
processes below the job (with their start times, so that a reused process id is never mistaken for
one of them).  When the pipe closes (the job ended, however) it waits a moment for a clean shutdown
to finish, then stops whichever of the noted processes are still running.

Run as ``python -m cadence.cluster.runtime.reaper PID`` by :func:`watch`; it needs nothing from cadence.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil

_GRACE = 3.0  # seconds a clean shutdown gets before the survivors are stopped


def watch() -> subprocess.Popen:
    """Start the watcher for this process; it stops this process's descendants once this process is gone.
    Keep the returned handle: closing its stdin (or dying) is the signal."""
    return subprocess.Popen([sys.executable, "-m", "cadence.cluster.runtime.reaper", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # not in the job's process group: a Ctrl-C spares it


def _descendants(pid: int) -> dict[int, float]:
    """Ray's processes below ``pid`` (raylet, GCS, workers, agents), with their start times."""
    found = {}
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            if "ray" in child.name() or "ray" in " ".join(child.cmdline()):
                found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


def _stop(noted: dict[int, float]) -> None:
    alive = []
    for pid, started in noted.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                alive.append(process)
        except psutil.Error:
            continue
    for process in alive:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, survivors = psutil.wait_procs(alive, timeout=_GRACE)
    for process in survivors:
        try:
            process.kill()
        except psutil.Error:
            pass


def main(pid: int) -> None:
    noted: dict[int, float] = {}
    closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    while not closed.wait(1.0):
        noted.update(_descendants(pid))
    noted.pop(os.getpid(), None)
    time.sleep(_GRACE)
    _stop(noted)


if __name__ == "__main__":
    main(int(sys.argv[1]))
