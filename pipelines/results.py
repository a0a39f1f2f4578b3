"""What counting a feed reports: each :class:`RepetitionEvent`, every :class:`CountUpdate`, and
the :class:`CountResult` either runner ends with (its :meth:`~CountResult.summary` is the JSON)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import CadenceError, NoPersonError

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
    pose_coverage: float | None = None  # so far (see FeedTally)
    reliability: float | None = None


@dataclass(frozen=True)
class FeedTally:
    """What a feed's counting session has seen (``frames``: those posed): read from a snapshot by
    :meth:`FeedCounting.tally`.  ``visibility``: the mean joint visibility of the poses counted on;
    ``agreement``: the counted repetitions' mean confidence (1 with fewer than two: nothing to
    compare them with)."""

    frames: int
    frames_with_person: int
    count: float
    last_timestamp: float
    visibility: float = 1.0
    agreement: float = 1.0

    @classmethod
    def of(cls, frames: int, frames_with_person: int, count: float, last_timestamp: float,
           seen: tuple[float, float, int]) -> FeedTally:
        """From a session's sums: ``seen`` = (the poses' visibility summed, the repetitions'
        confidences summed, how many repetitions)."""
        visibility, agreement, reps = seen
        return cls(frames, frames_with_person, count, last_timestamp, visibility / max(1, frames_with_person),
                   agreement / reps if reps >= 2 else 1.0)

    @property
    def pose_coverage(self) -> float:
        """The share of the frames posed with a confident person in them."""
        return self.frames_with_person / self.frames if self.frames else 0.0

    @property
    def reliability(self) -> float:
        """In [0, 1]: how much of the stream the counter could see (coverage), how well it saw the
        joints (visibility), and how alike the counted repetitions were (their agreement weighs
        half: a count of unlike repetitions is still a count)."""
        return self.pose_coverage * self.visibility * (0.5 + 0.5 * self.agreement)


RELIABLE = 0.5  # a count whose reliability is below this gets a warning
RESULTS_KEPT = 10_000  # latencies and repetitions a CountResult keeps (the latest; 10,000 to 20,000)

@dataclass
class CountResult:
    """One counted feed, as either runner reports it; :meth:`summary` is its JSON."""

    feed: str
    source: str
    count: float = 0.0
    frames: int = 0  # of the source, posed or not
    frames_analysed: int = 0  # posed (at most the job's rate a second)
    frames_with_person: int = 0  # of those posed
    frames_dropped: int = 0
    pose_coverage: float | None = None  # see FeedTally, once the stream has ended
    reliability: float | None = None
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

    def resume(self, tally: FeedTally, frames: int) -> None:
        """A feed resumed from a snapshot taken ``frames`` frames into its source: its count and
        frames posed so far are the snapshot's."""
        self.count, self.frames_analysed, self.frames = tally.count, tally.frames, frames

    def conclude(self, tally: FeedTally) -> None:
        """The stream ended: take the session's tally (``frames``, those of the source read, posed or
        not, are the runner's), and fail a stream in which nobody was found."""
        self.frames_analysed, self.frames_with_person, self.count = tally.frames, tally.frames_with_person, tally.count
        self.frames = max(self.frames, self.frames_analysed)
        self.pose_coverage, self.reliability = tally.pose_coverage, tally.reliability
        if tally.frames_with_person and tally.reliability < RELIABLE:
            self.warnings.append(f"{self.source}: the count is unreliable (reliability {tally.reliability:.2f}): a "
                                 f"person was found on {tally.pose_coverage:.0%} of the frames posed, their joints "
                                 f"seen at {tally.visibility:.0%} visibility, the repetitions counted alike at "
                                 f"{tally.agreement:.0%} (poor light, a body hidden, a camera too far?)")
        # the last frame lasts one frame interval too
        self.seconds = tally.last_timestamp * self.frames / (self.frames - 1) if self.frames > 1 else 0.0
        if self.frames_analysed and not self.frames_with_person:
            posed = f" ({self.frames_analysed} posed)" if self.frames_analysed != self.frames else ""
            self.error = NoPersonError(self.source, f"no person was detected in any of its {self.frames} frames{posed}")

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
                "seconds": round(self.seconds, 3), "frames_analysed": self.frames_analysed,
                "frames_with_person": self.frames_with_person,
                "pose_coverage": None if self.pose_coverage is None else round(self.pose_coverage, 3),
                "reliability": None if self.reliability is None else round(self.reliability, 3),
                "processing_seconds": round(self.processing_seconds, 3),
                "frames_per_second": None if fps is None else round(fps, 2), "frames_dropped": self.frames_dropped,
                "latency_p50_seconds": latency[0], "latency_p95_seconds": latency[1],
                "repetitions": [r.to_dict() for r in self.repetitions]} | people | node | warnings
