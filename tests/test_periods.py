"""HumanBodyActionPeriodPredictor: the tempo and how repetitive the motion is, on poses with known answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cadence import Pose, SlidingWindow
from cadence.pipelines.periods import HumanBodyActionPeriodPredictor

from .helpers import squatting_person


def predictions(poses, window=90, stride=15):
    return list(HumanBodyActionPeriodPredictor().applied(SlidingWindow(length=window, stride=stride).applied(poses)))


@pytest.mark.parametrize("period", [20, 50, 120])
def test_a_steady_set_gives_its_period_and_high_periodicity(period):
    out = predictions(squatting_person(2 * np.pi * np.arange(8 * period) / period))
    assert [p.index for p in out] == list(range(8 * period))  # one prediction per frame
    last = out[-1]
    assert last.period * 30 == pytest.approx(period, rel=0.1) and last.periodicity > 0.8


def test_standing_still_or_flailing_is_not_periodic():
    still = predictions(squatting_person(np.zeros(300)))
    assert still[-1].periodicity < 0.3
    rng = np.random.default_rng(1)
    flailing = [Pose(np.concatenate([rng.random((33, 2)), np.ones((33, 2))], axis=1)) for _ in range(300)]
    assert predictions(flailing)[-1].periodicity < 0.3


def test_the_set_is_recognised_once_it_starts():
    """Standing, then squatting every 40 frames: periodicity rises once two repetitions are in view."""
    phase = np.concatenate([np.zeros(200), 2 * np.pi * np.arange(400) / 40])
    out = predictions(squatting_person(phase), stride=10)
    assert out[150].periodicity < 0.5 and out[-1].periodicity > 0.8
    assert out[-1].period * 30 == pytest.approx(40, rel=0.1)


def test_the_period_is_in_frames_of_the_stream_when_detection_drops_out():
    """Squats every 40 frames, the person found on two frames of three (or 70 % at random)."""
    poses = squatting_person(2 * np.pi * np.arange(400) / 40)
    rng = np.random.default_rng(0)
    for kept in ([p if i % 3 else None for i, p in enumerate(poses)],
                 [None if rng.random() < 0.3 else p for p in poses]):
        last = predictions(kept)[-1]
        assert last.period * 30 == pytest.approx(40, rel=0.1) and last.periodicity > 0.8


def test_after_a_cut_only_the_new_shot_counts():
    """An edited video: squats every 50 frames, then another shot of squats every 25."""
    slow = squatting_person(2 * np.pi * np.arange(250) / 50)
    fast = [replace(pose, shot=1) for pose in squatting_person(2 * np.pi * np.arange(100) / 25, seed=3)]
    assert predictions(slow + fast)[-1].period * 30 == pytest.approx(25, rel=0.1)


def test_no_person_gives_no_period():
    out = predictions([None] * 100)
    assert len(out) == 100 and all(p.period == 0 and p.periodicity == 0 for p in out)
