"""The repetition-counting job: frames -> everyone in them -> one person -> windows -> cumulative counts.

The job is one chain of components (:meth:`RepetitionCounting.pipeline`).  Its runners cut it in
two places' worth of work:

- :class:`~.posetracking.TrackingPoseExtractor`: where nearly all the CPU goes; its output for a
  frame depends only on the frames of its segment (``detection_interval`` frames by index);
- :class:`FeedCounting`: a feed's light, stateful rest of the chain (``PoseSelector |
  SlidingWindow | HumanBodyActionCounter``) with the feed's bookkeeping (frames seen, frames with
  a person, which frame and capture time each count belongs to).  It is a temporal transformer, so
  its session pushes, finishes, snapshots and restores as a whole.

:meth:`RepetitionCounting.run` runs both in this process, for one stream.  The Ray actor pipeline
(``cadence.cluster.counting.pipeline``) runs the extractor in a pool of pose actors (a file's batches are
whole segments, so any actor poses any batch; a live feed's batches go to one actor) and the FeedCounting
sessions of many feeds in one counting actor.  Both end with the same :class:`CountResult`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import ComposedTemporalTransformer, TemporalSession, TemporalTransformer, Transformer
from .counting import HumanBodyActionCounter
from .errors import CadenceError, NoPersonError, ParameterError
from .params import FLAG, Interval, check
from .pose import CONFIDENCE_THRESHOLD, STRATEGIES, JointsSelector, Pose, PoseSelector
from .posetracking import DETECTION_INTERVAL, TrackingPoseExtractor
from .tracking import PersonTracker
from .temporal import SlidingWindow
from .video import Frame, LiveStream, read_video

STRIDE = 15  # a count every half second at 30 fps (see the class)


@dataclass(frozen=True)
class PeopleInFrame:
    """Everyone found in one frame of a feed, with the frame's index and times."""

    index: int
    timestamp: float
    captured_at: float
    people: list[Pose]


@dataclass(frozen=True)
class RepetitionEvent:
    """One counted repetition of a feed: its number, the frames (and seconds into the feed) where its
    motion began and ended, and a confidence in [0, 1] (how alike its swings were with the ones
    that confirmed them; 0.5 where a stream was too short to compare)."""

    feed: str
    index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    confidence: float

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    def to_dict(self) -> dict:
        return {"index": self.index, "start_frame": self.start_frame, "end_frame": self.end_frame,
                "start_time": round(self.start_time, 3), "end_time": round(self.end_time, 3),
                "duration": round(self.duration, 3), "confidence": round(self.confidence, 3)}


@dataclass(frozen=True)
class CountUpdate:
    """The cumulative count after a window ending at frame ``frame_index`` of ``feed``, with the
    repetitions completed since the last update (a repetition is counted once it is confirmed, a
    little after it ends).

    ``captured_at`` is when the oldest frame this update is the first to count was read: the
    update's capture-to-count latency starts there.
    """

    feed: str
    frame_index: int
    timestamp: float
    count: float
    captured_at: float = 0.0
    repetitions: tuple[RepetitionEvent, ...] = ()
    people: dict[str, float] | None = None  # with per-person counting: each tracked person's count
    node: str | None = None  # on a Ray cluster: the id of the node that counted it (the last, if it moved)


@dataclass(frozen=True)
class FeedTally:
    """What a feed's counting session has seen: read from a snapshot by :meth:`FeedCounting.tally`."""

    frames: int
    frames_with_person: int
    count: float
    last_timestamp: float


