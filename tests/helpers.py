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
    """The selected pose per frame of a shared clip, from real MediaPipe with the job's default
    extractor (people tracked between detections), extracted once per run."""
    from cadence import PoseSelector, RepetitionCounting, read_video

    extractor, selector = RepetitionCounting().extractor(), PoseSelector(strategy)
    try:
        return tuple(selector.applied(people) for people in extractor.applied(read_video(video(name))))
    finally:
        extractor.close()


def write_video_cut_short(path: Path) -> Path:
    """A real squat clip re-encoded as MJPG and cut at 60 % of its bytes: it opens, then decoding
    stops part way while its header still promises every frame."""
    import cv2

    from cadence import read_video

    whole = path.with_name(f"whole-{path.name}")
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for frame in read_video(video("squat_correct_007.mp4")):
        writer.write(cv2.resize(frame.image, (640, 360)))
    writer.release()
    path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    return path


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


def squatting_person(phase: np.ndarray, noise: float = 0.01, seed: int = 7) -> list:
    """A stick figure whose hips and knees go down and up with ``cos(phase)``: one rep per 2*pi."""
    from cadence import Pose

    rng = np.random.default_rng(seed)
    base = np.zeros((33, 4), np.float32)
    base[:, 0] = np.linspace(0.4, 0.6, 33)
    base[:, 1] = np.linspace(0.1, 0.9, 33)  # head at the top, feet at the bottom
    base[:, 3] = 1.0
    poses = []
    for p in phase:
        k = base.copy()
        depth = 0.5 * (1 - np.cos(p))  # 0 standing, 1 at the bottom
        k[:25, 1] += 0.25 * depth  # everything above the knees goes down
        k[23:27, 0] += np.array([-1, 1, -1, 1]) * 0.08 * depth  # knees and hips spread
        k[:, :2] += rng.normal(0, noise, (33, 2))
        poses.append(Pose(k))
    return poses


CADENCE = [sys.executable, "-m", "cadence"]  # the command line, as the installed `cadence` script runs it


def cadence(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CADENCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
