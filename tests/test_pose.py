"""Real MediaPipe pose extraction (several people) and the selection strategies."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from cadence.pipelines import HumanBodyPoseExtractor, Pose, PoseSelector, STRATEGIES, read_video
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


def test_an_extractor_refuses_a_second_thread(extractor, two_person_frame):
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_catch(lambda: extractor.applied(two_person_frame))))
    thread.start()
    thread.join()
    assert isinstance(errors[0], RuntimeError) and "one extractor per stream" in str(errors[0])


def _catch(fn):
    try:
        fn()
    except Exception as e:  # returned for the assertion in the main thread
        return e
    return None


def test_extractor_travels_to_another_process_without_its_graph(extractor, two_person_frame):
    import pickle
    extractor.applied(two_person_frame)
    copy = pickle.loads(pickle.dumps(extractor))
    assert copy == extractor and copy._landmarker is None