class FeedCounting(TemporalTransformer):
    """One feed's stateful part of the job: :class:`PeopleInFrame` in, :class:`CountUpdate` out.

    Each frame's people go through ``selector`` (a :class:`PoseSelector`, perhaps followed by a
    :class:`JointsSelector`); the selected pose (None when nobody qualifies)
    through ``window`` and ``counter``.  Every count belongs to the frame whose push completed its
    window (at the end, to the last frame).

    With a ``tracker`` (:class:`~.tracking.PersonTracker`), everyone in view is also counted on
    their own: each tracked person's poses (through ``joints``, a :class:`JointsSelector`, when
    given) go through a window and counter of their own, and every update carries each person's
    count (``people``).  The selected person's count stays the headline ``count``.
    """

    def __init__(self, selector: Transformer, window: SlidingWindow, counter: HumanBodyActionCounter,
                 feed: str = "", tracker: PersonTracker | None = None, joints: Transformer | None = None):
        self.selector = selector
        self.window = window
        self.counter = counter
        self.feed = feed
        self.tracker = tracker
        self.joints = joints

    def session(self) -> TemporalSession:
        return _FeedCountingSession(self)

    @staticmethod
    def tally(state: dict[str, Any]) -> FeedTally:
        """The tally in a state returned by the session's ``snapshot``."""
        last = float(state["recent"][-1][1]) if len(state["recent"]) else 0.0
        return FeedTally(state["frames"], state["frames_with_person"], state["count"], last)


RESULTS_KEPT = 10_000  # latencies and repetitions a CountResult keeps (the latest; 10,000 to 20,000)
_FRAMES_KEPT = 4096  # (index, timestamp) of the recent frames, to place repetitions reported late
PEOPLE_KEPT = 32  # people no longer in view whose counts are still reported (the latest, if they counted)


