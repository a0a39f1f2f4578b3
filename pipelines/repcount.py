"""The RepCount pose-sequence format, and the benchmark metrics used with it.

A sequence is a float array (T, 104): 33 BlazePose landmarks as x, y, z (landmark-major), each
axis min-max normalised within the frame, then five joint angles; a row of zeros means no person.
One row per frame of the video, at its own frame rate: ``labels.csv`` may give it (an ``fps``
column); without one, 30 is assumed (RepCount's videos are mostly 30 fps, and the dev set's files
carry no rate).
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .pose import JOINT_NAMES, Pose
from .video import DEFAULT_FPS

LANDMARK_COLUMNS = 3 * len(JOINT_NAMES)


def poses_from_array(rows: np.ndarray, source: str = "array") -> list[Pose | None]:
    """One :class:`Pose` (confidence 1) per row, None for the all-zero rows of frames without a person."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] < LANDMARK_COLUMNS:
        raise InputError(source, f"expected a (frames, >= {LANDMARK_COLUMNS}) pose array, got shape {rows.shape}")
    xyz = rows[:, :LANDMARK_COLUMNS].reshape(len(rows), len(JOINT_NAMES), 3)
    keypoints = np.concatenate([xyz, np.ones((*xyz.shape[:2], 1), np.float32)], axis=2)
    present = np.any(rows[:, :LANDMARK_COLUMNS] != 0, axis=1)
    return [Pose(k) if p else None for k, p in zip(keypoints, present)]


def read_poses(path: str | os.PathLike) -> list[Pose | None]:
    """Read one ``NAME.npy`` pose sequence."""
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot be read as a .npy pose array: {e}") from e
    return poses_from_array(rows, str(path))


@dataclass(frozen=True)
class LabelledSequence:
    name: str
    path: Path
    count: float
    cycles: tuple[tuple[int, int], ...] = ()  # each labelled repetition's (start, end) frame, when given
    fps: float = DEFAULT_FPS  # the video's frame rate: one row per frame


