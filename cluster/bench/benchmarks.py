"""``cadence bench pipeline``: the same real frames through the inline path and the actor pipeline.

Figures only, nothing asserted.  Each feed plays the real clips of the data folder back to back,
each feed from another clip on, until it lasts ``seconds``.  Both paths are timed from the first frame read to the last count,
with their models already loaded (actors are started, and each landmarker built, before the clock
starts); memory is the peak proportional set size (PSS: shared pages split between the processes
sharing them) of this process and every process it started, Ray's included.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
import os
import sys
import threading
import time
from pathlib import Path

from cadence.pipelines.errors import InputError
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.video import read_video

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


def fsdd_manifest(recordings: Path, path: Path,
                  is_test: Callable[[str, int], bool] = lambda speaker, index: index < 5) -> Path:
    """A manifest of FSDD's recordings at ``path``: ``path,label,split``, ``is_test(speaker, index)``
    choosing the test files (default: the standard split, recordings 0-4).  Paths are absolute (a
    manifest's paths are read relative to its own folder)."""
    rows = ["path,label,split"]
    for wav in sorted(recordings.resolve().glob("*.wav")):
        digit, speaker, index = wav.stem.split("_")
        rows.append(f"{wav},{digit},{'test' if is_test(speaker, int(index)) else 'train'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def tile_corpus(source: Path, folder: Path, hours: float = 0.0, seed: int = 0, copies: int = 0) -> tuple[Path, float]:
    """Write FSDD copies with random gain (0.5-1.5x) and a time shift (0-200 ms of quiet noise in
    front) until the corpus lasts ``hours`` (or holds ``copies`` copies); returns the manifest and
    the audio seconds."""
    import numpy as np
    import soundfile as sf

    originals = sorted(source.glob("*.wav"))
    if not originals:
        raise FileNotFoundError(f"no .wav files in {source}")
    clips = [(p, *sf.read(str(p), dtype="float32")) for p in originals]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, seconds, copy = ["path,label,split"], 0.0, 0
    while seconds < hours * 3600 or copy < copies:
        for path, samples, rate in clips:
            shift = np.zeros(int(rng.uniform(0, 0.2) * rate), np.float32) + rng.normal(0, 1e-3, 1).astype(np.float32)
            audio = np.clip(np.concatenate([shift, samples * rng.uniform(0.5, 1.5)]), -1, 1)
            name = f"{path.stem}_t{copy}.wav"
            sf.write(str(folder / name), audio, rate, subtype="PCM_16")
            digit, _, index = path.stem.split("_")
            rows.append(f"{name},{digit},{'test' if int(index) < 5 else 'train'}")
            seconds += len(audio) / rate
        copy += 1
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, seconds


def librosa_seconds(paths: list[str]) -> float | None:
    """What users usually write: librosa.load at the file's rate, then librosa.feature.mfcc."""
    import warnings

    try:
        import librosa
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short clips: "n_fft is too large" for every file
        y, rate = librosa.load(paths[0], sr=None)
        librosa.feature.mfcc(y=y, sr=rate, n_mfcc=20)  # warm-up: numba compiles on the first call
        started = time.perf_counter()
        for path in paths:
            y, rate = librosa.load(path, sr=None)
            librosa.feature.mfcc(y=y, sr=rate, n_mfcc=20)
        return time.perf_counter() - started


def bench_features(data: Path, hours: float, sample_rate: int, address: str | None, work: Path) -> dict:
    import shutil

    from cadence.pipelines.audio import AudioFeaturePrint, clip_vector

    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.audio.features import extract_corpus, read_manifest

    extractor = AudioFeaturePrint(sample_rate=sample_rate)
    manifest = work / "corpus" / "manifest.csv"
    if manifest.exists():  # a corpus tiled by an earlier run with --work
        audio_seconds = sum(_duration(r.path) for r in read_manifest(manifest))
    else:
        manifest, audio_seconds = tile_corpus(data / "fsdd" / "recordings", work / "corpus", hours)
    rows = read_manifest(manifest)
    cut = int(len(rows) * 0.9)
    lines = manifest.read_text().splitlines()
    first = work / "corpus" / "first.csv"
    first.write_text("\n".join(lines[: cut + 1]) + "\n")  # 90% now, the last 10% added later
    figures: dict = {"files": len(rows), "audio_hours": round(audio_seconds / 3600, 2), "sample_rate": sample_rate}

    sample = [r.path for r in rows[:: max(1, len(rows) // 3000)]]  # a fixed subset for the one-process figures
    sample_seconds = sum(_duration(p) for p in sample)
    clip_vector(extractor.clip_features(sample[0]))  # warm-up, as for librosa
    started = time.perf_counter()
    for path in sample:
        clip_vector(extractor.clip_features(path))
    one = time.perf_counter() - started
    figures["one_process_x_realtime"] = round(sample_seconds / one)
    rosa = librosa_seconds(sample)
    figures["librosa_mfcc_x_realtime"] = None if rosa is None else round(sample_seconds / rosa)
    if rosa:
        figures["one_process_vs_librosa"] = round(rosa / one, 2)

    store, inline_store = work / "store", work / "store-one-process"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(inline_store, ignore_errors=True)
    first_seconds = sum(_duration(r.path) for r in rows[:cut])
    alone = extract_corpus(first, inline_store, extractor, use_ray=False)  # the same job, in this process
    figures["one_process_full_run"] = alone.to_dict() | {"x_realtime": round(first_seconds / alone.seconds)}
    shutil.rmtree(inline_store, ignore_errors=True)
    with connected(address) as cluster:
        full = extract_corpus(first, store, extractor)
        figures["ray_cpus"] = cluster["cpus"]
        figures["ray_full_run"] = full.to_dict() | {"x_realtime": round(first_seconds / full.seconds)}
        figures["ray_vs_one_process"] = round(alone.seconds / full.seconds, 2)
        again = extract_corpus(manifest, store, extractor)
        figures["incremental_run"] = again.to_dict()
        figures["incremental_share_of_full"] = round(again.seconds / full.seconds, 3)
    return figures


def _duration(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate


# -- cadence bench serve --------------------------------------------------------------------------
SERVE_CLIPS = ("squat_correct_010.mp4", "pushup_incorrect_001.mp4", "jumpingjack_correct_001.mp4",
               "pullup_correct_002.mp4")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                on_sample: Callable[[dict], None] | None = None) -> dict:
    """A soak of ``cadence serve``: ``feeds`` live loopback cameras (real clips, looped, as MJPEG)
    for ``minutes``, sampled every ``every`` seconds: memory of the service's process tree (PSS),
    each feed's frames, drops, latency and state.  A feed stalls when it reads no frame between
    two samples while running."""
    import httpx

    clips = [data / "videos" / SERVE_CLIPS[k % len(SERVE_CLIPS)] for k in range(feeds)]
    cameras, port = [], _free_port()
    service = _start_process([sys.executable, "-m", "cadence.cluster.cli", "serve", "--store", str(work / "store"),
                              "--port", str(port)] + (["--address", address] if address else []))
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        for clip in clips:
            cameras.append(_start_process([sys.executable, "-m", "cadence.cluster.bench.camera_server", str(clip),
                                           "--forever"]))
        urls = [f"http://127.0.0.1:{int(c.stdout.readline())}/stream.mjpg" for c in cameras]
        _wait_healthy(http, service)
        ids, first_count = [], []
        for url, clip in zip(urls, clips):
            added = time.monotonic()
            ids.append(http.post("/feeds", json={"source": url, "name": clip.name}).json()["id"])
            first_count.append(_first_count_seconds(http, ids[-1], added))
        samples = _soak(http, service.pid, ids, minutes, every, on_sample)
        return _serve_figures(samples, first_count, [c.name for c in clips], minutes)
    finally:
        http.close()
        for process in cameras + [service]:
            process.terminate()
            process.wait()


def _wait_healthy(http, service, timeout: float = 180.0) -> None:
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
        time.sleep(0.5)
    raise RuntimeError("cadence serve did not answer /health")


def _soak(http, pid: int, ids: list[str], minutes: float, every: float,
          on_sample: Callable[[dict], None] | None) -> list[dict]:
    samples, started = [], time.monotonic()
    while time.monotonic() - started < minutes * 60:
        time.sleep(every)
        feeds = {f["id"]: f for f in http.get("/feeds").json()}
        sample = {"seconds": round(time.monotonic() - started, 1),
                  "pss_mib": round(sum(_pss_kib(p) for p in _descendants(pid)) / 1024, 1),
                  "feeds": [feeds[i] for i in ids]}
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
    return samples


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
                          "frames_per_second": round(f["frames"] / seconds, 1), "frames_dropped": f["frames_dropped"],
                          "dropped_share": round(f["frames_dropped"] / max(1, f["frames"] + f["frames_dropped"]), 3),
                          "latency_p50": f["latency_p50"], "latency_p95": f["latency_p95"],
                          "reconnections": f["reconnections"], "stalled_samples": stall}
                         for name, f, stall in zip(names, last, stalls)]}
