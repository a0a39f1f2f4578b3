"""Frames per second of pose extraction (real MediaPipe) on each shared clip, in one process, for
today's mode and the candidate modes of issue 17, in the same run, with people found per frame.

    .venv/bin/python bench/pose_extraction.py [DATA_DIR] [--every 10]

Modes:
- ``image4``: what cadence runs (``HumanBodyPoseExtractor``: PoseLandmarker in IMAGE mode, up to 4
  people; the person detector on every frame).
- ``video1``: VIDEO mode, one person: the landmark model tracks its own region between frames and
  the detector runs only when the person is lost (MediaPipe's single-person graph).
- ``detect-every-K``: IMAGE mode with up to 4 people on every K-th frame, and between them VIDEO
  mode tracking as many people as that detection found (one landmarker per count, timestamps
  increasing per landmarker).

Frames are decoded before the clock starts (the conversion to RGB is timed, as cadence does it),
and every landmarker is made before it starts. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def landmarker(video: bool, people: int):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from cadence.pipelines.pose import _pose_landmarker_bundle

    mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
    options = vision.PoseLandmarkerOptions(base_options=BaseOptions(model_asset_buffer=_pose_landmarker_bundle()),
                                           running_mode=mode, num_poses=people, min_pose_detection_confidence=0.5,
                                           min_pose_presence_confidence=0.5)
    return vision.PoseLandmarker.create_from_options(options)


class Image4:
    """What cadence runs today."""

    def __init__(self, every: int):
        from cadence.pipelines import HumanBodyPoseExtractor

        self.extractor = HumanBodyPoseExtractor()
        self.extractor._get_landmarker()  # set-up outside the clock

    def __call__(self, images: list, fps: float) -> list[int]:
        return [len(self.extractor.applied(image)) for image in images]


class Video1:
    def __init__(self, every: int):
        self.tracker = landmarker(True, 1)
        self.clock = 0  # VIDEO-mode timestamps must increase across clips too

    def __call__(self, images: list, fps: float) -> list[int]:
        import mediapipe as mp

        people = []
        for rgb in _rgb(images):
            self.clock += int(1000 / fps)
            people.append(len(self.tracker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                                            self.clock).pose_landmarks))
        return people


class DetectEvery:
    def __init__(self, every: int):
        self.every, self.full = every, landmarker(False, 4)
        self.trackers = {n: landmarker(True, n) for n in range(1, 5)}
        self.clock = 0

    def __call__(self, images: list, fps: float) -> list[int]:
        import mediapipe as mp

        found, people = 0, []
        for i, rgb in enumerate(_rgb(images)):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
            self.clock += int(1000 / fps)
            if i % self.every == 0:
                found = min(4, len(self.full.detect(image).pose_landmarks))
                people.append(found)
            elif found:
                people.append(len(self.trackers[found].detect_for_video(image, self.clock).pose_landmarks))
            else:
                people.append(0)
        return people


def _rgb(images: list):
    for image in images:
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def main() -> None:
    from cadence.pipelines import read_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--every", type=int, default=10, help="detect-every-K's K (default %(default)s)")
    args = parser.parse_args()
    clips = sorted(p for p in (Path(args.data) / "videos").glob("*") if p.suffix in {".mp4", ".avi"})
    if not clips:
        raise SystemExit(f"no clips in {Path(args.data) / 'videos'}")
    modes = {"image4": Image4(args.every), "video1": Video1(args.every),
             f"detect-every-{args.every}": DetectEvery(args.every)}
    totals = {name: [0, 0.0, 0] for name in modes}  # frames, seconds, people
    for clip in clips:
        stream = read_video(clip)
        images = [frame.image for frame in stream]
        h, w = images[0].shape[:2]
        shown = []
        for name, run in modes.items():
            started = time.perf_counter()
            people = run(images, stream.fps)
            seconds = time.perf_counter() - started
            totals[name][0] += len(images)
            totals[name][1] += seconds
            totals[name][2] += sum(people)
            shown.append(f"{name} {len(images) / seconds:5.1f} f/s {np.mean(people):.2f} people")
        print(f"{clip.name:32s} {w}x{h} {len(images):4d} frames  " + "  ".join(shown), flush=True)
    base = totals["image4"][0] / totals["image4"][1]
    for name, (frames, seconds, people) in totals.items():
        print(f"all clips, {name}: {frames / seconds:.1f} frames/s on one core ({frames / seconds / base:.2f}x "
              f"image4), {people / frames:.2f} people per frame")


if __name__ == "__main__":
    main()
