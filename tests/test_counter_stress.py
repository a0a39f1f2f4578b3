"""The counter on dev sequences changed the ways real videos differ from them: non-repetitive motion
put in, pose jitter, another tempo, frames without a person; and the ways the counter's misses on
footage kept apart were made (issue 33): a body hidden at the bottom of each repetition, a
silhouette in poor light, a panning and zooming camera, set-up moves before and after the set.
Each says how far the count may move (measured as the rise of RepCount's MAE over the whole dev
set, streamed in 3 s windows every 3 s), with every frame posed (the default) and at 15 poses a
second (the changed 30 fps sequence posed every other frame, as ``--rate 15`` poses a video); each
test says what the rise was when its bound was set."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cadence import Pose, RepetitionCounting
from cadence.pipelines.repcount import analysed, mean_absolute_error, read_labels, read_poses

from .helpers import REPCOUNT, cores


@functools.cache
def dev_set() -> tuple:
    if not (REPCOUNT / "labels.csv").exists():
        pytest.skip(f"{REPCOUNT} is absent")
    return tuple((read_poses(s.path), s.count, s.cycles)
                 for s in read_labels(REPCOUNT / "poses", REPCOUNT / "labels.csv"))


RATES = [15.0, None]  # 15 poses a second (--rate 15), and every frame (the default)


def counts_shown(poses, rate, stride=None) -> list[float]:
    """Every count the job at ``rate`` shows of a 30 fps pose sequence: one every ``stride``
    seconds (by default, every half second)."""
    counting = RepetitionCounting(rate=rate, stride_seconds=stride).feed_counting(fps=30.0)
    return [float(c) for c in counting.counter.applied(counting.window.applied(analysed(poses, 30.0, rate)[0]))]


def count(poses, rate=RepetitionCounting.rate, stride=3.0) -> float:
    """The count of a 30 fps pose sequence as the counting job at ``rate`` makes it."""
    shown = counts_shown(poses, rate, stride)
    return shown[-1] if shown else 0.0


def mae_after(change, draws: int = 1, rate=RepetitionCounting.rate) -> tuple[float, float]:
    """The dev set's MAE as it is, and with every sequence changed by ``change(poses, rng, cycles)``
    (the mean over ``draws`` random draws; ``cycles``: the labelled repetitions' frame spans), both
    counted by the job at ``rate``."""
    truths = [truth for _, truth, _ in dev_set()]
    changed = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)  # the changes drawn here, in order: the same whatever counts them
        changed.append(mean_absolute_error(counts([change(list(poses), rng, cycles)
                                                   for poses, _, cycles in dev_set()], rate), truths))
    return unchanged_mae(rate), float(np.mean(changed))


@functools.cache
def unchanged_mae(rate) -> float:
    """The dev set's MAE as it is, counted by the job at ``rate`` (once per rate: every stress compares with it)."""
    return mean_absolute_error(counts([list(poses) for poses, _, _ in dev_set()], rate),
                               [truth for _, truth, _ in dev_set()])


def counts(sequences: list, rate) -> list[float]:
    """:func:`count` of each sequence, on every core: this module counts the dev set some forty times."""
    return list(cores().map(count, sequences, [rate] * len(sequences), chunksize=2))


def shuffled_piece(poses, rng, cycles=(), length=150):
    """Five seconds of the video's own poses in random order put in at a random place: motion of
    the right size that repeats nothing."""
    start = int(rng.integers(0, max(1, len(poses) - length)))
    piece = [poses[i] for i in rng.permutation(np.arange(start, min(len(poses), start + length)))]
    at = int(rng.integers(0, len(poses)))
    return poses[:at] + piece + poses[at:]


def jittered(poses, rng, cycles=(), sigma=0.01):
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


def dropped(poses, rng, cycles=(), share=0.2):
    """A fifth of the frames without a person, at random."""
    return [None if rng.random() < share else p for p in poses]


LOWER_BODY = np.arange(23, 33)  # hips, knees, ankles, heels, feet


def hidden_at_the_bottom(poses, rng, cycles=(), joints=None):
    """The middle third of every labelled repetition (a squat's or a push-up's bottom) with the
    ``joints`` (default: all) barely visible and their positions jumping: off by an offset drawn
    per repetition (the landmarks latched onto what hides the body, about 15 % of its size) and
    about 5 % more frame by frame, as behind a barbell plate; the pose is lost on a fifth of them."""
    out, joints = list(poses), np.arange(33) if joints is None else joints
    for start, end in cycles:
        third = (end - start) / 3
        latched = rng.normal(0, 0.15, 2)  # where the lost joints are drawn instead (the plate, say)
        for i in range(int(start + third), min(len(out), int(end - third) + 1)):
            if out[i] is None or rng.random() < 0.2:
                out[i] = None
                continue
            keypoints = out[i].keypoints.copy()
            keypoints[joints, :2] += latched + rng.normal(0, 0.05, (len(joints), 2))
            keypoints[joints, 3] = rng.uniform(0.0, 0.1, len(joints))
            out[i] = Pose(keypoints)
    return out


def silhouette(poses, rng, cycles=()):
    """A backlit body throughout: every landmark's visibility a third of what it was, and the
    positions three times as jittery as a clear view's."""
    out = []
    for p in poses:
        if p is None:
            out.append(None)
            continue
        keypoints = p.keypoints.copy()
        keypoints[:, :2] += rng.normal(0, 0.03, (33, 2))
        keypoints[:, 3] /= 3
        out.append(Pose(keypoints))
    return out


def panned_and_zoomed(poses, rng, cycles=()):
    """A handheld camera: the whole body drifting sideways (a fifth of the frame) and zooming (by
    up to 30 %) smoothly over periods of 8 to 12 s, unrelated to the exercise's tempo."""
    pan, zoom = rng.uniform(240, 360, 2)  # periods in frames (30 fps)
    out = []
    for t, p in enumerate(poses):
        if p is None:
            out.append(None)
            continue
        keypoints = p.keypoints.copy()
        centre = np.nanmean(keypoints[:, :2], axis=0)
        scale = 1 + 0.3 * np.sin(2 * np.pi * t / zoom)
        keypoints[:, :2] = centre + (keypoints[:, :2] - centre) * scale + [0.2 * np.sin(2 * np.pi * t / pan), 0]
        out.append(Pose(keypoints))
    return out


def set_up_moves(poses, rng, cycles=()):
    """A slow move like a repetition before the set and after it (picking a bar up, putting it
    down): the first labelled repetition played at 40 % of its speed and 60 % of its range."""
    if not cycles:
        return poses
    start, end = cycles[0]
    rep = [p for p in retimed(poses[start:end + 1], 0.4) if p is not None]
    if not rep:
        return poses
    mean = np.mean([p.keypoints for p in rep], axis=0)
    slow = [Pose(np.concatenate([mean[:, :2] + 0.6 * (p.keypoints[:, :2] - mean[:, :2]), p.keypoints[:, 2:]], axis=1))
            for p in rep]
    still = [rep[0]] * 30  # a second still between the move and the set
    return slow + still + poses + still + slow


@pytest.mark.slow
@pytest.mark.parametrize("rate", [pytest.param(15.0, marks=pytest.mark.xfail(
    strict=True, reason="measured +0.44 at 15 poses a second (+0.08 at every frame): why 15 is not the default")),
    None])
def test_motion_that_repeats_nothing_adds_little(rate):
    """Over three draws (one draw alone moves it from +0.02 to +0.2: a piece can land in a
    sequence with no repetition at all).  A counter that counted every swing rose by about 0.5."""
    plain, changed = mae_after(shuffled_piece, draws=3, rate=rate)
    assert changed - plain < 0.2, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_pose_jitter_moves_the_count_little(rate):
    plain, changed = mae_after(jittered, rate=rate)
    assert changed - plain < 0.05, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("factor", [1.5, 0.67])
def test_another_tempo_moves_the_count_little(factor, rate):
    plain, changed = mae_after(lambda poses, rng, cycles: retimed(poses, factor), rate=rate)
    assert changed - plain < 0.1, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_frames_without_a_person_move_the_count_little(rate):
    plain, changed = mae_after(dropped, rate=rate)
    assert changed - plain < 0.05, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("joints", [LOWER_BODY, None], ids=["lower body", "whole body"])
def test_a_body_hidden_at_the_bottom_of_each_repetition_moves_the_count_little(joints, rate):
    """Measured over three draws: +0.033 (lower body) and +0.016 (whole body)."""
    plain, changed = mae_after(lambda poses, rng, cycles: hidden_at_the_bottom(poses, rng, cycles, joints), draws=3,
                               rate=rate)
    assert changed - plain < 0.08, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_a_silhouette_moves_the_count_little(rate):
    """Measured over three draws: +0.027."""
    plain, changed = mae_after(silhouette, draws=3, rate=rate)
    assert changed - plain < 0.08, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_a_panning_zooming_camera_moves_the_count_little(rate):
    """Measured over three draws: +0.000 (the counter works in the body's own frame)."""
    plain, changed = mae_after(panned_and_zoomed, draws=3, rate=rate)
    assert changed - plain < 0.05, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_set_up_moves_before_and_after_the_set(rate):
    """Measured: +0.218 at every frame, +0.202 at 15 a second (+0.264 and +0.237 before sets: a
    lone slow cycle beside a set no longer counts), the counter's weak spot (issue 33 wants it
    at 0.08): most of the rise is three sequences whose first repetition lasts 4 to 10 s, so the
    move lasts 10 to 26 s and the counter counts its wiggles.  The bound keeps it from growing."""
    plain, changed = mae_after(set_up_moves, rate=rate)
    assert changed - plain < 0.26, (plain, changed)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_no_count_ever_goes_down_on_any_dev_sequence(rate):
    sequences = [list(poses) for poses, _, _ in dev_set()]
    for counts in cores().map(counts_shown, sequences, [rate] * len(sequences)):
        assert all(b >= a for a, b in zip(counts, counts[1:])), counts