class _PerPerson:
    """Everyone in view tracked and counted on their own (see :class:`FeedCounting`)."""

    def __init__(self, p: FeedCounting):
        self.p = p
        self.tracking = p.tracker.session()
        self.sessions: dict[int, TemporalSession] = {}
        self.counts: dict[int, float] = {}

    def _session(self) -> TemporalSession:
        return self.p.window.appending(self.p.counter).session()

    def push(self, people: list[Pose]) -> None:
        (tracked,) = self.tracking.push(people)
        for person in tracked:
            if person not in self.sessions:
                self.sessions[person] = self._session()
                self.counts[person] = 0.0
        for person, session in self.sessions.items():
            pose = tracked.get(person)
            if pose is not None and self.p.joints is not None:
                pose = self.p.joints.applied(pose)
            self._take(person, session.push(pose))
        for person in set(self.sessions) - set(self.tracking.tracked):  # gone: their last count stands
            self._take(person, self.sessions.pop(person).finish())
        gone = [q for q in self.counts if q not in self.sessions]
        for person in gone[:-PEOPLE_KEPT] + [q for q in gone[-PEOPLE_KEPT:] if self.counts[q] < 0.5]:
            del self.counts[person]

    def finish(self) -> None:
        for person, session in self.sessions.items():
            self._take(person, session.finish())

    def _take(self, person: int, counts: list) -> None:
        if counts:
            self.counts[person] = float(counts[-1])

    def report(self) -> dict[str, float]:
        return {str(person): round(count, 3) for person, count in self.counts.items()}

    def snapshot(self) -> dict[str, Any]:
        return {"tracking": self.tracking.snapshot(),
                "sessions": {str(q): s.snapshot() for q, s in self.sessions.items()},
                "counts": {str(q): c for q, c in self.counts.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.tracking.restore(state["tracking"])
        self.sessions = {}
        for person, session_state in state["sessions"].items():
            self.sessions[int(person)] = session = self._session()
            session.restore(session_state)
        self.counts = {int(q): float(c) for q, c in state["counts"].items()}


class _FeedCountingSession(TemporalSession):
    def __init__(self, p: FeedCounting):
        self.p = p
        self.counting = p.window.appending(p.counter).session()
        self.frames = self.frames_with_person = 0
        self.count = 0.0
        self.recent: deque = deque(maxlen=_FRAMES_KEPT)  # (index, timestamp) by position in the stream
        self.waiting_since: float | None = None  # read time of the oldest frame no update has counted yet
        self.per_person = _PerPerson(p) if p.tracker is not None else None

    def push(self, frame: PeopleInFrame) -> list[CountUpdate]:
        if self.per_person is not None:
            self.per_person.push(frame.people)
        pose = self.p.selector.applied(frame.people)
        self.frames += 1
        self.frames_with_person += pose is not None
        self.recent.append((frame.index, frame.timestamp))
        if self.waiting_since is None:
            self.waiting_since = frame.captured_at
        return self._updates(self.counting.push(pose))

    def finish(self) -> list[CountUpdate]:
        if self.per_person is not None:
            self.per_person.finish()
        return self._updates(self.counting.finish())

    def _at(self, position: int) -> tuple[int, float]:
        """(frame index, timestamp) of the frame at a position in the stream (the oldest kept, if older)."""
        first = self.frames - len(self.recent)
        return self.recent[min(max(position - first, 0), len(self.recent) - 1)]

    def _updates(self, counts: list[float]) -> list[CountUpdate]:
        if not counts or not self.recent:
            return []
        index, timestamp = self.recent[-1]
        repetitions = []
        for count in counts:  # (several only at the end, all of them at the last frame)
            for r in getattr(count, "repetitions", ()):
                (start, start_time), (end, end_time) = self._at(r.start), self._at(r.end)
                repetitions.append(RepetitionEvent(self.p.feed, r.index, start, end, start_time, end_time,
                                                   r.confidence))
        self.count = float(counts[-1])
        captured = self.waiting_since if self.waiting_since is not None else time.time()
        self.waiting_since = None
        people = self.per_person.report() if self.per_person is not None else None
        return [CountUpdate(self.p.feed, index, timestamp, self.count, captured, tuple(repetitions), people)]

    def snapshot(self) -> dict[str, Any]:
        return {"counting": self.counting.snapshot(), "frames": self.frames,
                "frames_with_person": self.frames_with_person, "count": self.count,
                "recent": np.array(self.recent, dtype=np.float64).reshape(-1, 2),  # (index, timestamp) rows
                "waiting_since": self.waiting_since,
                "per_person": self.per_person.snapshot() if self.per_person is not None else None}

    def restore(self, state: dict[str, Any]) -> None:
        self.counting.restore(state["counting"])
        self.frames, self.frames_with_person = int(state["frames"]), int(state["frames_with_person"])
        self.count = float(state["count"])
        self.recent = deque(((int(i), float(t)) for i, t in state["recent"]), maxlen=_FRAMES_KEPT)
        self.waiting_since = state["waiting_since"]
        if self.per_person is not None and state.get("per_person") is not None:
            self.per_person.restore(state["per_person"])


@dataclass
class CountResult:
    """One counted feed, as either runner reports it; :meth:`summary` is its JSON."""

    feed: str
    source: str
    count: float = 0.0
    frames: int = 0
    frames_with_person: int = 0
    frames_dropped: int = 0
    seconds: float = 0.0
    processing_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    max_queue_depth: dict[str, int] = field(default_factory=dict)
    recoveries: int = 0
    error: CadenceError | None = None
    warnings: list[str] = field(default_factory=list)  # counted, but something is worth knowing
    repetitions: list[RepetitionEvent] = field(default_factory=list, repr=False)
    people: dict[str, float] | None = None  # with per-person counting: each tracked person's count
    node: str | None = None  # on a Ray cluster: the id of the node that counted it (the last, if it moved)

    def record(self, update: CountUpdate) -> None:
        self.count = update.count
        self.people = update.people
        self.latencies.append(time.time() - update.captured_at)
        self.repetitions += update.repetitions
        for recent in (self.latencies, self.repetitions):  # a feed may run for months: keep the latest
            if len(recent) > 2 * RESULTS_KEPT:
                del recent[:-RESULTS_KEPT]

    def resume(self, tally: FeedTally) -> None:
        """A feed resumed from a snapshot: its count and frames so far are the snapshot's."""
        self.count, self.frames = tally.count, tally.frames

    def conclude(self, tally: FeedTally) -> None:
        """The stream ended: take the session's tally, and fail a stream in which nobody was found."""
        self.frames, self.frames_with_person, self.count = tally.frames, tally.frames_with_person, tally.count
        # the last frame lasts one frame interval too
        self.seconds = tally.last_timestamp * self.frames / (self.frames - 1) if self.frames > 1 else 0.0
        if self.frames and not self.frames_with_person:
            self.error = NoPersonError(self.source, f"no person was detected in any of its {self.frames} frames")

    def summary(self) -> dict:
        if self.error is not None:
            failed = {"source": self.source, "error": str(self.error)}
            return failed | ({"count_so_far": round(self.count, 3), "frames": self.frames} if self.frames else {})
        warnings = {"warnings": self.warnings} if self.warnings else {}
        people = {"people": self.people} if self.people is not None else {}
        node = {"node": self.node, "recoveries": self.recoveries} if self.node is not None else {}
        fps = self.frames / self.processing_seconds if self.processing_seconds > 0 else None
        latency = np.percentile(self.latencies, [50, 95]).round(3).tolist() if self.latencies else [None, None]
        return {"source": self.source, "count": round(self.count, 3), "frames": self.frames,
                "seconds": round(self.seconds, 3), "frames_with_person": self.frames_with_person,
                "processing_seconds": round(self.processing_seconds, 3),
                "frames_per_second": None if fps is None else round(fps, 2), "frames_dropped": self.frames_dropped,
                "latency_p50_seconds": latency[0], "latency_p95_seconds": latency[1],
                "repetitions": [r.to_dict() for r in self.repetitions]} | people | node | warnings


@dataclass
class RepetitionCounting:
    """Settings of the counting job, which both runners take; :meth:`run` counts one stream here.

    ``stride`` defaults to 15 frames, for files and live feeds alike: counts come every half
    second.  The counter refits its directions of motion every 15 frames whatever the windows, so
    a stride that is a multiple of 15 (90 as well) gives the same counts at the same frames, only
    fewer of them.  ``detection_interval``: the person detector runs on the first frame of every
    so many frames, and people are tracked in between (1: on every frame; see
    :class:`TrackingPoseExtractor`).  ``selected_joints`` or ``ignored_joints`` (joint or group names) put a
    :class:`JointsSelector` after the pose selector: only the joints kept are counted on.

    >>> RepetitionCounting(window=60).check_params().window_stride
    15
    >>> RepetitionCounting(stride=120).check_params()
    Traceback (most recent call last):
    ...
    cadence.pipelines.errors.ParameterError: RepetitionCounting: stride must not exceed the window (90), got 120
    """

    _parameter_constraints = {
        "window": [Interval(int, 2)], "stride": [Interval(int, 1), None],
        "strategy": PoseSelector._parameter_constraints["strategy"],
        "confidence_threshold": PoseSelector._parameter_constraints["confidence_threshold"],
        "live": [FLAG], "per_person": [FLAG],
        "selected_joints": JointsSelector._parameter_constraints["selected_joints"],
        "ignored_joints": JointsSelector._parameter_constraints["ignored_joints"],
        "detection_interval": TrackingPoseExtractor._parameter_constraints["detection_interval"],
    }

    window: int = 90
    stride: int | None = None
    strategy: str = STRATEGIES[0]
    confidence_threshold: float = CONFIDENCE_THRESHOLD
    live: bool = False
    counter: HumanBodyActionCounter = field(default_factory=HumanBodyActionCounter)
    selected_joints: tuple[str, ...] | None = None
    ignored_joints: tuple[str, ...] | None = None
    per_person: bool = False
    detection_interval: int = DETECTION_INTERVAL

    def check_params(self) -> RepetitionCounting:
        """Raise :class:`ParameterError` naming the first setting out of range (the constraints are
        the components', declared there); return the job."""
        check(self, self._parameter_constraints)
        if self.stride is not None and self.stride > self.window:
            raise ParameterError(type(self).__name__, "stride", f"must not exceed the window ({self.window}), "
                                                                f"got {self.stride}")
        if self.selected_joints is not None or self.ignored_joints is not None:
            self._joints().check_params()
        self.counter.check_params()
        return self

    @property
    def window_stride(self) -> int:
        return self.stride if self.stride is not None else min(STRIDE, self.window)

    def extractor(self) -> TrackingPoseExtractor:
        """Frames -> everyone's poses: the person detector every ``detection_interval`` frames,
        people tracked in between (1: the detector on every frame)."""
        return TrackingPoseExtractor(detection_interval=self.detection_interval)

    def selector(self) -> Transformer:
        """Everyone in a frame -> the pose counted on (with only the joints kept, if any are chosen)."""
        selector = PoseSelector(strategy=self.strategy, confidence_threshold=self.confidence_threshold)
        if self.selected_joints is None and self.ignored_joints is None:
            return selector
        return selector.appending(self._joints())

    def _joints(self) -> JointsSelector:
        return JointsSelector(selected_joints=self.selected_joints, ignored_joints=self.ignored_joints)

    def feed_counting(self, feed: str = "") -> FeedCounting:
        tracker = PersonTracker(confidence_threshold=self.confidence_threshold) if self.per_person else None
        joints = None if self.selected_joints is None and self.ignored_joints is None else self._joints()
        return FeedCounting(self.selector(), SlidingWindow(length=self.window, stride=self.window_stride),
                            self.counter, feed, tracker, joints)

    def pipeline(self) -> ComposedTemporalTransformer:
        """Frames in, cumulative counts out: the whole job as one composed component."""
        counting = self.feed_counting()
        return self.extractor().appending(counting.selector).appending(counting.window).appending(counting.counter)

    def run(self, frames: Iterable[Frame] | str | os.PathLike, source: str = "stream",
            on_update: Callable[[CountUpdate], None] | None = None,
            on_frame: Callable[[Frame, Pose | None, float], None] | None = None) -> CountResult:
        """Count the repetitions of one person in a stream of frames (or a video file's path),
        in this process.

        ``on_update`` receives every count as it comes; ``on_frame`` every frame with the pose
        followed on it and the count so far (for drawing).  Raises :class:`NoPersonError` when
        nobody was found in any frame.
        """
        if isinstance(frames, (str, os.PathLike)):  # a path, not the characters of one
            frames, source = read_video(frames), str(frames) if source == "stream" else source
        extractor, counting = self.check_params().extractor(), self.feed_counting(source)
        posing, session = extractor.session(), counting.session()
        if isinstance(frames, LiveStream):  # its clock starts at the first read: the models load first
            extractor.prepare()
        result = CountResult(source, source)
        started = time.perf_counter()

        def deliver(updates: list[CountUpdate]) -> None:
            for update in updates:
                result.record(update)
                if on_update:
                    on_update(update)

        try:
            for frame in frames:
                (people,) = posing.push(frame)
                deliver(session.push(PeopleInFrame(frame.index, frame.timestamp, frame.captured_at, people)))
                if on_frame:
                    on_frame(frame, counting.selector.applied(people), result.count)
            deliver(session.finish())
        finally:
            if isinstance(frames, LiveStream):  # also when interrupted: no reader left running
                frames.close()
            posing.finish()
            extractor.close()
            result.processing_seconds = time.perf_counter() - started
        result.frames_dropped = getattr(frames, "dropped", 0)
        result.warnings = list(getattr(frames, "warnings", []))
        result.conclude(FeedCounting.tally(session.snapshot()))
        if result.error is not None:
            raise result.error
        return result