def read_labels(poses_dir: str | os.PathLike, labels_csv: str | os.PathLike) -> list[LabelledSequence]:
    """The sequences named in ``labels.csv`` (columns ``name,count``) that exist in ``poses_dir``."""
    poses_dir, labels_csv = Path(poses_dir), Path(labels_csv)
    if not poses_dir.is_dir():
        raise InputError(poses_dir, "is not a folder of NAME.npy pose sequences")
    try:
        with open(labels_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(labels_csv, f"cannot be read: {e}") from e
    if not rows or not {"name", "count"} <= set(rows[0]):
        raise InputError(labels_csv, "needs a header with at least the columns name,count")
    found = []
    for row in rows:
        path = poses_dir / f"{row['name']}.npy"
        if not path.exists():
            raise InputError(path, f"is listed in {labels_csv} but missing")
        bounds = [int(x) for x in (row.get("cycle_boundaries") or "").split()]
        fps = float(row.get("fps") or DEFAULT_FPS)
        found.append(LabelledSequence(row["name"], path, float(row["count"]), tuple(zip(bounds[::2], bounds[1::2])),
                                      fps))
    return found


def mean_absolute_error(predictions: Sequence[float], truths: Sequence[float]) -> float:
    """RepCount's MAE: the mean of |pred - gt| / max(gt, 1)."""
    p, g = np.asarray(predictions, float), np.asarray(truths, float)
    return float(np.mean(np.abs(p - g) / np.maximum(g, 1)))


def off_by_one_accuracy(predictions: Sequence[float], truths: Sequence[float]) -> float:
    """RepCount's OBO: the share of sequences with |round(pred) - gt| <= 1."""
    p, g = np.asarray(predictions, float), np.asarray(truths, float)
    return float(np.mean(np.abs(np.round(p) - g) <= 1))


def boundary_error(cycles: Sequence[tuple[int, int]], repetition_ends: Sequence[int], truth: float) -> float | None:
    """How well the counted repetitions line up with the labelled ones: at the end of each labelled
    cycle (give or take half of it), the repetitions counted by then against its number, averaged
    and divided by max(truth, 1) like MAE.  A right total made of misplaced repetitions scores badly."""
    if not cycles:
        return None
    ends = np.sort(np.asarray(repetition_ends, float))
    errors = [abs(np.searchsorted(ends, end + (end - start) / 2, side="right") - i)
              for i, (start, end) in enumerate(cycles, start=1)]
    return float(np.mean(errors)) / max(truth, 1)


def iterate_labelled(sequences: Sequence[LabelledSequence]) -> Iterator[tuple[LabelledSequence, list[Pose | None]]]:
    for seq in sequences:
        yield seq, read_poses(seq.path)


@dataclass
class Score:
    """A counter's results on a labelled set, streamed as the counting job streams them."""

    window_seconds: float
    stride_seconds: float
    rate: float | None
    videos: list[dict]
    poses_per_second: float

    @property
    def mae(self) -> float:
        return mean_absolute_error([v["pred"] for v in self.videos], [v["gt"] for v in self.videos])

    @property
    def obo(self) -> float:
        return off_by_one_accuracy([v["pred"] for v in self.videos], [v["gt"] for v in self.videos])

    @property
    def boundary_mae(self) -> float | None:
        """The mean :func:`boundary_error` of the videos labelled with cycles."""
        errors = [v["boundary_error"] for v in self.videos if v.get("boundary_error") is not None]
        return float(np.mean(errors)) if errors else None

    @property
    def decreases(self) -> int:
        """Videos whose count went down at some point (it never should)."""
        return sum(v["decreased"] for v in self.videos)

    def folds(self, k: int) -> list[Score]:
        """The videos in ``k`` folds (sorted by name, every k-th in a fold), each scored on its own."""
        videos = sorted(self.videos, key=lambda v: v["name"])
        return [Score(self.window_seconds, self.stride_seconds, self.rate, videos[i::k], self.poses_per_second)
                for i in range(k)]

    def to_dict(self) -> dict:
        boundary = self.boundary_mae
        return {"mae": round(self.mae, 4), "obo": round(self.obo, 4),
                "boundary_mae": None if boundary is None else round(boundary, 4), "decreases": self.decreases,
                "window_seconds": self.window_seconds, "stride_seconds": self.stride_seconds,
                "rate": "all" if self.rate is None else self.rate,
                "poses_per_second": round(self.poses_per_second), "videos": self.videos}


def analysed(poses: Sequence[Pose | None], fps: float, rate: float | None) -> tuple[list[Pose | None], list[int]]:
    """The poses the counting job would pose from a video of ``fps`` at ``rate`` (one frame in
    :func:`~.temporal.frame_step`, as its readers pick them), with their frame numbers."""
    from .temporal import frame_step

    kept = list(range(0, len(poses), frame_step(fps, rate)))
    return [poses[i] for i in kept], kept


def score(sequences: Sequence[LabelledSequence], job=None, progress=None) -> Score:
    """Count each sequence as ``job`` (a :class:`~.repetitions.RepetitionCounting`, its defaults
    if None) counts a stream: posed at its rate, in its windows, with its counter; compare with
    the truth."""
    import time

    from .repetitions import RepetitionCounting

    job = (job or RepetitionCounting()).check_params()
    videos, poses_counted, seconds = [], 0, 0.0
    for seq, poses in iterate_labelled(sequences):
        poses, frames = analysed(poses, seq.fps, job.rate)
        counting = job.feed_counting(fps=seq.fps)
        started = time.perf_counter()
        counts = list(counting.counter.applied(counting.window.applied(poses)))
        seconds += time.perf_counter() - started
        poses_counted += len(poses)
        ends = [frames[min(r.end, len(frames) - 1)] for c in counts for r in getattr(c, "repetitions", ())]
        boundary = boundary_error(seq.cycles, ends, seq.count)
        videos.append({"name": seq.name, "gt": seq.count, "pred": round(float(counts[-1]) if counts else 0.0, 3),
                       "boundary_error": None if boundary is None else round(boundary, 4),
                       "decreased": any(b < a for a, b in itertools.pairwise(counts))})
        if progress:
            progress(seq)
    return Score(job.window_seconds, job.window_stride, job.rate, videos,
                 poses_counted / seconds if seconds else 0.0)
