"""The repetition-counting job: frames -> everyone in them -> one person -> windows -> cumulative counts.

The job is one chain of components (:meth:`RepetitionCounting.pipeline`).  Its runners cut it in
two places' worth of work:

- the frames posed: at most ``rate`` a second (``Downsample`` in front of the pose extractor; the
  readers skip the frames between before they become images);
- :class:`~.posetracking.TrackingPoseExtractor`: where nearly all the CPU goes; its output for a
  frame depends only on the frames of its segment (``detection_seconds`` of the stream);
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
from .errors import ParameterError
from .params import FLAG, Interval, check
from .pose import CONFIDENCE_THRESHOLD, STRATEGIES, JointsSelector, Pose, PoseSelector
from .posetracking import DETECTION_SECONDS, TrackingPoseExtractor
from .results import CountResult, CountUpdate, FeedTally, RepetitionEvent
from .tracking import PersonTracker
from .temporal import Downsample, SlidingWindow, frame_step, poses_in
from .video import DEFAULT_FPS, Frame, LiveStream, read_video

RATE = None  # every frame posed by default (see the class); 15 halves the cost
STRIDE_SECONDS = 0.5  # a count every half second (see the class)


@dataclass(frozen=True)
class PeopleInFrame:
    """Everyone found in one frame of a feed, with the frame's index and times."""

    index: int
    timestamp: float
    captured_at: float
    people: list[Pose]


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
        return FeedTally.of(state["frames"], state["frames_with_person"], state["count"], last, _seen(state))


def _seen(state: dict[str, Any]) -> tuple[float, float, int]:
    """A session snapshot's (visibility summed, repetitions' confidences summed, repetitions); a
    snapshot from before they were kept: every pose fully seen, no repetition compared."""
    return tuple(state.get("seen", (float(state["frames_with_person"]), 0.0, 0)))


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
        self.frames = self.frames_with_person = 0  # posed
        self.visibility = 0.0  # the selected poses' mean joint visibility, summed
        self.agreement, self.reps = 0.0, 0  # the counted repetitions' confidences, summed, and how many
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
        self.visibility += pose.confidence if pose is not None else 0.0
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
                self.agreement, self.reps = self.agreement + r.confidence, self.reps + 1
        self.count = float(counts[-1])
        captured = self.waiting_since if self.waiting_since is not None else time.time()
        self.waiting_since = None
        people = self.per_person.report() if self.per_person is not None else None
        tally = FeedTally.of(self.frames, self.frames_with_person, self.count, timestamp,
                             (self.visibility, self.agreement, self.reps))
        return [CountUpdate(self.p.feed, index, timestamp, self.count, captured, tuple(repetitions), people,
                            pose_coverage=tally.pose_coverage, reliability=tally.reliability)]

    def snapshot(self) -> dict[str, Any]:
        return {"counting": self.counting.snapshot(), "frames": self.frames,
                "frames_with_person": self.frames_with_person, "count": self.count,
                "recent": np.array(self.recent, dtype=np.float64).reshape(-1, 2),  # (index, timestamp) rows
                "waiting_since": self.waiting_since, "seen": [self.visibility, self.agreement, self.reps],
                "per_person": self.per_person.snapshot() if self.per_person is not None else None}

    def restore(self, state: dict[str, Any]) -> None:
        self.counting.restore(state["counting"])
        self.frames, self.frames_with_person = int(state["frames"]), int(state["frames_with_person"])
        self.count = float(state["count"])
        self.recent = deque(((int(i), float(t)) for i, t in state["recent"]), maxlen=_FRAMES_KEPT)
        self.waiting_since = state["waiting_since"]
        visibility, agreement, reps = _seen(state)
        self.visibility, self.agreement, self.reps = float(visibility), float(agreement), int(reps)
        if self.per_person is not None and state.get("per_person") is not None:
            self.per_person.restore(state["per_person"])


