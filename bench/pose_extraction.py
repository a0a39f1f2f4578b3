"""Frames per second of pose extraction (real MediaPipe) on each shared clip, in one process, for
the detector on every frame and for cadence's tracking extractor, in the same run, with people
found per frame and how often tracking finds as many people as the detector on every frame does.

    .venv/bin/python bench/pose_extraction.py [DATA_DIR] [--every 30 15 60]

Modes:
- ``image4``: the detector on every frame (``HumanBodyPoseExtractor``: PoseLandmarker in IMAGE
  mode, up to 4 people); cadence's extractor before issue 17, and ``--detect-every 1`` now.
- ``video1``: VIDEO mode, one person: the landmark model tracks its own region and the detector
  runs only when the person is lost. It finds one person at most: a bound, not a candidate.
- ``tracking-K``: ``TrackingPoseExtractor(detection_seconds=K / 30)``, cadence's default (K = 30, a
  second of these 30 fps clips): the full detection on the first frame of every K, VIDEO-mode
  tracking of the people found in between.

Frames are decoded before the clock starts (the conversion to RGB is timed, as cadence does it),
and every landmarker is made before it starts. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Image4:
    """The detector on every frame."""

    def __init__(self):
        from cadence.pipelines import HumanBodyPoseExtractor

        self.extractor = HumanBodyPoseExtractor()
        self.extractor.applied(np.zeros((64, 64, 3), np.uint8))  # set-up outside the clock

    def __call__(self, images: list, fps: float) -> list[int]:
        return [len(self.extractor.applied(image)) for image in images]


class Video1:
    def __init__(self):
        from cadence.pipelines.pose import new_landmarker

        self.tracker = new_landmarker("VIDEO", 1, 0.5)
        self.clock = 0  # VIDEO-mode timestamps must increase across clips too

    def __call__(self, images: list, fps: float) -> list[int]:
        from cadence.pipelines.pose import mediapipe_image, rgb_image

        people = []
        for image in images:
            self.clock += int(1000 / fps)
            people.append(len(self.tracker.detect_for_video(mediapipe_image(rgb_image(image, "video1")),
                                                            self.clock).pose_landmarks))
        return people


class Tracking:
    def __init__(self, every: int):
        from cadence.pipelines import TrackingPoseExtractor

        self.extractor = TrackingPoseExtractor(detection_seconds=every / 30)
        self.extractor.prepare(people=(1, 2))  # set-up outside the clock (the trackers it keeps)

    def __call__(self, images: list, fps: float) -> list[int]:  # (bare images are taken 1/30 s apart)
        return [len(people) for people in self.extractor.applied(images)]


def main() -> None:
    from cadence.pipelines import read_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--every", type=int, nargs="+", default=[30],
                        help="the tracking modes' detection intervals K (default %(default)s)")
    args = parser.parse_args()
    clips = sorted(p for p in (Path(args.data) / "videos").glob("*") if p.suffix in {".mp4", ".avi"})
    if not clips:
        raise SystemExit(f"no clips in {Path(args.data) / 'videos'}")
    modes = {"image4": Image4(), "video1": Video1()} | {f"tracking-{k}": Tracking(k) for k in args.every}
    totals = {name: [0, 0.0, 0, 0] for name in modes}  # frames, seconds, people, frames with image4's people
    for clip in clips:
        stream = read_video(clip)
        images = [frame.image for frame in stream]
        h, w = images[0].shape[:2]
        shown, found = [], {}
        for name, run in modes.items():
            started = time.perf_counter()
            found[name] = np.array(run(images, stream.fps))
            seconds = time.perf_counter() - started
            kept = int((found[name] >= found["image4"]).sum())
            totals[name] = [a + b for a, b in zip(totals[name], (len(images), seconds, found[name].sum(), kept))]
            shown.append(f"{name} {len(images) / seconds:5.1f} f/s {found[name].mean():.2f} people")
        print(f"{clip.name:32s} {w}x{h} {len(images):4d} frames  " + "  ".join(shown), flush=True)
        if found["image4"].max() > 1:
            several = found["image4"] >= 2
            print("  frames where image4 finds 2+ people: " + ", ".join(
                f"{name} finds them on {np.mean(people[several] >= found['image4'][several]):.1%}"
                for name, people in found.items() if name != "image4"))
    base = totals["image4"][0] / totals["image4"][1]
    for name, (frames, seconds, people, kept) in totals.items():
        print(f"all clips, {name}: {frames / seconds:.1f} frames/s on one core ({frames / seconds / base:.2f}x "
              f"image4), {people / frames:.2f} people per frame, as many as image4 on {kept / frames:.1%} of frames")


if __name__ == "__main__":
    main()
