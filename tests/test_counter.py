"""The counter on synthetic pose streams with known answers, and a regression on real RepCount sequences."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cadence.pipelines import HumanBodyActionCounter, SlidingWindow
from cadence.pipelines.repcount import mean_absolute_error, poses_from_array, read_labels, read_poses, score

from .helpers import squatting_person

def stream_count(poses, window=90, stride=90, counter=None) -> float:
    counts = list((counter or HumanBodyActionCounter()).applied(SlidingWindow(length=window, stride=stride).applied(poses)))
    return counts[-1] if counts else 0.0


BOTH_WINDOWS = pytest.mark.parametrize("window,stride", [(90, 90), (90, 15)])


@BOTH_WINDOWS
def test_steady_reps_with_noise(window, stride):
    phase = 2 * np.pi * np.arange(600) / 50  # 12 reps of 50 frames
    assert stream_count(squatting_person(phase), window, stride) == pytest.approx(12, abs=0.5)


@BOTH_WINDOWS
def test_changing_tempo(window, stride):
    period = np.linspace(30, 120, 900)  # reps slow down from 1 s to 4 s
    phase = np.cumsum(2 * np.pi / period)
    truth = phase[-1] / (2 * np.pi)
    assert stream_count(squatting_person(phase), window, stride) == pytest.approx(truth, abs=1)


@BOTH_WINDOWS
def test_slow_reps_spanning_several_windows_are_counted_once(window, stride):
    phase = 2 * np.pi * np.arange(1000) / 250  # 4 reps of 250 frames: each spans about three windows
    assert stream_count(squatting_person(phase), window, stride) == pytest.approx(4, abs=0.5)


@BOTH_WINDOWS
def test_a_pause_between_sets_adds_nothing(window, stride):
    phase = np.concatenate([2 * np.pi * np.arange(250) / 50, np.full(300, 2 * np.pi * 5),
                            2 * np.pi * 5 + 2 * np.pi * np.arange(1, 201) / 50])
    assert stream_count(squatting_person(phase), window, stride) == pytest.approx(9, abs=0.5)


def test_a_partial_last_rep_counts_as_a_fraction():
    phase = 2 * np.pi * np.arange(int(50 * 4.5) + 1) / 50  # four reps, then down to the bottom
    count = stream_count(squatting_person(phase))
    assert count == pytest.approx(4.5, abs=0.25)
    assert count != round(count)


@BOTH_WINDOWS
def test_a_person_lost_for_20_frames(window, stride):
    poses = squatting_person(2 * np.pi * np.arange(500) / 50)
    poses[230:250] = [None] * 20
    assert stream_count(poses, window, stride) == pytest.approx(10, abs=0.6)


@BOTH_WINDOWS
def test_a_change_seen_only_across_gaps_in_detection_is_not_a_swing(window, stride):
    """Held still, up then down then up, the person lost during each change: no swing was seen."""
    holds = [squatting_person(np.full(150, depth), seed=i) for i, depth in enumerate((0, np.pi, 0, np.pi, 0))]
    poses = holds[0]
    for hold in holds[1:]:
        poses = poses + [None] * 60 + hold  # longer than the counter's gap (45 frames)
    assert stream_count(poses, window, stride) < 0.5


@BOTH_WINDOWS
def test_a_change_seen_only_across_cuts_is_not_a_swing(window, stride):
    """An edited video: held still, up then down then up, each hold a shot of its own (no frame
    without a person between them): the change at each cut is no swing."""
    holds = [squatting_person(np.full(150, depth), seed=i) for i, depth in enumerate((0, np.pi, 0, np.pi, 0))]
    poses = [replace(pose, shot=shot) for shot, hold in enumerate(holds) for pose in hold]
    assert stream_count([p for hold in holds for p in hold], window, stride) > 1.5  # without the cuts: swings
    assert stream_count(poses, window, stride) < 0.5


def test_shots_counted_again_from_0_by_a_source_opened_again_change_nothing():
    """A file resumed or a camera reconnected counts its shots from 0 again: no cut."""
    poses = squatting_person(2 * np.pi * np.arange(500) / 50)
    renumbered = [replace(pose, shot=3 if i < 240 else 0) for i, pose in enumerate(poses)]
    assert stream_count(renumbered, 90, 15) == stream_count(poses, 90, 15)


@BOTH_WINDOWS
def test_a_set_begun_from_a_standstill_counts_its_first_descent(window, stride):
    """The way from where tracking began to the first turning point counts like any other leg."""
    count = stream_count(squatting_person(np.concatenate([np.zeros(60), 2 * np.pi * np.arange(500) / 50])),
                         window, stride)
    assert count == pytest.approx(10, abs=0.25)


@BOTH_WINDOWS
@pytest.mark.parametrize("reps,period", [(8, 40), (6, 30)])
def test_a_slow_move_before_the_set_is_not_a_repetition(window, stride, reps, period):
    """Down and up once, slowly (4 s, 60 % of the depth), a second still, then the set: the move
    is a set of one cycle, unlike the set's tempo, and counts nothing (it counted 1 before sets).
    Alone in a stream, the same move is the only set there is and counts 1."""
    move = np.arccos(1 - 2 * 0.6) * 0.5 * (1 - np.cos(2 * np.pi * np.arange(120) / 119))
    set_ = 2 * np.pi * np.arange(reps * period) / period
    count = stream_count(squatting_person(np.concatenate([move, np.zeros(30), set_])), window, stride)
    assert count == pytest.approx(reps, abs=0.25)
    assert stream_count(squatting_person(np.concatenate([move, np.zeros(30)])), window, stride) == pytest.approx(1)


@BOTH_WINDOWS
def test_each_repetition_is_reported_where_it_happened(window, stride):
    """Ten squats of 50 frames after 60 still ones: repetition k runs from about frame 60 + 50 (k - 1)
    to 60 + 50 k (the first one from where its descent began), each reported once, in order."""
    poses = squatting_person(np.concatenate([np.zeros(60), 2 * np.pi * np.arange(500) / 50]))
    counts = list(HumanBodyActionCounter().applied(SlidingWindow(length=window, stride=stride).applied(poses)))
    reps = [r for c in counts for r in c.repetitions]
    assert [r.index for r in reps] == list(range(1, len(reps) + 1)) and len(reps) >= 9
    for r in reps:
        assert abs(r.start - (60 + 50 * (r.index - 1))) <= 10 and abs(r.end - (60 + 50 * r.index)) <= 10, r
        assert 0 < r.confidence <= 1


def test_standing_still_counts_nothing():
    assert stream_count(squatting_person(np.zeros(400), noise=0.01)) < 0.5


def test_no_person_at_all_counts_zero():
    assert stream_count([None] * 200) == 0.0
    assert stream_count([]) == 0.0


def test_windows_of_90_90_and_90_15_agree():
    poses = squatting_person(np.cumsum(2 * np.pi / np.linspace(40, 80, 700)))
    assert stream_count(poses, 90, 90) == pytest.approx(stream_count(poses, 90, 15), abs=0.3)


def test_the_count_does_not_depend_on_where_windows_fall():
    """Frames without a person in front shift every window seam; the count must stay put."""
    poses = squatting_person(np.cumsum(2 * np.pi / np.linspace(40, 80, 700)))
    counts = [stream_count([None] * pad + poses, 90, stride) for pad in (0, 23, 45, 68) for stride in (90, 15)]
    assert max(counts) - min(counts) < 0.25


def test_a_rep_cut_by_a_long_gap_keeps_the_fractions_seen():
    """Lost for 60 frames (2 s) mid-set: the legs on either side of the gap still count their seen parts."""
    poses = squatting_person(2 * np.pi * np.arange(600) / 50)
    poses[285:345] = [None] * 60  # 1.2 reps unseen
    assert stream_count(poses) == pytest.approx(12 - 1.2, abs=0.6)


def test_repcount_rows_become_poses():
    rows = np.zeros((3, 104), np.float32)
    rows[0, :99] = np.tile([0.1, 0.2, 0.3], 33)
    poses = poses_from_array(rows)
    assert poses[1] is None and poses[2] is None
    assert poses[0].joint("nose").tolist() == pytest.approx([0.1, 0.2, 0.3, 1.0])


# -- real data ------------------------------------------------------------------------------------

REGRESSION = ["stu6_63", "stu6_24", "stu3_18", "stu10_43", "stu13_31"]


def test_regression_on_dev_sequences(repcount_dir):
    sequences = [s for s in read_labels(repcount_dir / "poses", repcount_dir / "labels.csv") if s.name in REGRESSION]
    assert len(sequences) == len(REGRESSION)
    preds = [stream_count(read_poses(s.path)) for s in sequences]
    truths = [s.count for s in sequences]
    assert mean_absolute_error(preds, truths) < 0.1
    assert all(abs(round(p) - t) <= 1 for p, t in zip(preds, truths))


@pytest.mark.slow
@BOTH_WINDOWS
def test_every_whole_repetition_counted_is_reported_as_an_event(repcount_dir, window, stride):
    """A 90-frame window of jumping jacks holds more legs than the counter keeps: each leg is made
    into repetitions before it leaves (before, 15 of the 102 streams lost events; one counted 35.7
    and reported 26).
    The count may run ahead of the events by the share of a leg in progress."""
    for sequence in read_labels(repcount_dir / "poses", repcount_dir / "labels.csv"):
        counts = list(HumanBodyActionCounter().applied(SlidingWindow(length=window, stride=stride).applied(read_poses(sequence.path))))
        events = [r for c in counts for r in c.repetitions]
        whole = int(float(counts[-1]) + 1e-9) if counts else 0
        assert whole - 1 <= len(events) <= whole, (sequence.name, float(counts[-1]), len(events))
        assert [r.index for r in events] == list(range(1, len(events) + 1))
        assert all(r.start < r.end for r in events)


def test_score_reports_the_benchmark_figures(repcount_dir):
    sequences = read_labels(repcount_dir / "poses", repcount_dir / "labels.csv")[:6]
    result = score(sequences)
    assert len(result.videos) == 6 and 0 <= result.obo <= 1 and result.mae >= 0
    assert set(result.to_dict()) >= {"mae", "obo", "videos"}


@BOTH_WINDOWS
def test_joints_left_out_are_not_counted(window, stride):
    """Squats every 60 frames and the arms raised every 40 (Create ML's JointsSelector): each
    exercise is counted on its own joints, and the angles at joints left out stay still too."""
    from cadence.pipelines import JointsSelector

    frames = np.arange(480)
    poses = squatting_person(2 * np.pi * frames / 60, arms=2 * np.pi * frames / 40)
    arms, legs = JointsSelector(selected_joints=["arms"]), JointsSelector(ignored_joints=["arms", "face"])
    assert stream_count([arms.applied(p) for p in poses], window, stride) == pytest.approx(12, abs=1)
    assert stream_count([legs.applied(p) for p in poses], window, stride) == pytest.approx(8, abs=1)


def test_body_shape_holds_limb_angles_and_nothing_of_joints_left_out():
    from cadence.pipelines import JointsSelector, Pose
    from cadence.pipelines.bodyshape import ANGLE_WEIGHT, ANGLES, body_shape

    k = np.zeros((33, 4), np.float32)
    k[:, :2], k[:, 3] = 0.5, 1.0
    k[11, :2], k[13, :2], k[15, :2] = (0.3, 0.3), (0.3, 0.5), (0.5, 0.5)  # a left elbow bent square
    shape = body_shape(Pose(k))
    angles = shape[-len(ANGLES):] / ANGLE_WEIGHT
    assert len(shape) == 66 + len(ANGLES) and angles[0] == pytest.approx(np.pi / 2)
    without = body_shape(JointsSelector(ignored_joints=["left_wrist"]).applied(Pose(k)))
    assert without[-len(ANGLES)] == 0 and np.all(without[2 * 15:2 * 15 + 2] == 0)


def test_a_snapshot_from_before_limb_angles_is_restored_and_counts_on():
    """A running service upgraded: its sessions' snapshots hold joint positions only (66 values a
    shape).  They gain their angles, and the count carries on as if hardly interrupted."""
    from cadence.pipelines import Window
    from cadence.pipelines.bodyshape import ANGLES

    poses = squatting_person(2 * np.pi * np.arange(600) / 50)
    windows = list(SlidingWindow(length=90, stride=15).applied(poses))
    whole = HumanBodyActionCounter().session()
    uninterrupted = [c for w in windows for c in whole.push(w)] + whole.finish()
    first = HumanBodyActionCounter().session()
    for w in windows[:20]:
        first.push(w)
    state = first.snapshot()

    def positions(x):
        x = np.asarray(x, dtype=float)
        return x[..., :-len(ANGLES)] if x.size else x

    for key in ("raw", "shapes", "metric"):
        state[key] = positions(state[key])
    state["pending"] = [[i, None if s is None else positions(s).tolist()] for i, s in state["pending"]]
    for key in ("anchor", "peak", "before", "origin"):
        if state["tracker"][key] is not None:
            state["tracker"][key] = positions(state["tracker"][key]).tolist()
    restored = HumanBodyActionCounter().session()
    restored.restore(state)
    rest = [c for w in windows[20:] for c in restored.push(Window(w.start, list(w)))] + restored.finish()
    assert rest[-1] == pytest.approx(uninterrupted[-1], abs=1e-3)  # one frame's jolt measured before the refit
    assert uninterrupted[-1] == pytest.approx(12, abs=0.5)



def test_joint_groups_mean_what_their_names_say():
    from cadence.pipelines.pose import JOINT_GROUPS, JOINT_NAMES

    hips = {"left_hip", "right_hip"}
    assert not hips & set(JOINT_GROUPS["legs"]) and not hips & set(JOINT_GROUPS["upper_body"])
    assert set(JOINT_GROUPS["lower_body"]) == hips | set(JOINT_GROUPS["legs"])
    assert set(JOINT_GROUPS["upper_body"]) == set(JOINT_GROUPS["face"]) | set(JOINT_GROUPS["arms"])
    assert set(JOINT_GROUPS["upper_body"]) | set(JOINT_GROUPS["lower_body"]) == set(JOINT_NAMES)
    assert not set(JOINT_GROUPS["upper_body"]) & set(JOINT_GROUPS["lower_body"])
