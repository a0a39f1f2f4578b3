"""Pose extraction that runs the person detector every few frames and tracks people in between.

MediaPipe finds poses with two models: a person detector over the whole frame (about a third of a
one-person frame's cost on a CPU) and a landmark model run once per person on that person's region.
:class:`~.pose.HumanBodyPoseExtractor` runs both on every frame.  Between two frames people move
little, so the region a person's landmarks give on one frame is a good region for the next: that is
how MediaPipe's VIDEO mode tracks, running the detector only while it follows fewer people than it
was asked for.

:class:`TrackingPoseExtractor` cuts the stream into **segments** of ``detection_seconds`` of the
stream by frame time (the frames whose ``timestamp // detection_seconds`` is the same; a bare image
is taken to come 1/30 s after the one before), so whatever frame rate the stream has, and however
many of its frames are posed, the detector runs about once a second:

1. The segment's first frame gets the full extraction (detector, then up to
   ``maximum_person_count`` people): exactly what ``HumanBodyPoseExtractor`` gives for it.
2. The rest of the segment is tracked by a VIDEO-mode landmarker asked for as many people as step 1
   found (one when it found nobody, so that someone walking into an empty view is found at once).
   A person lost in between makes MediaPipe run its detector again on the next frames, until it
   follows as many people as it was asked for.
3. A new person among others is found at the next segment's start: within ``detection_seconds``.
4. A cut (an edited video going to another shot, another person, a jump in time) starts a segment
   at once: the regions followed belong to the shot before.  A frame's shot is the one its reader
   numbered (:attr:`~.video.Frame.shot`, see :class:`~.video.Shots`); bare images are numbered
   here.  A cut seen where there is none costs one detection.

The trackers are reset at each segment start (one blank frame empties the regions they follow; this
was checked to give exactly a new landmarker's output), so **a frame's poses depend only on the
frames of its segment**.  Any process can pose a batch that holds whole segments, repeatably, which
is what lets the Ray pose pool share one video's batches (cut by :func:`segment_batches`) and redo
a dead actor's calls exactly.  A
session that starts or resumes mid-segment starts a segment at its first frame.

The landmarkers are MediaPipe graphs: they live in the extractor (one pool per extractor, lent to its
sessions a segment at a time), are made on first use, and belong to the thread that made them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from .base import TemporalSession, TemporalTransformer
from .params import Interval
from .pose import (
    MAXIMUM_PERSON_COUNT,
    MINIMUM_CONFIDENCE,
    HumanBodyPoseExtractor,
    PerThread,
    Pose,
    in_shot,
    new_landmarker,
    mediapipe_image,
    poses_found,
    rgb_image,
)
from .shots import Shots
from .video import DEFAULT_FPS, Frame

DETECTION_SECONDS = 1.0  # a new person is found within a second, whatever the frame or analysis rate
_BLANK = np.zeros((64, 64, 3), np.uint8)
_STEP_MS = 33  # the trackers' own clock: their output does not depend on it, and it always increases


class _Tracker:
    """One VIDEO-mode landmarker following up to ``people`` people, with its own increasing clock.

    Following one person, MediaPipe smooths the landmarks (a filter that a blank frame resets) and
    their visibility (a low-pass filter, ``v = 0.1 * raw + 0.9 * v_before``, that nothing resets).
    The visibility given here is the raw one, recovered from the filter's known state: as in IMAGE
    mode, and the same whatever this landmarker followed before (to about 1e-6).
    """

    VISIBILITY_ALPHA = 0.1  # MediaPipe's pose graph: VisibilitySmoothingCalculator, low_pass_filter alpha

    def __init__(self, people: int, minimum_confidence: float):
        self.people = people
        self.landmarker = new_landmarker("VIDEO", people, minimum_confidence)
        self.clock = 0
        self.visibility: np.ndarray | None = None  # the one-person visibility filter's state

    def poses(self, rgb: np.ndarray) -> list[Pose]:
        self.clock += _STEP_MS
        poses = poses_found(self.landmarker.detect_for_video(mediapipe_image(rgb), self.clock))
        if self.people == 1 and poses:
            smoothed = poses[0].keypoints[:, 3].astype(np.float64)
            raw = smoothed if self.visibility is None else \
                (smoothed - (1 - self.VISIBILITY_ALPHA) * self.visibility) / self.VISIBILITY_ALPHA
            self.visibility = smoothed
            keypoints = poses[0].keypoints.copy()
            keypoints[:, 3] = np.clip(raw, 0.0, 1.0)
            poses = [Pose(keypoints)]
        return poses

    def reset(self) -> None:
        """Forget the people followed: on a blank frame the landmark model finds nobody."""
        self.poses(_BLANK)

    def close(self) -> None:
        self.landmarker.close()


class TrackingPoseExtractor(TemporalTransformer):
    """Frames in, everyone's poses out (a list of :class:`Pose` per frame, as
    :class:`~.pose.HumanBodyPoseExtractor` gives): the person detector runs on the first frame of
    every ``detection_seconds`` of the stream and people are tracked in between (see the module).

    ``detection_seconds=0`` runs the detector on every frame, as ``HumanBodyPoseExtractor`` does.
    """

    IDLE_KEPT = 2

    _parameter_constraints = {**HumanBodyPoseExtractor._parameter_constraints,
                              "detection_seconds": [Interval(float, 0, 600)]}

    def __init__(self, *, maximum_person_count: int = MAXIMUM_PERSON_COUNT,
                 minimum_confidence: float = MINIMUM_CONFIDENCE, detection_seconds: float = DETECTION_SECONDS):
        self.maximum_person_count = maximum_person_count
        self.minimum_confidence = minimum_confidence
        self.detection_seconds = detection_seconds
        self._detector: HumanBodyPoseExtractor | None = None
        self._idle = _idle_trackers()  # per thread: trackers not lent to a session, the latest given back last

    def session(self) -> TemporalSession:
        self.check_params()
        return _TrackingSession(self)

    def prepare(self, people: tuple[int, ...] = (1,)) -> None:
        """Build the detector and a tracker for each count of ``people`` now, not at the first frames."""
        self.detector().applied(_BLANK)
        for tracker in [self._borrow(n) for n in people]:
            self._give_back(tracker)

    def detector(self) -> HumanBodyPoseExtractor:
        if self._detector is None:
            self._detector = HumanBodyPoseExtractor(maximum_person_count=self.maximum_person_count,
                                                    minimum_confidence=self.minimum_confidence)
        return self._detector

    def _borrow(self, people: int) -> _Tracker:
        idle = self._idle.get()
        lent = next((t for t in reversed(idle) if t.people == people), None)
        if lent is None:
            lent = _Tracker(people, self.minimum_confidence)
        else:
            idle.remove(lent)
        lent.reset()
        return lent

    def _give_back(self, tracker: _Tracker) -> None:
        """Keep it for the next segment; beyond ``IDLE_KEPT`` idle trackers (about 90 MB each), close
        the one given back longest ago (a crowd seen once costs nothing afterwards)."""
        idle = self._idle.get()
        idle.append(tracker)
        while len(idle) > self.IDLE_KEPT:
            idle.pop(0).close()

    def close(self) -> None:
        """Close every MediaPipe graph this extractor made (sessions still running make new ones)."""
        if self._detector is not None:
            self._detector.close()
        self._idle.close()

    def __getstate__(self) -> dict:
        # MediaPipe graphs cannot travel to another process; the copy makes its own on first use.
        return {**self.__dict__, "_detector": None, "_idle": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._idle = _idle_trackers()


def _idle_trackers() -> PerThread:
    """Each thread's idle trackers (a tracker is a MediaPipe graph: it stays on its thread)."""
    return PerThread(list, lambda trackers: [tracker.close() for tracker in trackers])


