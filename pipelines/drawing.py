"""Drawing a pose and a running count onto frames, and writing annotated video."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .pose import JOINT_INDEX, SKELETON, Pose
from .video import Frame


def draw_pose(image: np.ndarray, pose: Pose, threshold: float = 0.2, color: tuple = (0, 220, 255)) -> None:
    """Draw the confident joints and bones of ``pose`` onto a BGR image, in place."""
    h, w = image.shape[:2]
    points = {i: (int(k[0] * w), int(k[1] * h)) for i, k in enumerate(pose.keypoints) if k[3] >= threshold}
    thickness = max(2, w // 400)
    for a, b in SKELETON:
        ia, ib = JOINT_INDEX[a], JOINT_INDEX[b]
        if ia in points and ib in points:
            cv2.line(image, points[ia], points[ib], color, thickness, cv2.LINE_AA)
    for p in points.values():
        cv2.circle(image, p, thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)


def draw_count(image: np.ndarray, count: float) -> None:
    """Draw the running count in the top-left corner, in place (whole repetitions as whole numbers)."""
    scale = max(0.8, image.shape[1] / 800)
    text = f"reps {count:.0f}" if float(count).is_integer() else f"reps {count:.1f}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(image, (10, 10), (30 + tw, 30 + th + base), (0, 0, 0), -1)
    cv2.putText(image, text, (20, 20 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)


PERSON_COLORS = ((0, 220, 255), (255, 160, 0), (120, 255, 120), (255, 90, 200))


def preview_jpeg(image: np.ndarray, people: Sequence[Pose], width: int = 640, quality: int = 80) -> bytes:
    """A JPEG of a BGR frame, at most ``width`` pixels wide, with everyone's skeleton drawn
    (a colour per person, in the order given)."""
    h, w = image.shape[:2]
    scale = min(1.0, width / w)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 \
        else image.copy()
    for k, pose in enumerate(people):
        draw_pose(small, pose, color=PERSON_COLORS[k % len(PERSON_COLORS)])
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("preview_jpeg: OpenCV could not encode the frame as JPEG")
    return data.tobytes()


class AnnotatedVideoWriter:
    """Writes frames to an MP4 file, opened on the first frame (its size sets the video's)."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise InputError(self.path, "cannot be written as an MP4 video", "check the folder exists and is writable")
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_annotated(path: str | os.PathLike, frames: Iterable[Frame], poses: Mapping[int, Pose | None],
                    repetition_ends: Sequence[int], fps: float) -> None:
    """Write ``frames`` with the pose followed on each (``poses`` by frame index: a frame not posed
    shows the last pose before it) and the count of repetitions ended by then: the count steps up at
    the frame where each repetition's motion ended."""
    ends = sorted(repetition_ends)
    pose = None
    with AnnotatedVideoWriter(path, fps) as writer:
        for frame in frames:
            pose = poses.get(frame.index, pose)
            image = frame.image.copy()
            if pose is not None:
                draw_pose(image, pose)
            draw_count(image, bisect.bisect_right(ends, frame.index))
            writer.write(image)
