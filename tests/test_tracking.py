"""Per-person tracking and counting: stable ids across frames, a count per person in a group workout."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import numpy as np
import pytest

from cadence.pipelines import HumanBodyPoseExtractor, Pose, read_video
from cadence.pipelines.repetitions import PeopleInFrame, RepetitionCounting
from cadence.pipelines.tracking import PersonTracker

from .helpers import ROOT, video


def person(x0: float, y0: float = 0.2, size: float = 0.3) -> Pose:
    k = np.zeros((33, 4), np.float32)
    k[:, 0] = np.linspace(x0, x0 + size / 2, 33)
    k[:, 1] = np.linspace(y0, y0 + size, 33)
    k[:, 3] = 1
    return Pose(k)


def ids(session, frames) -> list[list[int]]:
    return [list(session.push(people)[0]) for people in frames]


def test_ids_follow_people_not_their_order_in_the_list():
    left, right = person(0.1), person(0.6)
    session = PersonTracker().session()
    tracked = [session.push(people)[0] for people in ([left, right], [right, left], [right, left], [left, right])]
    for frame in tracked:
        assert frame[1] is left and frame[2] is right


def test_a_person_briefly_lost_keeps_their_id_and_one_gone_for_long_gets_a_new_one():
    a, b = person(0.1), person(0.6)
    session = PersonTracker(patience=5 / 30).session()
    seen = ids(session, [[a, b]] + [[a]] * 5 + [[a, b]])
    assert seen[-1] == [1, 2]  # missing for 5 frames: still person 2
    seen = ids(session, [[a]] * 6 + [[a, b]])
    assert seen[-1] == [1, 3]  # missing for 6: forgotten; back as person 3
    assert session.tracked == [1, 3]


def test_someone_walking_in_is_the_next_id_and_nobody_else_changes():
    a, b, c = person(0.05), person(0.4), person(0.75)
    session = PersonTracker().session()
    assert ids(session, [[a, b]] * 10 + [[c, a, b]] * 3)[-1] == [1, 2, 3]


@functools.cache
def everyone_in(name: str) -> tuple:
    extractor = HumanBodyPoseExtractor()
    try:
        return tuple(PeopleInFrame(f.index, f.timestamp, 0.0, extractor.applied(f)) for f in read_video(video(name)))
    finally:
        extractor.close()


@pytest.mark.mediapipe
def test_the_two_people_of_the_jumping_jack_clip_keep_two_ids_and_each_count_2_to_3():
    frames = everyone_in("jumpingjack_correct_001.mp4")
    session = PersonTracker().session()
    tracked = [session.push(f.people)[0] for f in frames]
    assert set().union(*tracked) == {1, 2}
    two = [t for f, t in zip(frames, tracked) if len(f.people) == 2]
    assert len(two) > 0.9 * len(frames) and all(set(t) == {1, 2} for t in two)
    # each stays on their side: the ids never swap
    sides = {bool(t[1].joint("left_hip")[0] < t[2].joint("left_hip")[0]) for t in two}
    assert len(sides) == 1

    counting = RepetitionCounting(per_person=True).feed_counting("jj").session()
    updates = [u for f in frames for u in counting.push(f)] + counting.finish()
    people = updates[-1].people
    assert set(people) == {"1", "2"}
    assert all(2 <= count <= 3 for count in people.values()), people
    for key in people:  # each person's running count never goes down
        counts = [u.people.get(key, 0.0) for u in updates]
        assert counts == sorted(counts)


@pytest.mark.ray
@pytest.mark.mediapipe
def test_count_per_person_on_the_command_line():
    run = subprocess.run([sys.executable, "-m", "cadence.cluster.cli", "count",
                          str(video("jumpingjack_correct_001.mp4")), "--per-person", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert set(summary["people"]) == {"1", "2"}
    assert all(2 <= count <= 3 for count in summary["people"].values())
    assert summary["count"] == pytest.approx(max(summary["people"].values()), abs=0.5)