@dataclass
class RepetitionCounting:
    """Settings of the counting job, which both runners take; :meth:`run` counts one stream here.

    ``rate``: at most this many frames a second are posed, one frame in a whole step of the
    source's (None, the default: every frame).  The pose model is nearly all of the job's cost,
    and 15 halves it on 30 fps sources: on the RepCount dev set it counts within 0.01 MAE of every
    frame, but motion that repeats nothing (a flailing pose) is taken for repetitions more often,
    which is why it is not yet the default (``docs/benchmarks.md``).  A source slower than
    ``rate`` has every frame posed.  Every time span is in
    seconds, whatever the frame rate: ``window_seconds`` of poses per counting window, a count
    every ``stride_seconds`` (default half a second, or the window if shorter); the counter refits
    its directions of motion every half second whatever the windows, so a stride that is a
    multiple of that (3 s as well) gives the same counts at the same frames, only fewer of them.
    ``detection_seconds``: the person detector runs on the first frame of every so many seconds,
    and people are tracked in between (0: on every frame; see :class:`TrackingPoseExtractor`).
    ``selected_joints`` or ``ignored_joints`` (joint or group names) put a :class:`JointsSelector`
    after the pose selector: only the joints kept are counted on.

    >>> job = RepetitionCounting(window_seconds=2.0, rate=15).check_params()
    >>> job.windows(30.0)  # poses per window and stride for a 30 fps source posed 15 times a second
    (32, 8)
    >>> RepetitionCounting(stride_seconds=4.0).check_params()
    Traceback (most recent call last):
    ...
    cadence.pipelines.errors.ParameterError: RepetitionCounting: stride_seconds must not exceed the window (3.0 s), got 4.0
    """

    _parameter_constraints = {
        "rate": [Interval(float, 1, 1000), None],
        "window_seconds": [Interval(float, 0.1, 600)], "stride_seconds": [Interval(float, 0.01, 600), None],
        "strategy": PoseSelector._parameter_constraints["strategy"],
        "confidence_threshold": PoseSelector._parameter_constraints["confidence_threshold"],
        "live": [FLAG], "per_person": [FLAG],
        "selected_joints": JointsSelector._parameter_constraints["selected_joints"],
        "ignored_joints": JointsSelector._parameter_constraints["ignored_joints"],
        "detection_seconds": TrackingPoseExtractor._parameter_constraints["detection_seconds"],
    }

    window_seconds: float = 3.0
    stride_seconds: float | None = None
    strategy: str = STRATEGIES[0]
    confidence_threshold: float = CONFIDENCE_THRESHOLD
    live: bool = False
    counter: HumanBodyActionCounter = field(default_factory=HumanBodyActionCounter)
    selected_joints: tuple[str, ...] | None = None
    ignored_joints: tuple[str, ...] | None = None
    per_person: bool = False
    detection_seconds: float = DETECTION_SECONDS
    rate: float | None = RATE

    def check_params(self) -> RepetitionCounting:
        """Raise :class:`ParameterError` naming the first setting out of range (the constraints are
        the components', declared there); return the job."""
        check(self, self._parameter_constraints)
        if self.stride_seconds is not None and self.stride_seconds > self.window_seconds:
            raise ParameterError(type(self).__name__, "stride_seconds", f"must not exceed the window "
                                 f"({self.window_seconds} s), got {self.stride_seconds}")
        if self.selected_joints is not None or self.ignored_joints is not None:
            self._joints().check_params()
        self.counter.check_params()
        return self

    @property
    def window_stride(self) -> float:
        """Seconds between counts."""
        return self.stride_seconds if self.stride_seconds is not None else min(STRIDE_SECONDS, self.window_seconds)

    def frame_step(self, fps: float) -> int:
        """One frame in this many of a source of ``fps`` frames a second is posed (see :func:`frame_step`)."""
        return frame_step(fps, self.rate)

    def analysis_rate(self, fps: float) -> float:
        """Poses a second for a source of ``fps`` frames a second: at most ``rate`` (every frame of a
        slower source, or with ``rate`` None)."""
        return fps / self.frame_step(fps)

    def windows(self, fps: float) -> tuple[int, int]:
        """(poses per window, poses between counts) for a source of ``fps`` frames a second: each a
        whole number of the counter's refits where it can be, so windows end where the counter
        refits anyway and only set how often a count is shown (3 s and 0.5 s at 15 a second: 48
        and 8, at 30: 90 and 15)."""
        rate = self.analysis_rate(fps)
        refit = self.counter.with_params(rate=float(rate)).in_poses().refit
        aligned = lambda seconds: max(1, round(poses_in(seconds, rate) / refit)) * refit  # noqa: E731
        return max(2, aligned(self.window_seconds)), aligned(self.window_stride)

    def downsample(self, fps: float) -> Downsample:
        """Frames of a source of ``fps`` in, at most ``rate`` of them a second out: what is put in
        front of the pose extractor."""
        return Downsample(factor=self.frame_step(fps))

    def extractor(self) -> TrackingPoseExtractor:
        """Frames -> everyone's poses: the person detector every ``detection_seconds``, people
        tracked in between (0: the detector on every frame)."""
        return TrackingPoseExtractor(detection_seconds=self.detection_seconds)

    def selector(self) -> Transformer:
        """Everyone in a frame -> the pose counted on (with only the joints kept, if any are chosen)."""
        selector = PoseSelector(strategy=self.strategy, confidence_threshold=self.confidence_threshold)
        if self.selected_joints is None and self.ignored_joints is None:
            return selector
        return selector.appending(self._joints())

    def _joints(self) -> JointsSelector:
        return JointsSelector(selected_joints=self.selected_joints, ignored_joints=self.ignored_joints)

    def feed_counting(self, feed: str = "", fps: float = DEFAULT_FPS) -> FeedCounting:
        """The stateful rest of the chain for one feed whose source gives ``fps`` frames a second:
        its windows, counter and tracker take their spans in poses at the rate it is posed at."""
        rate = self.analysis_rate(fps)
        tracker = (PersonTracker(confidence_threshold=self.confidence_threshold, rate=rate)
                   if self.per_person else None)
        joints = None if self.selected_joints is None and self.ignored_joints is None else self._joints()
        length, stride = self.windows(fps)
        counter = self.counter.with_params(rate=float(rate))
        window = SlidingWindow(length=length, stride=stride)
        return FeedCounting(self.selector(), window, counter, feed, tracker, joints)

    def pipeline(self, fps: float = DEFAULT_FPS) -> ComposedTemporalTransformer:
        """Frames of a source of ``fps`` frames a second in, cumulative counts out: the whole job
        as one composed component, as the talk composes it (``Downsample`` first)."""
        counting = self.feed_counting(fps=fps)
        return (self.downsample(fps).appending(self.extractor()).appending(counting.selector)
                .appending(counting.window).appending(counting.counter))

    def run(self, frames: Iterable[Frame] | str | os.PathLike, source: str = "stream",
            on_update: Callable[[CountUpdate], None] | None = None,
            on_frame: Callable[[Frame, Pose | None, float], None] | None = None) -> CountResult:
        """Count the repetitions of one person in a stream of frames (or a video file's path),
        in this process, posing at most ``rate`` frames a second: the frames whose index is a
        multiple of :meth:`frame_step` (a reader of cadence's skips the others before they become
        images).

        ``on_update`` receives every count as it comes; ``on_frame`` every frame posed with the
        pose followed on it and the count so far (for drawing).  Raises :class:`NoPersonError` when
        nobody was found in any frame.
        """
        if isinstance(frames, (str, os.PathLike)):  # a path, not the characters of one
            frames, source = read_video(frames), str(frames) if source == "stream" else source
        fps = getattr(frames, "fps", DEFAULT_FPS)
        extractor, counting = self.check_params().extractor(), self.feed_counting(source, fps)
        posing, session = extractor.session(), counting.session()
        step = self.frame_step(fps)
        if isinstance(frames, LiveStream):  # its clock starts at the first read: the models load first
            extractor.prepare()
        result = CountResult(source, source)
        started = time.perf_counter()

        def deliver(updates: list[CountUpdate]) -> None:
            for update in updates:
                result.record(update)
                if on_update:
                    on_update(update)

        readable = hasattr(frames, "frames") and not isinstance(frames, LiveStream)  # a reader skips frames itself
        try:
            for frame in frames.frames(0, step) if readable else frames:
                result.frames += 1  # (a reader's position counts the frames it skipped)
                if frame.index % step:  # the Downsample of :meth:`pipeline`, by the frames' own numbers
                    continue
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
        result.frames = getattr(frames, "position", result.frames)
        result.frames_dropped = getattr(frames, "dropped", 0)
        result.warnings = list(getattr(frames, "warnings", []))
        result.conclude(FeedCounting.tally(session.snapshot()))
        if result.error is not None:
            raise result.error
        return result
