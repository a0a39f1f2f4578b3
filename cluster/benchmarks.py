"""``cadence bench pipeline``: the same real frames through the inline path and the actor pipeline.

Figures only, nothing asserted.  Each feed plays a real clip from the data folder back to back
until it lasts ``seconds``.  Both paths are timed from the first frame read to the last count,
with their models already loaded (actors are started, and each landmarker built, before the clock
starts); memory is the peak proportional set size (PSS: shared pages split between the processes
sharing them) of this process and every process it started, Ray's included.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

from pipelines.repetitions import RepetitionCounting
from pipelines.video import read_video

CLIPS = ("squat_correct_010.mp4", "jumpingjack_correct_001.mp4", "pullup_correct_002.mp4",
         "plank_correct_005.mp4", "russiantwist_correct_002.mp4")


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


class PeakMemory:
    """Samples the PSS of this process tree every ``interval`` seconds on a background thread
    (reading every process's smaps costs CPU: sample sparingly)."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.peak_mib = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_pss_kib(pid) for pid in _descendants(os.getpid())) / 1024
            self.peak_mib = max(self.peak_mib, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def playlists(data: Path, feeds: int, seconds: float) -> dict[str, list[str]]:
    """Feed k plays clip k (cycling through CLIPS) back to back for ``seconds``."""
    found = [data / "videos" / c for c in CLIPS if (data / "videos" / c).exists()]
    if not found:
        raise FileNotFoundError(f"no clips of {', '.join(CLIPS)} in {data / 'videos'}")
    lists = {}
    for k in range(feeds):
        clip = found[k % len(found)]
        repeats = max(1, math.ceil(seconds / read_video(clip).duration))
        lists[f"feed{k + 1}-{clip.stem}"] = [str(clip)] * repeats
    return lists


def run_inline(feeds: dict[str, list[str]], window: int, stride: int) -> dict:
    from pipelines.video import concatenate

    job = RepetitionCounting(window=window, stride=stride)
    job.run(read_video(feeds[next(iter(feeds))][0]))  # warm-up: MediaPipe's first graph, caches
    frames, started = 0, time.perf_counter()
    with PeakMemory() as memory:
        for playlist in feeds.values():
            frames += job.run(concatenate(*playlist)).frames
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 2),
            "peak_memory_mib": round(memory.peak_mib)}


def run_actors(feeds: dict[str, list[str]], window: int, stride: int, live: bool, address: str | None) -> dict:
    import numpy as np

    from .connect import connected
    from .pipeline import CountingPipeline, PipelineSettings

    with connected(address) as cluster:
        pipeline = CountingPipeline(feeds, PipelineSettings(window=window, stride=stride, live=live))
        try:
            pipeline.start()
            started = time.perf_counter()
            with PeakMemory() as memory:
                results = pipeline.run()
            seconds = time.perf_counter() - started
        finally:
            pipeline.close()
    frames = sum(r.frames for r in results)
    latencies = [x for r in results for x in r.latencies]
    figures = {"frames": frames, "seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 2),
               "peak_memory_mib": round(memory.peak_mib), "cpus": cluster["cpus"],
               "pose_actors": len(pipeline._pool.actors) if pipeline._pool else 0,
               "frames_dropped": sum(r.frames_dropped for r in results),
               "errors": [str(r.error) for r in results if r.error is not None]}
    if latencies:
        figures["latency_p50_seconds"] = round(float(np.percentile(latencies, 50)), 3)
        figures["latency_p95_seconds"] = round(float(np.percentile(latencies, 95)), 3)
    return figures
