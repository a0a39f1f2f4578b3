"""The RepCount pose-sequence format, and the benchmark metrics used with it.

A sequence is a float array (T, 104): 33 BlazePose landmarks as x, y, z (landmark-major), each
axis min-max normalised within the frame, then five joint angles; a row of zeros means no person.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .pose import JOINT_NAMES, Pose

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
        found.append(LabelledSequence(row["name"], path, float(row["count"])))
    return found


def mean_absolute_error(predictions: Sequence[float], truths: Sequence[float]) -> float:
    """RepCount's MAE: the mean of |pred - gt| / max(gt, 1)."""
    p, g = np.asarray(predictions, float), np.asarray(truths, float)
    return float(np.mean(np.abs(p - g) / np.maximum(g, 1)))


def off_by_one_accuracy(predictions: Sequence[float], truths: Sequence[float]) -> float:
    """RepCount's OBO: the share of sequences with |round(pred) - gt| <= 1."""
    p, g = np.asarray(predictions, float), np.asarray(truths, float)
    return float(np.mean(np.abs(np.round(p) - g) <= 1))


def iterate_labelled(sequences: Sequence[LabelledSequence]) -> Iterator[tuple[LabelledSequence, list[Pose | None]]]:
    for seq in sequences:
        yield seq, read_poses(seq.path)
