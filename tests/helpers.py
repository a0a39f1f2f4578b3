"""Helpers the tests share: the real data in ../shared/data (a test skips when it is absent), clips
and corpora made from it, and running the ``cadence`` command as a user does."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CADENCE_DATA", ROOT.parent / "shared" / "data"))
VIDEOS = DATA / "videos"
REPCOUNT = DATA / "repcount-dev"
FSDD = DATA / "fsdd" / "recordings"


def video(name: str) -> Path:
    path = VIDEOS / name
    if not path.exists():
        pytest.skip(f"shared clip {path} is absent")
    return path


@functools.cache
def selected_poses(name: str, strategy: str = "maximum_bounding_box_area") -> tuple:
    """The selected pose per frame of a shared clip, from real MediaPipe, extracted once per run."""
    from cadence import HumanBodyPoseExtractor, PoseSelector, read_video

    extractor, selector = HumanBodyPoseExtractor(), PoseSelector(strategy)
    try:
        return tuple(selector.applied(extractor.applied(f)) for f in read_video(video(name)))
    finally:
        extractor.close()


def write_video_without_people(path: Path, frames: int = 20) -> Path:
    """A real video of trees: the left edge of the jumping-jack clip, where nobody stands."""
    from cadence import read_video

    background = next(iter(read_video(video("jumpingjack_correct_001.mp4")))).image[:, :240]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (240, 720))
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(background, i, axis=0)))
    writer.release()
    return path


def corpus(folder: Path, names: list[str], extra: str = "") -> Path:
    """A manifest over shared FSDD files (by relative path from a folder beside them)."""
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / name
        if not target.exists():
            target.symlink_to(FSDD / name)
    manifest = folder / "manifest.csv"
    lines = ["path,label,split"] + [f"{n},{n.split('_')[0]},{'test' if int(n.split('_')[2][:-4]) < 5 else 'train'}"
                                    for n in names]
    manifest.write_text("\n".join(lines) + "\n" + extra)
    return manifest


def names(count: int, start: int = 0) -> list[str]:
    """FSDD file names: ``count // 10`` recordings of each digit, spread over the six speakers."""
    speakers = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    return [f"{d}_{speakers[(d + i) % 6]}_{i}.wav" for i in range(start, start + count // 10) for d in range(10)]


CADENCE = [sys.executable, "-m", "cadence"]  # the command line, as the installed `cadence` script runs it


def cadence(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CADENCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
