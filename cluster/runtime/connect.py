"""Joining Ray: an existing cluster by address, or an embedded local one.

A local Ray listens on loopback only.  Ray binds its servers (GCS, raylet, every worker's gRPC
server, the runtime-env agent) to the node's address, and ``ray.init`` turns a node address of
127.0.0.1 into the machine's network address unless Ray believes it runs on a laptop
(``ray_constants.ENABLE_RAY_CLUSTER`` false, the Windows and macOS default).  So a local start
asks for node address 127.0.0.1 with that switch off for the duration of ``ray.init``: every
listener is then on 127.0.0.1 (``tests/test_cli.py`` lists them during a real run).  Ray's head
API process (``dashboard.py``) still runs, as Ray needs it, but with ``include_dashboard=False``
it serves no web page and listens on nothing.  Joining a cluster by address changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import ray

from cadence.cluster.runtime import reaper


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
            join(address, **kwargs)
        else:
            start_local(num_cpus, **kwargs)
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


def start_local(num_cpus: int | None = None, **kwargs) -> None:
    """Start a Ray of this process's own that listens on loopback only (see the module's docstring).

    ``address="local"``: a new Ray, never one that a file left by an earlier (perhaps killed) Ray
    points to.
    """
    kwargs.setdefault("include_dashboard", False)
    with on_loopback():
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)


def join(address: str, **kwargs) -> None:
    """Join the cluster at ``address``; one on this machine's loopback (``127.0.0.1:PORT``: a
    cluster of several nodes started here, as the tests and ``cadence bench cluster`` do) is joined
    from 127.0.0.1 too, as its nodes expect."""
    host = address.split("://")[-1].rsplit(":", 1)[0]
    if host in ("127.0.0.1", "localhost"):
        with on_loopback():
            ray.init(address=address, _node_ip_address="127.0.0.1", **kwargs)
    else:
        ray.init(address=address, **kwargs)


@contextlib.contextmanager
def on_loopback() -> Iterator[None]:
    """While inside, a Ray node (or driver) started in this process keeps 127.0.0.1 as its address
    instead of the machine's network address (see the module's docstring)."""
    from ray._private import ray_constants

    on_a_network = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = on_a_network


def _sigterm_handler() -> object:
    """The SIGTERM handler now set (None off the main thread, where none can be set)."""
    return signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
