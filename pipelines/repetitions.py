"""The repetition-counting job in one process: frames -> poses -> one person -> windows -> counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .base import ComposedTemporalTransformer
from .counting import HumanBodyActionCounter
from .errors import NoPersonError
from .pose import HumanBodyPoseExtractor, Pose, PoseSelector
from .temporal import SlidingWindow
from .video import Frame


@dataclass(frozen=True)
class CountUpdate:
    """The cumulative count after a window ending at ``frame_index``."""

    source: str
    frame_index: int
    timestamp: float
    count: float


@dataclass
class CountResult:
    source: str
    count: float
    frames: int
    seconds: float
    frames_with_person: int
    processing_seconds: float

    def summary(self) -> dict:
        fps = self.frames / self.processing_seconds if self.processing_seconds > 0 else None
        return {"source": self.source, "count": round(self.count, 3), "frames": self.frames,
                "seconds": round(self.seconds, 3), "frames_with_person": self.frames_with_person,
                "processing_seconds": round(self.processing_seconds, 3),
                "frames_per_second": None if fps is None else round(fps, 2)}


@dataclass
class RepetitionCounting:
    """Settings of the counting job; :meth:`pipeline` gives it as one composed component."""

    window: int = 90
    stride: int = 90
    strategy: str = "maximum_bounding_box_area"
    confidence_threshold: float = 0.2
    counter: HumanBodyActionCounter = field(default_factory=HumanBodyActionCounter)

    def components(self) -> tuple[HumanBodyPoseExtractor, PoseSelector, SlidingWindow, HumanBodyActionCounter]:
        """The job's four stages, for whoever runs them (this process, or one Ray actor each)."""
        return (HumanBodyPoseExtractor(), PoseSelector(self.strategy, self.confidence_threshold),
                SlidingWindow(self.window, self.stride), self.counter)

    def pipeline(self) -> ComposedTemporalTransformer:
        """Frames in, cumulative counts out: the whole job as a component."""
        extractor, selector, window, counter = self.components()
        return extractor.appending(selector).appending(window).appending(counter)

    def run(self, frames: Iterable[Frame], source: str = "stream",
            on_update: Callable[[CountUpdate], None] | None = None,
            on_frame: Callable[[Frame, Pose | None, float], None] | None = None) -> CountResult:
        """Count the repetitions of one person in a stream of frames.

        Stage by stage rather than through :meth:`pipeline`, so the caller sees each frame's
        selected pose (for annotation) and each count as it comes.  Raises :class:`NoPersonError`
        when nobody was found in any frame.
        """
        extractor, selector, window, counter_component = self.components()
        windows, counter = window.session(), counter_component.session()
        result = CountResult(source, 0.0, 0, 0.0, 0, 0.0)
        started, last = time.perf_counter(), None

        def emit(window_list: list, timestamp: float) -> None:
            # Every window ends at the frame just pushed (or, at the end, at the last frame).
            for window in window_list:
                for count in counter.push(window):
                    result.count = count
                    if on_update:
                        on_update(CountUpdate(source, window.stop - 1, timestamp, count))

        try:
            for frame in frames:
                pose = selector.applied(extractor.applied(frame))
                result.frames += 1
                result.frames_with_person += pose is not None
                last = frame
                emit(windows.push(pose), frame.timestamp)
                if on_frame:
                    on_frame(frame, pose, result.count)
            emit(windows.finish(), last.timestamp if last is not None else 0.0)
        finally:
            extractor.close()
            result.processing_seconds = time.perf_counter() - started
            if last is not None and result.frames > 1:  # the last frame lasts one frame interval too
                result.seconds = last.timestamp * result.frames / (result.frames - 1)
        if result.frames and result.frames_with_person == 0:
            raise NoPersonError(source, f"no person was detected in any of its {result.frames} frames")
        return result
