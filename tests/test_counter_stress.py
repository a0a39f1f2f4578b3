"""The counter on dev sequences changed the ways real videos differ from them: non-repetitive motion
put in, pose jitter, another tempo, frames without a person.  Each says how far the count may move
(measured as the rise of RepCount's MAE over the whole dev set, streamed 90/90)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cadence import HumanBodyActionCounter, Pose, SlidingWindow
from cadence.pipelines.repcount import mean_absolute_error, read_labels, read_poses

from .helpers import REPCOUNT


@functools.cache
def dev_set() -> tuple:
    if not (REPCOUNT / "labels.csv").exists():
        pytest.skip(f"{REPCOUNT} is absent")
    return tuple((read_poses(s.path), s.count) for s in read_labels(REPCOUNT / "poses", REPCOUNT / "labels.csv"))


def count(poses) -> float:
    counts = list(HumanBodyActionCounter().applied(SlidingWindow(length=90, stride=90).applied(poses)))
    return float(counts[-1]) if counts else 0.0


def mae_after(change, draws: int = 1) -> tuple[float, float]:
    """The dev set's MAE as it is, and with every sequence changed by ``change(poses, rng)`` (the
    mean over ``draws`` random draws)."""
    truths = [truth for _, truth in dev_set()]
    plain = mean_absolute_error([count(list(poses)) for poses, _ in dev_set()], truths)
    changed = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        changed.append(mean_absolute_error([count(change(list(poses), rng)) for poses, _ in dev_set()], truths))
    return plain, float(np.mean(changed))


def shuffled_piece(poses, rng, length=150):
    """Five seconds of the video's own poses in random order put in at a random place: motion of
    the right size that repeats nothing."""
    start = int(rng.integers(0, max(1, len(poses) - length)))
    piece = [poses[i] for i in rng.permutation(np.arange(start, min(len(poses), start + length)))]
    at = int(rng.integers(0, len(poses)))
    return poses[:at] + piece + poses[at:]


def jittered(poses, rng, sigma=0.01):
    """Every joint moved at random by about 1 % of the body's size, frame by frame."""
    return [None if p is None else Pose(np.concatenate(
        [p.keypoints[:, :2] + rng.normal(0, sigma, (33, 2)), p.keypoints[:, 2:]], axis=1)) for p in poses]


def retimed(poses, factor):
    """Resampled in time by linear interpolation: ``factor`` > 1 plays faster."""
    out = []
    for x in np.arange(0, len(poses) - 1, factor):
        i, f = int(x), x - int(x)
        a, b = poses[i], poses[i + 1]
        out.append((a if f < 0.5 else b) if a is None or b is None else Pose((1 - f) * a.keypoints + f * b.keypoints))
    return out


def dropped(poses, rng, share=0.2):
    """A fifth of the frames without a person, at random."""
    return [None if rng.random() < share else p for p in poses]


@pytest.mark.slow
def test_motion_that_repeats_nothing_adds_little():
    """Over three draws (one draw alone moves it from +0.02 to +0.2: a piece can land in a
    sequence with no repetition at all).  A counter that counted every swing rose by about 0.5."""
    plain, changed = mae_after(shuffled_piece, draws=3)
    assert changed - plain < 0.2, (plain, changed)


@pytest.mark.slow
def test_pose_jitter_moves_the_count_little():
    plain, changed = mae_after(jittered)
    assert changed - plain < 0.05, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [1.5, 0.67])
def test_another_tempo_moves_the_count_little(factor):
    plain, changed = mae_after(lambda poses, rng: retimed(poses, factor))
    assert changed - plain < 0.1, (plain, changed)


@pytest.mark.slow
def test_frames_without_a_person_move_the_count_little():
    plain, changed = mae_after(dropped)
    assert changed - plain < 0.05, (plain, changed)


@pytest.mark.slow
def test_no_count_ever_goes_down_on_any_dev_sequence():
    for poses, _ in dev_set():
        for stride in (90, 15):
            counts = [float(c) for c in HumanBodyActionCounter().applied(SlidingWindow(length=90, stride=stride).applied(list(poses)))]
            assert all(b >= a for a, b in zip(counts, counts[1:])), counts
