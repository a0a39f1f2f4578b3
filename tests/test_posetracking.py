"""TrackingPoseExtractor on real clips through real MediaPipe: it finds the people the detector on
every frame finds, a frame's poses depend only on its segment, and a newcomer is found in time."""

from __future__ import annotations

import numpy as np
import pytest
from cadence.pipelines import HumanBodyPoseExtractor, TrackingPoseExtractor, read_video
from cadence.pipelines.posetracking import DETECTION_SECONDS, segment_batches
from cadence.pipelines.shots import numbered_shots
from cadence.pipelines.video import Frame

from .helpers import cadence, video

pytestmark = pytest.mark.mediapipe

K = round(DETECTION_SECONDS * 30)  # frames of a 30 fps clip per segment


def _frames(name: str, first_index: int = 0) -> list[Frame]:
    return [Frame(f.image, first_index + i, (first_index + i) / 30) for i, f in enumerate(read_video(video(name)))]


def _close(a: list, b: list, tolerance: float = 1e-5) -> bool:
    """The same people with the same joints; visibility to ``tolerance`` (recovered from MediaPipe's
    filter, see _Tracker), positions exactly."""
    return len(a) == len(b) and all(
        np.array_equal(p.keypoints[:, :3], q.keypoints[:, :3])
        and np.allclose(p.keypoints[:, 3], q.keypoints[:, 3], atol=tolerance) for p, q in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def jumping_jacks() -> list[Frame]:
    return _frames("jumpingjack_correct_001.mp4")


def test_both_people_of_a_group_workout_are_found_wherever_the_detector_finds_them(jumping_jacks):
    everywhere = HumanBodyPoseExtractor()
    detected = [len(everywhere.applied(f)) for f in jumping_jacks]
    tracked = [len(people) for people in TrackingPoseExtractor().applied(jumping_jacks)]
    both = [t >= 2 for d, t in zip(detected, tracked, strict=True) if d >= 2]
    assert len(both) > 0.9 * len(jumping_jacks)
    assert np.mean(both) >= 0.98  # issue 17: within 2 %
    assert max(tracked) <= 2


def test_a_frame_depends_only_on_its_segment_and_runs_repeat(jumping_jacks):
    extractor = TrackingPoseExtractor()
    whole = list(extractor.applied(jumping_jacks))
    again = list(extractor.applied(jumping_jacks))  # trackers lent again, after another stream
    assert all(_close(a, b) for a, b in zip(whole, again, strict=True))
    alone = list(TrackingPoseExtractor().applied(jumping_jacks[K:2 * K]))  # one segment, by another extractor
    assert all(_close(a, b) for a, b in zip(whole[K:2 * K], alone, strict=True))
    # a segment starts with exactly what the detector on every frame gives
    assert _close(whole[K], HumanBodyPoseExtractor().applied(jumping_jacks[K]), tolerance=0)


def test_a_restored_session_starts_a_segment_and_is_exact_from_the_next_one(jumping_jacks):
    extractor = TrackingPoseExtractor()
    whole = list(extractor.applied(jumping_jacks))
    session = extractor.session()
    for frame in jumping_jacks[:K + 10]:
        session.push(frame)
    resumed = extractor.session()
    resumed.restore(session.snapshot())
    after = [people for frame in jumping_jacks[K + 10:] for people in resumed.push(frame)]
    assert len(after[0]) == len(whole[K + 10])  # mid-segment: detected afresh, the same people
    assert all(_close(a, b) for a, b in zip(after[K - 10:], whole[2 * K:], strict=True))


def test_every_frame_detected_is_the_plain_extractor(jumping_jacks):
    frames = jumping_jacks[:12]
    plain = HumanBodyPoseExtractor()
    tracked = list(TrackingPoseExtractor(detection_seconds=0).applied(frames))
    assert all(_close(a, plain.applied(f), tolerance=0) for a, f in zip(tracked, frames, strict=True))


def test_a_group_coming_into_view_is_found_within_the_detection_interval():
    """A clip composed from two, one dissolving into the other over 20 frames (no cut: each frame
    differs little from the one before): one person squatting, then the two-person jumping jacks."""
    start, steps = 70, 20
    squat, group = _frames("squat_correct_010.mp4"), _frames("jumpingjack_correct_001.mp4")
    blend = [Frame(np.round((1 - a) * s.image + a * g.image).astype(np.uint8), start + i, (start + i) / 30)
             for i, (s, g, a) in enumerate(zip(squat[start:], group, np.arange(1, steps + 1) / steps))]
    rest = [Frame(g.image, start + steps + i, (start + steps + i) / 30) for i, g in enumerate(group[steps:])]
    frames = list(numbered_shots(squat[:start] + blend + rest))  # as a reader numbers them
    people = [len(p) for p in TrackingPoseExtractor().applied(frames)]
    assert max(people[:start]) == 1
    first_two = next(i for i, n in enumerate(people) if n == 2)
    assert start <= first_two <= start + steps + K
    assert np.mean(np.array(people[start + steps + K:]) == 2) > 0.9


def test_a_cut_starts_a_segment_at_once():
    """An edited video: a squat clip cut mid-segment into another person's.  The frame after the cut
    is posed by the detector, and from it on the output is a new session's started there."""
    cut = 75
    first = _frames("squat_correct_007.mp4")
    assert len(first) == cut and cut % K
    frames = list(numbered_shots(first + _frames("squat_correct_010.mp4", first_index=cut)))  # as a reader does
    first, second = frames[:cut], frames[cut:]
    extractor = TrackingPoseExtractor()
    whole = list(extractor.applied(first + second))
    assert _close(whole[cut], HumanBodyPoseExtractor().applied(second[0]), tolerance=0)
    session = extractor.session()
    after = [p for frame in second[:K] for p in session.push(frame)]
    assert all(_close(a, b) for a, b in zip(whole[cut:cut + K], after, strict=True))


def test_a_bad_detection_interval_is_refused_naming_it():
    with pytest.raises(ValueError, match="detection_seconds"):
        list(TrackingPoseExtractor(detection_seconds=-1).applied([np.zeros((8, 8, 3), np.uint8)]))


def test_the_command_line_chooses_the_detection_interval():
    import json

    from cadence.pipelines.repetitions import RepetitionCounting

    clip = video("squat_correct_007.mp4")
    for every in (0, 1):
        done = cadence("count", str(clip), "--runner", "inline", "--json", "--detect-every", str(every))
        assert done.returncode == 0, done.stderr
        expected = RepetitionCounting(detection_seconds=every).run(read_video(clip)).count
        assert json.loads(done.stdout.splitlines()[-1])["count"] == pytest.approx(expected, abs=1e-3)
    refused = cadence("count", str(clip), "--detect-every", "-1")
    assert refused.returncode == 2 and "--detect-every" in refused.stderr


def test_detection_is_per_second_whatever_the_frame_rate_or_the_frames_posed():
    """Segments are seconds of the stream: a 60 fps stream posed every fourth frame and a 24 fps
    one posed every other frame both start one a second, and batches cut by segment_batches hold
    whole ones."""
    for fps, step in ((60, 4), (24, 2), (30, 1)):
        frames = [Frame(np.zeros((2, 2, 3), np.uint8), i, i / fps) for i in range(0, 5 * fps, step)]
        batches = list(segment_batches(frames, 3, DETECTION_SECONDS))
        starts = [b[0].timestamp for b in batches]
        assert starts == pytest.approx([0, 1, 2, 3, 4]), fps  # each at least 3 frames: one segment each
        assert sum(map(len, batches)) == len(frames)
    frames = [Frame(np.zeros((2, 2, 3), np.uint8), i, i / 30) for i in range(0, 300, 2)]
    assert [len(b) for b in segment_batches(frames, 20, DETECTION_SECONDS)] == [30] * 5  # two segments each
