"""A body's shape, as the counter and the period predictor compare poses: joint positions relative
to the body's box and the limbs' angles, so who the person is and where they stand do not matter."""

from __future__ import annotations

import numpy as np

from .pose import JOINT_INDEX, Pose


def body_shape(pose: Pose | None) -> np.ndarray | None:
    """A body's shape, whoever and wherever the person is; None without a person.

    Joint (x, y) relative to the body's bounding box, in units of its larger side, followed by the
    eight limb angles of :data:`ANGLES` (radians, weighed by :data:`ANGLE_WEIGHT`).  One scale for
    both axes keeps a lying body (plank, push-up) from having its small height, and with it the
    landmark jitter, blown up; on RepCount sequences, already min-max normalised per axis, both
    sides are 1.  Positions carry the person's proportions and stance as well as the motion, so
    another person (or the same one standing wider) looks like a move; a knee bends the same for
    everyone, and an arm raised in front moves the wrist little within the box but turns the
    shoulder a lot.  Joints a ``JointsSelector`` left out, and angles at them, stay at 0.
    """
    if pose is None:
        return None
    xy = pose.keypoints[:, :2].astype(np.float64)
    present = ~np.isnan(xy[:, 0])  # joints a JointsSelector left out are NaN: they stay at 0, motionless
    low = xy[present].min(axis=0)
    extent = float((xy[present].max(axis=0) - low).max())
    shape = (xy - low) / (extent if extent > 1e-6 else 1.0)
    shape[~present] = 0.0
    return np.concatenate([shape.ravel(), ANGLE_WEIGHT * joint_angles(xy, present)])


ANGLES = tuple((JOINT_INDEX[a], JOINT_INDEX[b], JOINT_INDEX[c]) for a, b, c in (
    (f"{side}_{end}", f"{side}_{joint}", f"{side}_{other}") for side in ("left", "right")
    for end, joint, other in (("shoulder", "elbow", "wrist"), ("elbow", "shoulder", "hip"),
                              ("shoulder", "hip", "knee"), ("hip", "knee", "ankle"))))
"""The angles the counter sees, as (end, joint, end) joint indexes: each side's elbow, shoulder, hip and knee."""
_ENDS, _JOINTS, _OTHERS = (np.array(column) for column in zip(*ANGLES))
POSITIONS = 2 * len(JOINT_INDEX)  # a shape's joint coordinates, before its angles
ANGLE_WEIGHT = 0.6  # a limb turning one radian weighs as a joint moving 0.6 of the body's size (3-fold on RepCount dev)


def joint_angles(xy: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The angle in radians (0 to pi) at the middle joint of each of :data:`ANGLES`; 0 where a joint
    is missing or two coincide."""
    u, v = xy[_ENDS] - xy[_JOINTS], xy[_OTHERS] - xy[_JOINTS]
    lengths = np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))
    known = present[_ENDS] & present[_JOINTS] & present[_OTHERS] & (lengths > 1e-12)
    cosine = (u * v).sum(axis=1) / np.where(known, lengths, 1.0)
    return np.where(known, np.arccos(np.clip(cosine, -1.0, 1.0)), 0.0)


def unseen_between(last_index: int, last_shot: int, index: int, shot: int, gap: int) -> bool:
    """Whether what the body did between the pose seen last and this one is unknown: more than
    ``gap`` frames without a person, or a cut (a later shot; an earlier one is a source opened again,
    a file resumed or a camera reconnected, which counts its shots from 0 again)."""
    return index - last_index > gap or shot > last_shot


def with_angles(shape: np.ndarray) -> np.ndarray:
    """A body shape from a snapshot of a cadence before limb angles (joint positions only), with its
    angles added: they follow from the relative positions as from the pose, an angle ignoring where
    the body is and its size (joints left out were kept at 0)."""
    if len(shape) != POSITIONS:
        return shape
    xy = shape.reshape(-1, 2)
    return np.concatenate([shape, ANGLE_WEIGHT * joint_angles(xy, np.any(xy != 0, axis=1))])
