"""Joining Ray: an existing cluster by address, or an embedded local one."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import ray

from . import reaper


@contextlib.contextmanager
def connected(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict]:
    """Connect for the duration of a job; yields where it runs.

    ``address`` (or ``RAY_ADDRESS``) joins a running cluster; without one a local Ray starts inside
    this process and stops with it.  The dashboard is not started: Ray has no authentication, so
    nothing should listen beyond localhost unless the operator chose it.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here, watcher = False, None
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        on_sigterm = _sigterm_handler()
        if address:
            ray.init(address=address, **kwargs)
        else:  # "local": a new Ray of its own, never one a file left by an earlier (perhaps killed) Ray points to
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
        if callable(on_sigterm):  # ray.init replaces it with sys.exit: the caller's own handler stays
            signal.signal(signal.SIGTERM, on_sigterm)
        started_here = True
        watcher = None if address else reaper.watch()  # a local Ray goes with this process, even on kill -9
    try:
        resources = ray.cluster_resources()
        yield {"address": address or "local", "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
               "cpus": int(resources.get("CPU", 0))}
    finally:
        if started_here:
            ray.shutdown()
        if watcher is not None:
            watcher.stdin.close()  # the watcher stops whatever of this Ray did not stop


def _sigterm_handler() -> object:
    """The SIGTERM handler now set (None off the main thread, where none can be set)."""
    return signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
