"""``cadence bench startup``: how long short jobs take end to end, as a user runs them, with the
default runner (Ray only when the work needs it) and with Ray forced, timed in one run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CADENCE = [sys.executable, "-m", "cadence.cluster.cli"]
SHORT_CLIP = "squat_correct_016.mp4"  # about a second of video: the work is nothing, start-up is all


def _timed(command: list[str], cwd: Path) -> tuple[float, dict]:
    """Wall-clock seconds of one command, and its last JSON line."""
    started = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited {run.returncode}: {run.stderr[-2000:]}")
    return seconds, json.loads(run.stdout.splitlines()[-1])


def _median_of(repeats: int, command: list[str], cwd: Path) -> dict:
    times, last = [], {}
    for _ in range(repeats):
        seconds, last = _timed(command, cwd)
        times.append(seconds)
    return {"seconds_median": round(statistics.median(times), 2), "seconds": [round(t, 2) for t in times],
            "runner": last.get("runner", "ray" if last.get("node") else "inline")}


def _serve_answers(work: Path) -> float:
    """Seconds from starting ``cadence serve --port 0`` to its first answer on /health."""
    import httpx

    from cadence.cluster.bench.serve import listening_port, wait_healthy

    started = time.perf_counter()
    service = subprocess.Popen([*CADENCE, "serve", "--port", "0", "--store", str(work / "serve")],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listening_port(service)}", timeout=5) as http:
            wait_healthy(http, service, every=0.05)
        return round(time.perf_counter() - started, 2)
    finally:
        service.terminate()
        service.wait(timeout=60)


def bench_startup(data: Path, work: Path, repeats: int = 3) -> dict:
    """``cadence count`` on one short clip and ``cadence features`` on 12 short files, each with
    the default runner and with ``--runner ray``, ``repeats`` times (the median is reported), and
    the seconds ``cadence serve`` takes to answer."""
    from cadence.cluster.bench.features import fsdd_manifest

    data = data.resolve()  # the commands run in the work folder
    clip = data / "videos" / SHORT_CLIP
    full = fsdd_manifest(data / "fsdd" / "recordings", work / "all.csv").read_text().splitlines()
    manifest = work / "manifest.csv"
    manifest.write_text("\n".join(full[:13]) + "\n")  # the header and 12 files
    figures: dict = {"repeats": repeats}
    for runner in ("default", "ray"):
        forced = [] if runner == "default" else ["--runner", "ray"]
        figures[f"count_one_clip_{runner}"] = _median_of(repeats, [*CADENCE, "count", str(clip), "--json", *forced], work)
        features = []
        for k in range(repeats):  # a new store each time: every run extracts all 12 files
            store = work / f"store-{runner}-{k}"
            features.append(_timed([*CADENCE, "features", str(manifest), "--store", str(store), "--json", *forced], work))
        figures[f"features_12_files_{runner}"] = {
            "seconds_median": round(statistics.median(t for t, _ in features), 2),
            "seconds": [round(t, 2) for t, _ in features], "runner": features[-1][1]["runner"]}
    figures["serve_answers_seconds"] = _serve_answers(work)
    return figures
