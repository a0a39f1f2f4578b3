"""Frames per second of pose extraction (real MediaPipe) on each shared clip, in one process.

    .venv/bin/python bench/pose_extraction.py [DATA_DIR]

Prints figures; asserts nothing. The first frame (model set-up) is timed apart.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cadence.pipelines import HumanBodyPoseExtractor, read_video

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    clips = sorted(p for p in (data / "videos").glob("*") if p.suffix in {".mp4", ".avi"})
    if not clips:
        sys.exit(f"no clips in {data / 'videos'}")
    total_frames, total_seconds = 0, 0.0
    for clip in clips:
        extractor = HumanBodyPoseExtractor()
        frames = list(read_video(clip))
        started = time.perf_counter()
        extractor.applied(frames[0])
        setup = time.perf_counter() - started
        started = time.perf_counter()
        people = sum(len(extractor.applied(f)) for f in frames[1:])
        seconds = time.perf_counter() - started
        extractor.close()
        h, w = frames[0].image.shape[:2]
        n = len(frames) - 1
        total_frames, total_seconds = total_frames + n, total_seconds + seconds
        print(f"{clip.name:32s} {w}x{h}  {n:4d} frames  {n / seconds:6.1f} frames/s  "
              f"{people / n:.2f} people/frame  (first frame {setup:.2f} s)")
    print(f"all clips: {total_frames / total_seconds:.1f} frames/s on one core")


if __name__ == "__main__":
    main()
