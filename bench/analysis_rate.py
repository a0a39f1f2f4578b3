"""End to end frames per second of the counting job at its default analysis rate, against bare
MediaPipe posing every frame, on 720p clips with one person and with two, in one run.

    .venv/bin/python bench/analysis_rate.py [DATA_DIR] [--frames 600] [--repeats 2]

Each input is real clips played back to back until it holds ``--frames`` frames: one person (the
720p squat, pull-up and plank clips) and two people (the jumping-jack clip). Modes, each timed
from the first frame read to the last count, decoding included:

- ``mediapipe``: bare MediaPipe, as a user would write it without cadence: OpenCV reads every
  frame, and a ``PoseLandmarker`` in IMAGE mode asked for up to 4 poses runs on each (made before
  the clock starts);
- ``cadence-all``: ``RepetitionCounting(rate=None).run(...)``, what ``cadence count --runner inline
  --rate all`` runs: every frame posed (people tracked between detections), selected, counted;
- ``cadence``: ``RepetitionCounting().run(...)``, ``cadence count --runner inline`` with the default
  options: at most 15 frames posed a second (every other frame of these 30 fps clips, the others
  never made images).

cadence's modes make their MediaPipe graphs inside the clock (as a user's run does). Prints frames
of the source per second and each mode's ratio to ``mediapipe``; medians of ``--repeats``; asserts
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INPUTS = {"one person": ["squat_correct_001.avi", "squat_correct_007.mp4", "squat_correct_010.mp4",
                         "squat_correct_013.mp4", "squat_correct_016.mp4", "pullup_correct_002.mp4",
                         "plank_correct_005.mp4"],
          "two people": ["jumpingjack_correct_001.mp4"]}


def playlist(folder: Path, names: list[str], frames: int) -> list[str]:
    from cadence import read_video

    paths, total = [], 0
    while total < frames:
        for name in names:
            paths.append(str(folder / name))
            total += read_video(folder / name).frame_count
    return paths


def bare_mediapipe(paths: list[str], landmarker) -> int:
    import cv2
    import mediapipe as mp

    frames = 0
    for path in paths:
        capture = cv2.VideoCapture(path)
        while True:
            ok, image = capture.read()
            if not ok:
                break
            rgb = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            landmarker.detect(rgb)
            frames += 1
        capture.release()
    return frames


def cadence_job(paths: list[str], rate: float | None) -> int:
    from cadence import RepetitionCounting, concatenate

    return RepetitionCounting(rate=rate).run(concatenate(*paths)).frames


def timed(run) -> tuple[int, float]:
    started = time.perf_counter()
    frames = run()
    return frames, time.perf_counter() - started


def main() -> None:
    from cadence.pipelines.pose import new_landmarker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=600, help="frames per input (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode; medians (default %(default)s)")
    args = parser.parse_args()
    folder = Path(args.data) / "videos"
    landmarker = new_landmarker("IMAGE", 4, 0.2)
    for label, names in INPUTS.items():
        paths = playlist(folder, names, args.frames)
        modes = {"mediapipe": lambda: bare_mediapipe(paths, landmarker),
                 "cadence-all": lambda: cadence_job(paths, None), "cadence": lambda: cadence_job(paths, 15.0)}
        speeds: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.repeats):  # modes interleaved, so a busy moment weighs on all of them
            for name, run in modes.items():
                frames, seconds = timed(run)
                speeds[name].append(frames / seconds)
        base = statistics.median(speeds["mediapipe"])
        for name, runs in speeds.items():
            print(f"{label}: {name:12s} {statistics.median(runs):6.1f} frames/s ({statistics.median(runs) / base:.2f}x "
                  f"mediapipe; runs {', '.join(f'{r:.1f}' for r in runs)})", flush=True)
    landmarker.close()


if __name__ == "__main__":
    main()
