"""An honest confidence per feed (issue 33): ``pose_coverage`` (the share of frames posed with a
confident person) and ``reliability`` in [0, 1] (coverage, the joints' visibility, and how alike
the counted repetitions were).  Clean dev sequences keep it high; a body hidden at the bottom of
each repetition and a silhouette lower it; a count below 0.5 carries a warning naming the feed."""

from __future__ import annotations

import numpy as np
import pytest

from cadence import RepetitionCounting
from cadence.pipelines.repetitions import FeedCounting, PeopleInFrame
from cadence.pipelines.results import CountResult

from . import test_counter_stress as stress
from .helpers import cores, video


def concluded(poses, name: str = "dev") -> CountResult:
    """A 30 fps pose sequence through the job's counting session, as either runner concludes it."""
    session = RepetitionCounting().feed_counting(name, fps=30.0).session()
    for i, pose in enumerate(poses):
        session.push(PeopleInFrame(i, i / 30, 0.0, [] if pose is None else [pose]))
    session.finish()
    result = CountResult(name, name, frames=len(poses))
    result.conclude(FeedCounting.tally(session.snapshot()))
    return result


def reliability(poses) -> float:
    return concluded(poses).reliability


def mean_reliability(change=None) -> float:
    """Over the dev set, each sequence changed by ``change`` (drawn here, in order) and concluded on a core of its own."""
    rng = np.random.default_rng(0)
    sequences = [change(list(p), rng, c) if change else list(p) for p, _, c in stress.dev_set()]
    return float(np.mean(list(cores().map(reliability, sequences, chunksize=2))))


@pytest.mark.slow
def test_hidden_bodies_and_silhouettes_lower_the_reliability_and_clean_sequences_keep_it_high():
    clean = mean_reliability()
    hidden = mean_reliability(lambda poses, rng, cycles: stress.hidden_at_the_bottom(poses, rng, cycles, None))
    silhouette = mean_reliability(stress.silhouette)
    assert clean > 0.7 and hidden < clean - 0.1 and silhouette < clean - 0.3, (clean, hidden, silhouette)


def test_a_stream_barely_seen_is_counted_with_a_warning_naming_it():
    seen = [p for p, _, _ in stress.dev_set()[:1]][0]
    barely = [pose if i % 4 == 0 else None for i, pose in enumerate(seen)]
    result = concluded(barely, "gym-camera")
    assert result.pose_coverage == pytest.approx(np.mean([p is not None for p in barely]), abs=1e-9)
    assert result.reliability < 0.5 and any("gym-camera" in w and "unreliable" in w for w in result.warnings)
    summary = result.summary()
    assert summary["pose_coverage"] == round(result.pose_coverage, 3) and summary["reliability"] < 0.5


@pytest.mark.mediapipe
def test_a_clear_clip_counts_without_a_warning():
    result = RepetitionCounting().run(video("jumpingjack_correct_001.mp4"))
    assert result.pose_coverage == 1.0 and result.reliability > 0.8 and not result.warnings