class _TrackingSession(TemporalSession):
    def __init__(self, extractor: TrackingPoseExtractor):
        self.extractor = extractor
        self.segment: int | None = None  # timestamp // detection_seconds of the segment under way
        self.tracker: _Tracker | None = None  # lent for the rest of the segment
        self.pushed = 0  # frames seen, the index of a bare image
        self.shots = Shots()  # to see cuts between bare images (a Frame carries its shot)
        self.shot = -1  # the shot of the segment under way

    def push(self, frame: Frame | np.ndarray) -> list:
        timestamp = frame.timestamp if isinstance(frame, Frame) else self.pushed / DEFAULT_FPS
        self.pushed += 1
        if self.extractor.detection_seconds == 0:
            return [self.extractor.detector().applied(frame)]
        rgb = rgb_image(frame, "TrackingPoseExtractor")
        shot = frame.shot if isinstance(frame, Frame) else self.shots.of(rgb)
        segment = segment_of(timestamp, self.extractor.detection_seconds)
        if segment != self.segment or shot != self.shot:
            self._release()
            self.segment, self.shot = segment, shot
            people = self.extractor.detector().poses_in(rgb)
            self.tracker = self.extractor._borrow(max(1, len(people)))
            return [in_shot(people, frame)]
        return [in_shot(self.tracker.poses(rgb), frame)]

    def _release(self) -> None:
        if self.tracker is not None:
            self.extractor._give_back(self.tracker)
            self.tracker = None

    def finish(self) -> list:
        """Hand the tracker back; a next frame starts a segment."""
        self._release()
        self.segment, self.shots, self.shot = None, Shots(), -1
        return []

    def snapshot(self) -> dict:
        """Nothing: MediaPipe's tracked regions cannot be saved.  A restored session starts a segment
        at its next frame, and gives exactly the uninterrupted output from the next segment on."""
        return {}

    def restore(self, state: dict) -> None:
        self.finish()


def segment_of(timestamp: float, detection_seconds: float) -> int:
    """The pose-tracking segment of a frame ``timestamp`` seconds into its stream (see the module;
    with ``detection_seconds`` 0 every frame is detected on its own, and each is a segment)."""
    if detection_seconds == 0:
        return math.floor(timestamp * 1e6)
    return math.floor(timestamp / detection_seconds + 1e-9)


def segment_batches(frames: Iterable[Frame], size: int, detection_seconds: float) -> Iterator[list[Frame]]:
    """The frames in batches of whole pose-tracking segments, each of at least ``size`` frames (but
    the last): any process poses such a batch exactly as the whole stream would be posed."""
    batch: list[Frame] = []
    for frame in frames:
        if len(batch) >= size and (segment_of(frame.timestamp, detection_seconds)
                                   != segment_of(batch[-1].timestamp, detection_seconds)):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch
