"""Ray actors that host the components of ``pipelines`` as streaming stages.

Each stage takes an Arrow record batch (see :mod:`actors.schemas`) and returns one; the algorithm
is the component's own.  Per feed: a :class:`Capture` reads the source, a shared pool of
:class:`PoseExtraction` actors finds people, and :class:`Selection`, :class:`Windowing` and
:class:`Counting` follow one person, window the poses and count.

Stage calls are numbered.  ``push`` returns the output batch and the session's state after it as
two objects: the driver keeps a reference to the state of the last batch it has seen through, so
when a stage actor dies and Ray restarts it (rerunning the constructor, with empty state), the
driver restores that state and resubmits the later batches.  Nothing is counted twice or lost.
"""

from __future__ import annotations

import operator
import time
from typing import Any

import pyarrow as pa
import ray

from pipelines.base import TemporalTransformer
from pipelines.counting import HumanBodyActionCounter
from pipelines.errors import InputError
from pipelines.pose import HumanBodyPoseExtractor, PoseSelector
from pipelines.temporal import SlidingWindow, Window
from pipelines.video import LiveStream, concatenate, read_camera, read_video

from . import schemas


class StateLost(RuntimeError):
    """This stage actor was restarted by Ray and holds no state: the driver must restore it first."""


def _reconstructed() -> bool:
    return ray.get_runtime_context().was_current_actor_reconstructed


def is_camera(source: str) -> bool:
    """Camera indexes ("0") and stream URLs ("rtsp://...") rather than files."""
    return source.isdigit() or "://" in source


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Capture:
    """Reads one feed into frame batches.  A file feed waits for the pipeline (no frame dropped);
    a live feed (camera, URL, or a file with ``live=True``) keeps reading and drops the oldest
    waiting frames when the pipeline falls behind, counting them."""

    def __init__(self, feed: str, source: str | list[str], live: bool, batch_size: int = 8, live_capacity: int = 16):
        self.feed, self.source, self.live = feed, source, live
        self.batch_size, self.live_capacity = batch_size, live_capacity
        self._frames: Any = None
        self._live: LiveStream | None = None
        self.info: dict = {}
        self.lost = _reconstructed()  # restarted: no source open until the driver reopens it

    def open(self, next_index: int = 0) -> dict:
        """Open the source (raising :class:`InputError` with the reason); skip to ``next_index``
        when resuming after a restart.  Returns fps and frame count (0 when unknown)."""
        self.lost = False
        if isinstance(self.source, str) and is_camera(self.source):
            if not self.live:
                raise InputError(self.source, "looks like a camera or stream URL", "add --live to read it")
            stream = read_camera(int(self.source) if self.source.isdigit() else self.source)
            self._live = LiveStream(stream, capacity=self.live_capacity)
            self.info = {"fps": stream.fps, "frames": 0}
        else:  # a file, or a playlist of files played back to back as one feed
            video = read_video(self.source) if isinstance(self.source, str) else concatenate(*self.source)
            self.info = {"fps": video.fps, "frames": operator.length_hint(video)}
            if self.live:
                self._live = LiveStream(video, capacity=self.live_capacity, pace=True)
            else:
                self._frames = iter(video)
                for _ in range(next_index):
                    next(self._frames, None)
        return self.info

    @ray.method(num_returns=2)
    def next_batch(self) -> tuple[pa.RecordBatch, dict]:
        """The next frames, and a small summary the driver reads without fetching the images."""
        if self.lost:
            raise StateLost(f"capture of {self.feed} was restarted")
        if self._live is not None:
            taken = self._live.take(self.batch_size, gather=0.05)
            frames, times = [f for f, _ in taken], [t for _, t in taken]
            dropped = self._live.dropped
        else:
            frames = []
            for frame in self._frames:
                frames.append(frame)
                if len(frames) == self.batch_size:
                    break
            times, dropped = [time.time()] * len(frames), 0
        meta = {"frames": len(frames), "end": not frames, "dropped": dropped,
                "last_index": frames[-1].index if frames else None,
                "last_timestamp": frames[-1].timestamp if frames else None}
        return schemas.frames_to_batch(self.feed, frames, times), meta

    def close(self) -> None:
        if self._live is not None:
            self._live.close()


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)
class PoseExtraction:
    """One MediaPipe landmarker, used by this actor's single thread only.  Stateless (IMAGE mode),
    so Ray retries the calls a killed actor held on its restarted self."""

    def __init__(self, maximum_person_count: int = 4, minimum_confidence: float = 0.5):
        self.extractor = HumanBodyPoseExtractor(maximum_person_count, minimum_confidence)

    def ready(self) -> bool:
        import numpy as np

        self.extractor.applied(np.zeros((64, 64, 3), np.uint8))  # build the graph before frames arrive
        return True

    def node(self) -> str:
        """The id of the node this actor runs on (to see how a pool spread)."""
        return ray.get_runtime_context().get_node_id()

    def extract(self, frames: pa.RecordBatch) -> pa.RecordBatch:
        poses = [self.extractor.applied(frame) for frame in schemas.batch_to_frames(frames)]
        return schemas.poses_to_batch(frames, poses)


