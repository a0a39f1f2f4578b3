"""The repetition-counting job on Ray: many feeds at once through actor stages and bounded queues.

The driver only moves object references: frames go from a feed's :class:`~actors.stages.Capture`
actor through the object store to a pose actor, and the poses on to the feed's selection, window
and counting actors; only the small count batches come back to the driver.  Per feed, at most
``queue_size`` batches wait between capture and pose extraction and as many between pose
extraction and counting, so memory is bounded whatever the stream's length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.queues import ActorPool, BoundedQueue, is_ready
from actors.stages import Capture, Counting, PoseExtraction, Selection, StateLost, Windowing
from pipelines.errors import CadenceError, NoPersonError
from pipelines.repetitions import CountUpdate, RepetitionCounting

_ACTOR_LOST = (RayActorError, ActorUnavailableError)
MAX_RECOVERIES = 5


@dataclass
class PipelineSettings:
    """How the actor pipeline runs ``job`` (window, stride, strategy and counter live there)."""

    job: RepetitionCounting = field(default_factory=RepetitionCounting)
    live: bool = False
    batch_size: int = 8  # frames per Ray call: a call costs ~1 ms, a 720p frame ~30 ms of pose work
    queue_size: int | None = None  # batches waiting per feed between two stages: 4, or 2 for live feeds

    def queue(self) -> int:
        """Live feeds keep short queues: when the pool falls behind, frames are better dropped at
        capture than left to wait (latency)."""
        return self.queue_size or (2 if self.live else 4)
    pose_actors: int | None = None  # default: one per CPU of the cluster, at most what the feeds can use


@dataclass
class FeedResult:
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

    def summary(self) -> dict:
        if self.error is not None:
            failed = {"source": self.source, "error": str(self.error)}
            return failed | ({"count_so_far": round(self.count, 3), "frames": self.frames} if self.frames else {})
        fps = self.frames / self.processing_seconds if self.processing_seconds > 0 else None
        lat = np.asarray(self.latencies) if self.latencies else None
        return {"source": self.source, "count": round(self.count, 3), "frames": self.frames,
                "seconds": round(self.seconds, 3), "frames_with_person": self.frames_with_person,
                "processing_seconds": round(self.processing_seconds, 3),
                "frames_per_second": None if fps is None else round(fps, 2),
                "frames_dropped": self.frames_dropped,
                "latency_p50_seconds": None if lat is None else round(float(np.percentile(lat, 50)), 3),
                "latency_p95_seconds": None if lat is None else round(float(np.percentile(lat, 95)), 3)}


@dataclass
class _Entry:
    """One batch of one feed on its way through the stages."""

    seq: int
    frames: ray.ObjectRef | None = None  # held until counted: Ray can redo a lost pose output from it
    poses: ray.ObjectRef | None = None
    pose_actor: int = -1
    counts: ray.ObjectRef | None = None
    states: list = field(default_factory=list)
    final: bool = False


def _on_this_node() -> dict:
    """Capture and the light stages stay beside the driver: files are read where they are, and
    losing a worker node then costs only stateless pose actors, which Ray restarts."""
    try:
        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}
    except Exception:  # noqa: BLE001  (Ray Client has no local node; any placement works)
        return {}


def _state_lost(error: RayTaskError) -> bool:
    """An actor restarted between calls says so (instead of working on from an empty state)."""
    return isinstance(getattr(error, "cause", None), StateLost)


_LOST = object()


def _fetch(ref: ray.ObjectRef) -> Any:
    """The object, or ``_LOST`` when the actor that makes it died or restarted with its state lost."""
    try:
        return ray.get(ref)
    except _ACTOR_LOST:
        return _LOST
    except RayTaskError as e:
        if _state_lost(e):
            return _LOST
        raise


class _Feed:
    """The driver's side of one feed: its actors, its two bounded queues, its result."""

    def __init__(self, name: str, source: str | list[str], settings: PipelineSettings, pool: ActorPool):
        self.settings, self.pool = settings, pool
        self.result = FeedResult(name, source if isinstance(source, str) else f"{source[0]} (x{len(source)})")
        here = _on_this_node()
        self.capture = Capture.options(**here).remote(name, source, settings.live, settings.batch_size,
                                                      live_capacity=settings.batch_size)
        self.opened = self.capture.open.remote()
        _, selector, window, counter = settings.job.components()  # pose extraction is the shared pool's
        self.stages = [Selection.options(**here).remote(selector), Windowing.options(**here).remote(window, name),
                       Counting.options(**here).remote(counter, name)]
        # frame batches being read, being posed, and going through selection, window and counter
        self.reading: BoundedQueue[tuple] = BoundedQueue(settings.queue(), f"{name}: capture")
        self.posing: BoundedQueue[_Entry] = BoundedQueue(settings.queue(), f"{name}: pose extraction")
        self.counting: BoundedQueue[_Entry] = BoundedQueue(settings.queue(), f"{name}: counting")
        self.states: list = [None, None, None]  # stage states after the last batch delivered
        self.seq = 0
        self.next_index = 0
        self.ended = self.finishing = self.done = False
        self.started = time.perf_counter()

    # -- the three hand-overs ------------------------------------------------------------------
    def pump(self) -> None:
        """Ask the capture for more while there is room downstream."""
        while not (self.ended or self.done) and len(self.reading) + len(self.posing) < self.settings.queue():
            self.reading.put(self.capture.next_batch.remote())

    def waiting(self) -> list:
        """References whose completion lets this feed move on (a ready one that cannot move on
        would make the driver spin)."""
        refs = [meta for _, meta in self.reading]
        refs += [self.posing.head().poses] if self.posing and not self.counting.full() else []
        refs += [self.counting.head().counts] if self.counting else []
        return refs

    def advance(self, on_counts: Callable[[_Feed, pa.RecordBatch], None],
                on_frames: Callable[[str, int], None] | None = None) -> None:
        try:
            frames = self.result.frames
            self._take_frames()
            if on_frames is not None and self.result.frames > frames:
                on_frames(self.result.feed, self.result.frames - frames)
            self._take_poses()
            self._take_counts(on_counts)
        except RayTaskError as e:  # the component raised: report it, the other feeds go on
            self.fail_with(e)

    def fail_with(self, error: RayTaskError) -> None:
        cause = getattr(error, "cause", None)
        self._fail(cause if isinstance(cause, CadenceError) else CadenceError(f"{self.result.source}: {cause or error}"))

    def _take_frames(self) -> None:
        while self.reading and is_ready(self.reading.head()[1]):
            frames, meta_ref = self.reading.pop()
            meta = _fetch(meta_ref)
            if meta is _LOST:
                self._recover_capture()
                return
            self.result.frames_dropped = max(self.result.frames_dropped, meta["dropped"])
            if meta["frames"]:
                self.result.frames += meta["frames"]
                self.result.seconds = meta["last_timestamp"]
                self.next_index = meta["last_index"] + 1
                self.seq += 1
                poses, actor = self.pool.submit("extract", frames)
                self.posing.put(_Entry(self.seq, frames=frames, poses=poses, pose_actor=actor))
            if meta["end"]:
                self.ended = True
                self.reading.drain()  # later calls can only say "end" too

    def _take_poses(self) -> None:
        while self.posing and not self.counting.full() and is_ready(self.posing.head().poses):
            entry = self.posing.pop()
            self.pool.done(entry.pose_actor)
            self._submit(entry)
        if self.ended and not (self.reading or self.posing or self.finishing or self.counting.full()):
            self.finishing = True
            self.seq += 1
            self._submit(_Entry(self.seq, final=True))

    def _submit(self, entry: _Entry) -> None:
        """Chain the entry through selection, windowing and counting without waiting."""
        data, entry.states = entry.poses, []
        for stage in self.stages:
            method = stage.finish if entry.final else stage.push
            data, state = method.remote(entry.seq, data)
            entry.states.append(state)
        entry.counts = data
        self.counting.put(entry)

    def _take_counts(self, on_counts: Callable[[_Feed, pa.RecordBatch], None]) -> None:
        while self.counting and is_ready(self.counting.head().counts):
            entry = self.counting.head()
            counts = _fetch(entry.counts)
            if counts is _LOST:
                self._recover_stages()
                return
            self.counting.pop()
            self.states = entry.states
            if counts.num_rows:
                self.result.count = counts.column("count")[-1].as_py()
                now = time.time()
                self.result.latencies += [now - t for t in counts.column("capture_time").to_pylist()]
                on_counts(self, counts)
            if entry.final:
                self._finish()

    # -- ends and faults -----------------------------------------------------------------------
    def _finish(self) -> None:
        self.done = True
        self.result.processing_seconds = time.perf_counter() - self.started
        selection = ray.get(self.states[0])
        self.result.frames_with_person = selection["frames_with_person"]
        if self.result.frames and self.result.frames > 1:
            self.result.seconds *= self.result.frames / (self.result.frames - 1)
        if self.result.frames and not self.result.frames_with_person:
            self._fail(NoPersonError(self.result.source, f"no person was detected in any of its "
                                                         f"{self.result.frames} frames"))
        self._record_depths()

    def _fail(self, error: CadenceError) -> None:
        self.result.error = error
        self.done = True
        self._record_depths()

    def _record_depths(self) -> None:
        self.result.max_queue_depth = {"capture": self.reading.max_depth, "pose": self.posing.max_depth,
                                       "count": self.counting.max_depth}

    def _may_recover(self) -> bool:
        self.result.recoveries += 1
        if self.result.recoveries > MAX_RECOVERIES:
            self._fail(CadenceError(f"{self.result.source}: its actors died {MAX_RECOVERIES} times; giving up"))
            return False
        return True

    def _recover_stages(self) -> None:
        """A stage actor died (Ray restarts it empty): roll every stage back to the state after the
        last delivered batch and resubmit the batches after it, in order."""
        if not self._may_recover():
            return
        for stage, state in zip(self.stages, self.states):
            stage.restore.remote(state)
        for entry in self.counting.drain():
            self._submit(entry)

    def _recover_capture(self) -> None:
        """The capture actor died: reopen the source where the pipeline got to."""
        if not self._may_recover():
            return
        self.reading.drain()
        self.opened = self.capture.open.remote(self.next_index)

    def close(self) -> None:
        for actor in [self.capture, *self.stages]:
            ray.kill(actor)


