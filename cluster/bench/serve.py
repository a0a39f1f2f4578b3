"""``cadence bench serve``: a soak of ``cadence serve`` with live loopback cameras."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from cadence.cluster.bench.memory import tree_pss_mib

SERVE_CLIPS = ("squat_correct_010.mp4", "pushup_incorrect_001.mp4", "jumpingjack_correct_001.mp4",
               "pullup_correct_002.mp4")


def listening_port(service) -> int:
    """The port a ``cadence serve --port 0`` process listens on, from the line it prints once it
    does; its standard output (a pipe) is then drained in a thread, so it never blocks on a full one."""
    import re
    import threading

    for line in service.stdout:
        if found := re.search(r"^cadence serve: http://\S+:(\d+)/", line):
            threading.Thread(target=service.stdout.read, daemon=True).start()
            return int(found[1])
    raise RuntimeError(f"cadence serve exited with status {service.wait()} before it listened")


def _start_process(command: list[str], **kwargs):
    import subprocess

    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kwargs)


def _first_count_seconds(http, feed_id: str, added: float, timeout: float = 60.0) -> float | None:
    """Seconds from adding a feed to its first count event (followed over Server-Sent Events)."""
    with http.stream("GET", f"/feeds/{feed_id}/events", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:") and line[6:].strip() == "count":
                return time.monotonic() - added
            if time.monotonic() - added > timeout:
                return None
    return None


def bench_serve(data: Path, feeds: int, minutes: float, work: Path, address: str | None = None, every: float = 10.0,
                on_sample: Callable[[dict], None] | None = None, rate: float | None = None) -> dict:
    """A soak of ``cadence serve``: ``feeds`` live loopback cameras (real clips, looped, as MJPEG)
    for ``minutes``, sampled every ``every`` seconds: memory of the service's process tree (PSS),
    each feed's frames, drops, latency and state.  A feed stalls when it reads no frame between
    two samples while running.  Each feed is posed at most ``rate`` frames a second (None: all)."""
    import httpx

    clips = [data / "videos" / SERVE_CLIPS[k % len(SERVE_CLIPS)] for k in range(feeds)]
    cameras = []
    service = _start_process([sys.executable, "-m", "cadence.cluster.cli", "serve", "--store", str(work / "store"),
                              "--port", "0"] + (["--address", address] if address else []))
    http = httpx.Client(base_url=f"http://127.0.0.1:{listening_port(service)}", timeout=60)
    try:
        for clip in clips:
            cameras.append(_start_process([sys.executable, "-m", "cadence.cluster.bench.camera_server", str(clip),
                                           "--forever"]))
        urls = [f"http://127.0.0.1:{int(c.stdout.readline())}/stream.mjpg" for c in cameras]
        wait_healthy(http, service)
        ids, first_count = [], []
        for url, clip in zip(urls, clips):
            added = time.monotonic()
            body = {"source": url, "name": clip.name, "rate": "all" if rate is None else rate}
            ids.append(http.post("/feeds", json=body).json()["id"])
            first_count.append(_first_count_seconds(http, ids[-1], added))
        samples = _soak(http, service.pid, ids, minutes, every, on_sample)
        return _serve_figures(samples, first_count, [c.name for c in clips], minutes)
    finally:
        http.close()
        for process in cameras + [service]:
            process.terminate()
            process.wait()


def wait_healthy(http, service, timeout: float = 180.0, every: float = 0.5) -> None:
    """Until ``cadence serve`` (the process ``service``) answers /health; an error if it exits or
    does not answer within ``timeout`` seconds.  ``every``: seconds between two tries."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"cadence serve exited with status {service.returncode}")
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise RuntimeError("cadence serve did not answer /health")


def _soak(http, pid: int, ids: list[str], minutes: float, every: float,
          on_sample: Callable[[dict], None] | None) -> list[dict]:
    samples, started = [], time.monotonic()
    while time.monotonic() - started < minutes * 60:
        time.sleep(every)
        feeds = {f["id"]: f for f in http.get("/feeds").json()}
        sample = {"seconds": round(time.monotonic() - started, 1),
                  "pss_mib": round(tree_pss_mib(pid), 1),
                  "feeds": [feeds[i] for i in ids]}
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
    return samples


def _share(part: int, whole: int) -> float:
    return round(part / max(1, whole), 3)


def _serve_figures(samples: list[dict], first_count: list[float | None], names: list[str], minutes: float) -> dict:
    stalls = [0] * len(names)
    for before, after in zip(samples, samples[1:]):
        for k, (a, b) in enumerate(zip(before["feeds"], after["feeds"])):
            stalls[k] += b["state"] == "running" and b["frames"] == a["frames"]
    memory = [s["pss_mib"] for s in samples]
    tenth = max(1, len(memory) // 10)
    last = samples[-1]["feeds"]
    seconds = samples[-1]["seconds"]
    return {"feeds": len(names), "minutes": minutes,
            "first_count_seconds": [None if s is None else round(s, 2) for s in first_count],
            "memory_mib_first_tenth": round(sum(memory[:tenth]) / tenth, 1),
            "memory_mib_last_tenth": round(sum(memory[-tenth:]) / tenth, 1), "memory_mib_peak": max(memory),
            "per_feed": [{"name": name, "state": f["state"], "count": f["count"], "people": f["people"],
                          "frames_per_second": round(f["frames"] / seconds, 1),
                          "posed_per_second": round(f["frames_analysed"] / seconds, 1),
                          "frames_dropped": f["frames_dropped"],
                          "dropped_share": _share(f["frames_dropped"], f["frames_analysed"] + f["frames_dropped"]),
                          "latency_p50": f["latency_p50"], "latency_p95": f["latency_p95"],
                          "reconnections": f["reconnections"], "stalled_samples": stall}
                         for name, f, stall in zip(names, last, stalls)]}
