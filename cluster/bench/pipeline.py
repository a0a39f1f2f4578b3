"""``cadence bench pipeline``: the same real frames through the inline path and the actor pipeline.

Figures only, nothing asserted.  Each feed plays the real clips of the data folder back to back,
each feed from another clip on, until it lasts ``seconds``.  Both paths are timed from the first frame read to the last count,
with their models already loaded (actors are started, and each landmarker built, before the clock
starts); memory is the peak proportional set size (PSS: shared pages split between the processes
sharing them) of this process and every process it started, Ray's included.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from cadence.pipelines.errors import InputError
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.video import read_video

from cadence.cluster.bench.memory import PeakMemory

CLIPS = ("squat_correct_010.mp4", "jumpingjack_correct_001.mp4", "pullup_correct_002.mp4",
         "plank_correct_005.mp4", "russiantwist_correct_002.mp4")


def playlists(data: Path, feeds: int, seconds: float) -> dict[str, list[str]]:
    """Feed k plays the clips back to back, starting from clip k, until it lasts ``seconds``: any
    number of feeds (of at least ``seconds`` >= the clips' total) sees the same mix of clips."""
    found = [data / "videos" / c for c in CLIPS if (data / "videos" / c).exists()]
    if not found:
        raise InputError(data / "videos", f"holds none of the benchmark's clips ({', '.join(CLIPS)})")
    durations = {clip: read_video(clip).duration for clip in found}
    lists = {}
    for k in range(feeds):
        playlist, total = [], 0.0
        for clip in itertools.cycle(found[k % len(found):] + found[:k % len(found)]):
            if total >= seconds:
                break
            playlist.append(str(clip))
            total += durations[clip]
        lists[f"feed{k + 1}"] = playlist
    return lists


def run_inline(feeds: dict[str, list[str]], job: RepetitionCounting) -> dict:
    from cadence.pipelines.video import concatenate

    job.run(read_video(feeds[next(iter(feeds))][0]))  # warm-up: MediaPipe's first graph, caches
    frames, started = 0, time.perf_counter()
    with PeakMemory() as memory:
        for playlist in feeds.values():
            frames += job.run(concatenate(*playlist)).frames
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 2),
            "peak_memory_mib": round(memory.peak_mib)}


def run_actors(feeds: dict[str, list[str]], job: RepetitionCounting, address: str | None,
               in_driver: bool = False) -> dict:
    """The actor pipeline on ``feeds``: as ``cadence count`` runs it (each feed on a node, behind a
    node actor), or ``in_driver``, the node pipeline driven from this process (before feeds lived
    on nodes)."""
    import numpy as np

    from cadence.cluster.counting.node import NodePipeline
    from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
    from cadence.cluster.runtime.connect import connected

    with connected(address) as cluster:
        pipeline = (NodePipeline if in_driver else CountingPipeline)(feeds, PipelineSettings(job))
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
               "pose_actors": len(pipeline.pose_actors) if in_driver else None,
               "frames_dropped": sum(r.frames_dropped for r in results),
               "errors": [str(r.error) for r in results if r.error is not None]}
    if latencies:
        figures["latency_p50_seconds"] = round(float(np.percentile(latencies, 50)), 3)
        figures["latency_p95_seconds"] = round(float(np.percentile(latencies, 95)), 3)
    return figures


# -- cadence bench features -----------------------------------------------------------------
def run_chaos(feeds: dict[str, list[str]], job: RepetitionCounting, address: str | None, every: float,
              seed: int = 0) -> dict:
    """Count ``feeds`` through the actor pipeline while a random actor of any stage (capture, pose,
    counting) is killed every ``every`` seconds, Ray restarting it; then count each feed inline and
    compare.  Every feed's final count must equal the inline one, exactly."""
    import random

    import ray

    from cadence.pipelines.video import concatenate

    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings

    chooser = random.Random(seed)
    kills: dict[str, int] = {"capture": 0, "pose": 0, "counting": 0}
    with connected(address):
        pipeline = CountingPipeline(feeds, PipelineSettings(job))
        try:
            pipeline.start()
            started = last = time.perf_counter()

            def chaos(_feed: str, _frames: int) -> None:
                nonlocal last
                if time.perf_counter() - last < every:
                    return
                last = time.perf_counter()
                stage = chooser.choice(list(kills))
                ray.kill(chooser.choice(pipeline.stage_actors()[stage]), no_restart=False)
                kills[stage] += 1
                done = sum(r.frames for r in pipeline.results)
                print(f"chaos: kill {sum(kills.values())} ({stage}) at {last - started:.1f} s, {done} frames counted",
                      file=sys.stderr, flush=True)

            results = pipeline.run(on_frames=chaos)
            seconds = time.perf_counter() - started
        finally:
            pipeline.close()
    inline = {name: job.run(concatenate(*playlist)).count for name, playlist in feeds.items()}
    feeds_out = {r.feed: {"actors": round(r.count, 6), "inline": round(inline[r.feed], 6),
                          "error": None if r.error is None else str(r.error)} for r in results}
    exact = all(f["error"] is None and abs(f["actors"] - f["inline"]) < 1e-6 for f in feeds_out.values())
    return {"feeds": len(feeds), "kills": sum(kills.values()), "kills_by_stage": kills, "seconds": round(seconds, 1),
            "every_count_exact": exact, "counts": feeds_out}