class _Stage:
    """A component hosted for one feed: numbered pushes, state out with every output."""

    def __init__(self, component: Any):
        self.component = component
        self.restore(None)
        # Restarted by Ray between two calls, this actor would otherwise carry on from an empty
        # state without anyone noticing: refuse work until the driver has restored it.
        self.lost = _reconstructed()

    def restore(self, state: dict | None) -> bool:
        """Back to the state after some earlier batch (None: a fresh stream)."""
        self.lost = False
        self.session = self.component.session() if isinstance(self.component, TemporalTransformer) else None
        self._reset()
        if state is not None:
            if self.session is not None:
                self.session.restore(state["session"])
            self._restore_extra(state)
        return True

    def _reset(self) -> None:
        pass

    def _restore_extra(self, state: dict) -> None:
        pass

    def _extra(self) -> dict:
        return {}

    def state(self) -> dict:
        return {"session": self.session.snapshot() if self.session is not None else None, **self._extra()}

    @ray.method(num_returns=2)
    def push(self, seq: int, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, dict]:
        self._check()
        return self._push(batch), self.state()

    def _check(self) -> None:
        if self.lost:
            raise StateLost(f"{type(self).__name__} was restarted")

    @ray.method(num_returns=2)
    def finish(self, seq: int, batch: pa.RecordBatch | None = None) -> tuple[pa.RecordBatch, dict]:
        """Push the last batch (if any), then end the stream."""
        self._check()
        return self._finish(batch), self.state()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Selection(_Stage):
    """Hosts a :class:`PoseSelector`; its state is a tally of frames with a person, for the summary."""

    def __init__(self, selector: PoseSelector):
        super().__init__(selector)

    def _reset(self) -> None:
        self.frames = self.frames_with_person = 0

    def _restore_extra(self, state: dict) -> None:
        self.frames, self.frames_with_person = state["frames"], state["frames_with_person"]

    def _extra(self) -> dict:
        return {"frames": self.frames, "frames_with_person": self.frames_with_person}

    def _push(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        selected = [self.component.applied(people) for people in schemas.batch_to_poses(batch)]
        self.frames += len(selected)
        self.frames_with_person += sum(p is not None for p in selected)
        return schemas.selected_to_batch(batch, selected)

    def _finish(self, batch: pa.RecordBatch | None) -> pa.RecordBatch:
        return self._push(batch) if batch is not None else schemas.empty(schemas.SELECTED)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Windowing(_Stage):
    """Hosts a :class:`SlidingWindow` over ``(pose, timestamp, capture_time)`` elements, so each
    window knows when its frames were captured (for latency) without a second buffer."""

    def __init__(self, window: SlidingWindow, feed: str):
        self.feed = feed
        super().__init__(window)

    def _reset(self) -> None:
        self.covered = 0  # frames before this index were in an earlier window

    def _restore_extra(self, state: dict) -> None:
        self.covered = state["covered"]

    def _extra(self) -> dict:
        return {"covered": self.covered}

    def _encode(self, windows: list[Window]) -> pa.RecordBatch:
        timestamps, capture_times, plain = [], [], []
        for w in windows:
            new = [e for i, e in enumerate(w.elements) if w.start + i >= self.covered] or [w.elements[-1]]
            timestamps.append(w.elements[-1][1])
            capture_times.append(min(e[2] for e in new))
            self.covered = max(self.covered, w.stop)
            plain.append(Window(w.start, [e[0] for e in w.elements]))
        return schemas.windows_to_batch(self.feed, plain, timestamps, capture_times)

    def _push(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        poses = schemas.batch_to_selected(batch)
        times, captured = batch.column("timestamp").to_pylist(), batch.column("capture_time").to_pylist()
        windows = [w for element in zip(poses, times, captured) for w in self.session.push(element)]
        return self._encode(windows)

    def _finish(self, batch: pa.RecordBatch | None) -> pa.RecordBatch:
        windows = self.session.finish()
        return self._encode(windows)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Counting(_Stage):
    """Hosts a :class:`HumanBodyActionCounter`: one cumulative count per window."""

    def __init__(self, counter: HumanBodyActionCounter, feed: str):
        self.feed = feed
        super().__init__(counter)

    def _count(self, batch: pa.RecordBatch | None, at_end: bool) -> pa.RecordBatch:
        if batch is None:
            batch = schemas.empty(schemas.WINDOWS)
        columns = [batch.column(n).to_pylist() for n in ("frame_index", "timestamp", "capture_time")]
        rows: list[tuple] = []
        for k, window in enumerate(schemas.batch_to_windows(batch)):
            rows += [(columns[0][k], columns[1][k], columns[2][k], c) for c in self.session.push(window)]
        if at_end:  # anything the counter held back belongs to the last frame seen
            last = rows[-1][:3] if rows else (self.session.seen - 1, columns[1][-1] if batch.num_rows else 0.0,
                                              time.time())
            rows += [(*last, c) for c in self.session.finish()]
        indexes, timestamps, captured, counts = zip(*rows) if rows else ((), (), (), ())
        return schemas.counts_to_batch(self.feed, indexes, timestamps, captured, counts)

    def _push(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self._count(batch, at_end=False)

    def _finish(self, batch: pa.RecordBatch | None) -> pa.RecordBatch:
        return self._count(batch, at_end=True)