class CountingPipeline:
    """Counts repetitions on many feeds at once on the connected Ray cluster.

    ``feeds`` maps a feed name to its source (file, camera index, stream URL, or a list of files
    played back to back).  ``on_update``
    receives every count as it comes; ``on_counts`` every count batch (for writing them out).
    """

    def __init__(self, feeds: dict[str, str | list[str]], settings: PipelineSettings | None = None):
        self.feeds = feeds
        self.settings = settings or PipelineSettings()
        self._feeds: list[_Feed] = []
        self._pool: ActorPool | None = None

    def pool_size(self) -> int:
        if self.settings.pose_actors:
            return self.settings.pose_actors
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, min(cpus, len(self.feeds) * self.settings.queue()))

    def start(self) -> None:
        """Start every actor and wait until each pose actor has built its MediaPipe graph."""
        actors = [PoseExtraction.options(scheduling_strategy="SPREAD").remote() for _ in range(self.pool_size())]
        self._pool = ActorPool(actors)
        self._feeds = [_Feed(name, source, self.settings, self._pool) for name, source in self.feeds.items()]
        ray.get([a.ready.remote() for a in actors])
        for feed in self._feeds:
            try:
                ray.get(feed.opened)
            except RayTaskError as e:
                feed.fail_with(e)
            except _ACTOR_LOST as e:
                feed._fail(CadenceError(f"{feed.result.source}: its capture actor died while opening it ({e})"))
            feed.started = time.perf_counter()

    @property
    def results(self) -> list[FeedResult]:
        return [feed.result for feed in self._feeds]

    def run(self, on_update: Callable[[CountUpdate], None] | None = None,
            on_counts: Callable[[pa.RecordBatch], None] | None = None,
            on_frames: Callable[[str, int], None] | None = None) -> list[FeedResult]:
        """Count every feed to its end; returns (and keeps in :attr:`results`) one result per feed."""
        if not self._feeds:
            self.start()

        def counts(feed: _Feed, batch: pa.RecordBatch) -> None:
            if on_counts is not None:
                on_counts(batch)
            if on_update is not None:
                for i, t, c in zip(*(batch.column(n).to_pylist() for n in ("frame_index", "timestamp", "count"))):
                    on_update(CountUpdate(feed.result.feed, i, t, c))

        active = [f for f in self._feeds if not f.done]
        while active:
            for feed in active:
                feed.pump()
            waiting = [ref for feed in active for ref in feed.waiting()]
            if waiting:
                ray.wait(waiting, num_returns=1, timeout=1.0)
            for feed in active:
                feed.advance(counts, on_frames)
            active = [f for f in active if not f.done]
        return self.results

    def close(self) -> None:
        for feed in self._feeds:
            feed.close()
        if self._pool is not None:
            for actor in self._pool.actors:
                ray.kill(actor)


def count_feeds(feeds: dict[str, str], settings: PipelineSettings | None = None,
                on_update: Callable[[CountUpdate], None] | None = None,
                on_counts: Callable[[pa.RecordBatch], None] | None = None) -> list[FeedResult]:
    """Run the pipeline over ``feeds`` on the connected cluster and return one result per feed."""
    pipeline = CountingPipeline(feeds, settings)
    try:
        return pipeline.run(on_update, on_counts)
    finally:
        pipeline.close()


def feed_names(sources: Sequence[str]) -> dict[str, str]:
    """Name feeds by their sources, numbering repeats so every name is unique."""
    names: dict[str, str] = {}
    for source in sources:
        name, k = source, 1
        while name in names:
            k += 1
            name = f"{source}#{k}"
        names[name] = source
    return names

