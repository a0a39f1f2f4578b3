"""Real MediaPipe pose extraction (several people) and the selection strategies."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from cadence.pipelines import HumanBodyPoseExtractor, Pose, PoseSelector, STRATEGIES, TrackingPoseExtractor, read_video
from cadence.pipelines.pose import JOINT_NAMES, deduplicated

from .helpers import video

pytestmark = pytest.mark.mediapipe


def frame(name: str, index: int = 0) -> np.ndarray:
    for f in read_video(video(name)):
        if f.index == index:
            return f.image
    raise AssertionError(f"{name} has no frame {index}")


@pytest.fixture(scope="module")
def extractor():
    e = HumanBodyPoseExtractor()
    yield e
    e.close()


@pytest.fixture(scope="module")
def two_person_frame():
    """A squat (left) beside a push-up (right): two real frames side by side."""
    left = frame("squat_correct_007.mp4")[:, 320:960]
    right = cv2.resize(frame("pushup_incorrect_001.mp4", 30), (1280, 720))
    return np.hstack([left, right])


def test_two_people_in_one_composed_frame(extractor, two_person_frame):
    poses = extractor.applied(two_person_frame)
    assert len(poses) == 2
    centres = sorted(float(p.keypoints[:, 0].mean()) for p in poses)
    assert centres[0] < 1 / 3 < centres[1]  # one on the squat third, one on the push-up part
    for pose in poses:
        assert pose.keypoints.shape == (33, 4)
        assert np.all((pose.keypoints[:, 3] >= 0) & (pose.keypoints[:, 3] <= 1))


def test_two_people_in_a_real_group_workout(extractor):
    poses = extractor.applied(frame("jumpingjack_correct_001.mp4", 60))
    assert len(poses) == 2


@pytest.mark.parametrize("image", ["trees", "grey"])
def test_no_person_gives_no_pose(extractor, image):
    img = (np.ascontiguousarray(frame("jumpingjack_correct_001.mp4")[:, :250]) if image == "trees"
           else np.full((360, 640, 3), 128, np.uint8))
    assert extractor.applied(img) == []
    assert PoseSelector().applied([]) is None


def test_extraction_is_pure(extractor, two_person_frame):
    a = extractor.applied(two_person_frame)
    extractor.applied(frame("squat_correct_013.mp4"))
    b = extractor.applied(two_person_frame)
    assert [p.keypoints.tolist() for p in a] == [p.keypoints.tolist() for p in b]


def test_selection_strategies_on_the_real_two_person_frame(extractor, two_person_frame):
    poses = extractor.applied(two_person_frame)
    squat, pushup = sorted(poses, key=lambda p: p.keypoints[:, 0].mean())
    assert PoseSelector(strategy="leftmost_joint_location").applied(poses) is squat
    assert PoseSelector(strategy="rightmost_joint_location").applied(poses) is pushup
    assert PoseSelector(strategy="lowest_joint_location").applied(poses) is squat  # feet at the bottom
    assert PoseSelector(strategy="highest_joint_location").applied(poses) is squat  # standing: head highest
    area = lambda p: (lambda b: (b[2] - b[0]) * (b[3] - b[1]))(p.bounding_box(0.2))  # noqa: E731
    assert area(pushup) > 1.1 * area(squat)  # the push-up spans the wider half
    assert PoseSelector(strategy="maximum_bounding_box_area").applied(poses) is pushup


def _pose(x0, y0, x1, y1, confidence=1.0):
    k = np.zeros((33, 4), np.float32)
    k[:, 0] = np.linspace(x0, x1, 33)
    k[:, 1] = np.linspace(y0, y1, 33)
    k[:, 3] = confidence
    return Pose(k)


def test_each_strategy_picks_its_pose():
    big = _pose(0.40, 0.10, 0.60, 0.90)  # largest box, in the middle
    left = _pose(0.05, 0.50, 0.15, 0.60)
    right = _pose(0.85, 0.40, 0.95, 0.50)
    top = _pose(0.70, 0.02, 0.75, 0.08)
    low = _pose(0.20, 0.93, 0.25, 0.98)
    poses = [big, left, right, top, low]
    expected = {"maximum_bounding_box_area": big, "leftmost_joint_location": left,
                "rightmost_joint_location": right, "highest_joint_location": top, "lowest_joint_location": low}
    assert set(expected) == set(STRATEGIES)
    for strategy, pose in expected.items():
        assert PoseSelector(strategy=strategy).applied(poses) is pose, strategy


def test_joints_under_the_threshold_do_not_count():
    confident = _pose(0.4, 0.4, 0.5, 0.5, 0.9)
    k = _pose(0.0, 0.0, 1.0, 1.0).keypoints.copy()
    k[:, 3] = 0.1  # a huge but unsure detection
    k[0, 3] = 0.9
    unsure = Pose(k)
    assert PoseSelector(strategy="maximum_bounding_box_area", confidence_threshold=0.2).applied([unsure, confident]) is confident
    assert PoseSelector(strategy="maximum_bounding_box_area", confidence_threshold=0.05).applied([unsure, confident]) is unsure
    assert PoseSelector(confidence_threshold=0.95).applied([unsure, confident]) is None


def test_unknown_strategy_is_named_in_the_error():
    with pytest.raises(ValueError, match="PoseSelector: strategy must be one of .*'rightmost_joint_location', got 'tallest'"):
        PoseSelector(strategy="tallest").applied([])


def test_near_duplicates_are_merged():
    a = _pose(0.4, 0.1, 0.6, 0.9, 0.9)
    b = _pose(0.41, 0.11, 0.61, 0.91, 0.8)
    c = _pose(0.0, 0.1, 0.2, 0.9, 0.9)
    assert deduplicated([b, a, c]) == [a, c]


def test_pose_names_its_joints():
    p = _pose(0, 0, 1, 1)
    assert len(JOINT_NAMES) == 33
    assert p.joint("nose").tolist() == p.keypoints[0].tolist()
    with pytest.raises(ValueError, match="shape"):
        Pose(np.zeros((17, 4)))


def test_a_second_thread_gets_a_graph_of_its_own_and_the_same_poses(extractor, two_person_frame):
    here = extractor.applied(two_person_frame)
    there = []
    thread = threading.Thread(target=lambda: there.append(extractor.applied(two_person_frame)))
    thread.start()
    thread.join()
    assert len(there[0]) == len(here) == 2
    assert all(np.allclose(a.keypoints, b.keypoints, atol=1e-4) for a, b in zip(here, there[0]))


def test_extractor_travels_to_another_process_without_its_graph(extractor, two_person_frame):
    import pickle
    extractor.applied(two_person_frame)
    copy = pickle.loads(pickle.dumps(extractor))
    assert copy == extractor and not copy._landmarkers._values


def test_a_pipeline_runs_again_with_for_and_async_for():
    """The README's chain, run with ``for`` and then twice with ``async for`` (each run on a new
    worker thread): the same counts every time, where a graph bound to its first thread refused."""
    import asyncio

    from cadence import Downsample, HumanBodyActionCounter, SlidingWindow, read_video

    clip = video("squat_correct_016.mp4")
    counting = (Downsample(factor=2).appending(HumanBodyPoseExtractor()).appending(PoseSelector())
                .appending(SlidingWindow(length=45, stride=8)).appending(HumanBodyActionCounter(rate=15)))

    async def counted_async() -> list[float]:
        return [float(c) async for c in counting.applied(read_video(clip))]

    first = [float(c) for c in counting.applied(read_video(clip))]
    assert first and first == asyncio.run(counted_async()) == asyncio.run(counted_async())
    assert first[-1] == pytest.approx(1, abs=0.5)


def test_threads_that_ended_leave_no_graph_behind():
    import threading

    extractor = TrackingPoseExtractor(detection_seconds=2 / 30)
    frames = [np.zeros((64, 64, 3), np.uint8)] * 4

    def run() -> None:
        list(extractor.applied(frames))

    for _ in range(3):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    list(extractor.applied(frames))  # this thread's use closes what the ended threads made
    assert len(extractor.detector()._landmarkers._values) == 1 and len(extractor._idle._values) == 1
    extractor.close()


def test_the_python_api_says_nothing_on_stderr_unless_asked(tmp_path):
    import subprocess
    import sys

    from .helpers import ROOT

    script = ("from cadence import RepetitionCounting\n"
              f"print(RepetitionCounting().run({str(video('pushup_incorrect_001.mp4'))!r}).count)\n")
    quiet = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and float(quiet.stdout) > 0, quiet.stderr
    assert quiet.stderr == ""  # MediaPipe's INFO, absl's W0000 lines, protobuf's deprecation: none
    verbose = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CADENCE_VERBOSE": "1"})
    assert "XNNPACK" in verbose.stderr and verbose.stdout == quiet.stdout  # kept when asked for
