"""The repetition-counting job on Ray: many feeds at once, in a few processes.

::

    CaptureHost (many feeds each) -> PoseExtraction (a pool, one per CPU) -> CountingHost (many feeds each)

A feed costs state, not processes: each capture host reads, and each counting host counts, up to
``feeds_per_host`` feeds, while the pose pool, where nearly all the CPU goes, serves every feed.
The driver only moves object references: a frame batch goes from its capture host through the
object store to a pose actor, and the poses on to the feed's counting host; only the small count
batches come back to the driver.

Bounds: per feed, at most ``queue_size`` frame batches are being read or posed and as many pose
batches are being counted; over all feeds, at most ``frame_batches`` frame batches exist at once
(enough to keep every pose actor busy), handed out to the feeds in turn.  So a slow stage holds its
producers back, and memory grows with neither the stream's length nor the number of feeds.

Pose tracking (:class:`~cadence.pipelines.posetracking.TrackingPoseExtractor`): a file's batches
hold whole segments of ``detection_interval`` frames, so any pose actor poses any batch, one feed's
batches in parallel, and exactly as the inline runner does.  A live feed's batches are a few frames,
so they all go to one pose actor (the feed's home, the actor with the fewest), which carries the
feed's tracking on from batch to batch.

Faults: a file's pose calls depend on nothing but their frames, and Ray redoes the calls of a pose
actor that died (a live feed's tracking starts a new segment there, at its next frame).  When a
host dies, Ray restarts it empty; each of its feeds then finds itself unknown there (``StateLost``) and is opened
again: the source where the pipeline had got to, the counting session from the snapshot after the
last count batch the driver received, with the batches after it submitted again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cadence.actors import schemas
from cadence.actors.queues import ActorPool, BoundedQueue
from cadence.actors.stages import CaptureHost, CountingHost, PoseExtraction, StateLost
from cadence.pipelines.errors import CadenceError
from cadence.pipelines.posetracking import checked_interval
from cadence.pipelines.repetitions import CountResult, CountUpdate, FeedCounting, RepetitionCounting
from cadence.pipelines.video import Source, is_camera

MAX_RECOVERIES = 5  # per feed: hosts that die this many times in a row with no progress between, and
STALL_SECONDS = 30.0  # go on dying for this long without it, fail the feed (a source that kills them)
RESTART_SECONDS = 60.0  # a host Ray is still restarting this long after the feed moved on counts as dying again
CAPTURE_THREADS = 4  # feeds a capture host reads at once
LIVE_TIMEOUT = 10.0  # seconds without a frame after which a live source counts as dropped
BACKOFF = (1.0, 30.0)  # reopening a dropped live source: first wait, doubling up to the second


@dataclass
class PipelineSettings:
    """How the actor pipeline runs ``job`` (window, stride, strategy, live and counter live there)."""

    job: RepetitionCounting = field(default_factory=RepetitionCounting)
    batch_size: int = 8  # a file's frames per Ray call, rounded up to whole pose-tracking segments (30)
    live_batch_size: int = 2  # live feeds: a frame waits for its batch to fill and be posed (latency)
    queue_size: int | None = None  # per feed and stage, in batches: 4, or 2 for live feeds
    pose_actors: int | None = None  # default: one per CPU of the cluster, at most what the feeds can use
    feeds_per_host: int = 32  # feeds read by one capture host and counted by one counting host
    frame_batches: int | None = None  # frame batches in flight over all feeds: 2 per pose actor, +2
    stall_seconds: float = STALL_SECONDS  # see MAX_RECOVERIES
    reconnect: bool = False  # live feeds: reopen a source that stops delivering (the service's cameras)
    live_timeout: float = LIVE_TIMEOUT  # a live source silent this long has stopped delivering
    preview_seconds: float | None = None  # keep a JPEG of a recent frame per feed this often (a live page)

    def queue(self, live: bool | None = None) -> int:
        """Per feed and stage, in batches.  Live feeds keep short queues: when the pool falls
        behind, frames are better dropped at capture than left to wait (latency)."""
        return self.queue_size or (2 if (self.job.live if live is None else live) else 4)


@dataclass(frozen=True)
class _Lost:
    """What :func:`_fetch` returns for a call the feed lost; ``restarting`` when it never reached a
    live host because Ray was still restarting it (the death before it, seen again)."""

    restarting: bool = False


_LOST, _RESTARTING = _Lost(), _Lost(restarting=True)


def _fetch(ref: ray.ObjectRef) -> Any:
    """The object, or a :class:`_Lost` when the actor making it died, was restarting, or no longer
    holds the feed."""
    try:
        return ray.get(ref)
    except ActorUnavailableError as e:  # Ray 2.60 words a call refused during a restart this way
        return _RESTARTING if "actor is restarting" in str(e) else _LOST
    except RayActorError:  # it died, or (ActorDiedError) will not come back
        return _LOST
    except RayTaskError as e:
        if isinstance(getattr(e, "cause", None), StateLost):
            return _LOST
        raise


def _on_this_node() -> dict:
    """Hosts stay beside the driver: files are read where they are, and losing a worker node then
    costs only stateless pose actors, which Ray restarts elsewhere."""
    try:
        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}
    except Exception:  # noqa: BLE001  (Ray Client has no local node; any placement works)
        return {}


def describe(source: Source) -> str:
    """A source as results name it: a playlist by its first file."""
    if isinstance(source, (list, tuple)):
        return f"{source[0]} (x{len(source)})"
    return str(source)


def whole_segments(batch_size: int, job: RepetitionCounting) -> int:
    """``batch_size`` rounded up to a whole number of the job's pose-tracking segments."""
    every = checked_interval(job.detection_interval, "RepetitionCounting")
    return -(-batch_size // every) * every


@dataclass
class _Entry:
    """One batch of one feed on its way through the stages."""

    poses: ray.ObjectRef | None = None  # (Ray keeps the frames until the pose call is done, for its retries)
    pose_actor: int = -1
    counts: ray.ObjectRef | None = None
    state: ray.ObjectRef | None = None  # the feed's session after this batch
    last_index: int = -1  # the batch's last frame
    preview: ray.ObjectRef | None = None  # a JPEG of its last frame with the people found drawn
    final: bool = False


class _Feed:
    """The driver's side of one feed: where its batches are, and its result.

    ``start`` and ``state`` resume a feed: its source from frame ``start`` (a file), its counting
    session from a snapshot.  With ``settings.reconnect``, a camera or stream URL that ends, fails or stays
    silent for ``settings.live_timeout`` seconds once it has delivered is reopened with backoff
    (``state`` is then ``reconnecting``) while its counting session, and so its count, carries on.
    """

    def __init__(self, name: str, source: Source, job: RepetitionCounting, settings: PipelineSettings,
                 host: int, capture, counter, pool: ActorPool, start: int = 0, state: dict | None = None):
        self.name, self.source, self.job, self.live = name, source, job, job.live
        self.host, self.capture, self.counter, self.pool = host, capture, counter, pool
        self.counting_component = job.feed_counting(name)
        self.result = CountResult(name, describe(source))
        self.queue = settings.queue(job.live)
        # cameras and stream URLs are reopened when they drop; a file, even read live, ends
        self.reconnect, self.live_timeout = settings.reconnect and is_camera(source), settings.live_timeout
        # a file's batches hold whole pose-tracking segments, so any pose actor poses any of them exactly;
        # a live feed's few frames go to its home actor, which carries its tracking on
        self.batch_size = settings.live_batch_size if job.live else whole_segments(settings.batch_size, job)
        self.pose_home = pool.home() if job.live else None
        self.opening: ray.ObjectRef | None = self._open(start)
        self.state: ray.ObjectRef | None = None  # the session after the last count batch received
        if state is not None:
            self.state = ray.put(state)
            self.result.count = FeedCounting.tally(state).count
        counter.open.remote(name, self.counting_component, self.state)
        self.reading: tuple[ray.ObjectRef, ray.ObjectRef] | None = None
        self.posing: BoundedQueue[_Entry] = BoundedQueue(self.queue, f"{name}: pose extraction")
        self.counting: BoundedQueue[_Entry] = BoundedQueue(self.queue, f"{name}: counting")
        self.next_index = start
        self.resume_index = start  # where the source resumes with the session in ``state``
        self.delivered = 0  # count batches received
        self.stalled = 0  # recoveries since the feed last moved on
        self.progress_mark = (0, 0)
        self.progress_time = time.monotonic()
        self.stall_seconds = settings.stall_seconds
        self.ended = self.finishing = self.done = False
        self.has_delivered_frames = False  # a live source that never delivered fails instead of reconnecting
        self.last_frames_at = time.monotonic()
        self.reopen_at: float | None = None  # when a dropped live source is due to be reopened
        self.backoff = BACKOFF[0]
        self.down_since: float | None = None
        self.dropped_before = 0  # frames dropped by earlier connections of a reconnected live source
        self.reconnections = 0
        self.downtime_seconds = 0.0
        self.preview_seconds = settings.preview_seconds
        self.preview: ray.ObjectRef | None = None  # the newest preview made
        self.preview_asked = 0.0
        self.started = time.perf_counter()

    @property
    def status(self) -> str:
        """``starting``, ``running``, ``reconnecting``, ``ended`` or ``failed``."""
        if self.done:
            return "failed" if self.result.error is not None else "ended"
        if self.down_since is not None:
            return "reconnecting"
        return "running" if self.has_delivered_frames else "starting"

    def _open(self, start: int) -> ray.ObjectRef:
        return self.capture.open.remote(self.name, self.source, self.live, start, self.batch_size)

    # -- what the driver asks of a feed --------------------------------------------------------
    def frames_in_flight(self) -> int:
        return (self.reading is not None) + len(self.posing)

    def wants_frames(self) -> bool:
        idle = self.opening is None and self.reading is None and self.reopen_at is None
        return idle and not (self.done or self.ended) and self.frames_in_flight() < self.queue

    def read(self) -> None:
        self.reading = self.capture.next_batch.remote(self.name)

    def waiting(self) -> list[ray.ObjectRef]:
        """References whose completion lets this feed move on."""
        refs = [self.opening] if self.opening is not None else []
        refs += [self.reading[1]] if self.reading is not None else []
        refs += [e.poses for e in self.posing] if not self.counting.full() else []
        return refs + [e.counts for e in self.counting]

    def advance(self, ready: set, deliver: Callable[[_Feed, pa.RecordBatch], None],
                on_frames: Callable[[str, int], None] | None) -> None:
        try:
            if self.opening in ready:
                self._opened()
            if self.reading is not None and self.reading[1] in ready:
                self._take_frames(on_frames)
            self._take_poses(ready)
            self._take_counts(ready, deliver)
            self._watch_live_source()
        except RayTaskError as e:  # a component raised (a bad source, say): the other feeds go on
            cause = getattr(e, "cause", None)
            error = cause if isinstance(cause, CadenceError) else CadenceError(f"{self.result.source}: {cause or e}")
            if self.reconnect and self.has_delivered_frames:
                self._dropped(str(error))
            else:
                self.fail(error)

    # -- the hand-overs ------------------------------------------------------------------------
    def _opened(self) -> None:
        opened, self.opening = _fetch(self.opening), None
        if isinstance(opened, _Lost):
            self._recover_capture(opened)
        self.last_frames_at = time.monotonic()

    def _take_frames(self, on_frames: Callable[[str, int], None] | None) -> None:
        (frames, meta_ref), self.reading = self.reading, None
        meta = _fetch(meta_ref)
        if isinstance(meta, _Lost):
            self._recover_capture(meta)
            return
        self.result.frames_dropped = self.dropped_before + meta["dropped"]
        if meta["frames"]:
            self.result.frames += meta["frames"]
            self.next_index = meta["last_index"] + 1
            self.has_delivered_frames, self.last_frames_at = True, time.monotonic()
            if self.down_since is not None:
                self._back_up()
            entry = _Entry(last_index=meta["last_index"])
            args = (frames, self.name if self.live else None, self.job.detection_interval)
            if self.preview_seconds is not None and time.monotonic() - self.preview_asked >= self.preview_seconds:
                self.preview_asked = time.monotonic()
                (entry.poses, entry.preview), entry.pose_actor = self.pool.submit("extract_with_preview", *args,
                                                                                  to=self.pose_home)
            else:
                entry.poses, entry.pose_actor = self.pool.submit("extract", *args, to=self.pose_home)
            self.posing.put(entry)
            if on_frames is not None:
                on_frames(self.name, meta["frames"])
        self.result.warnings += meta["warnings"]
        if meta["end"] and self.reconnect:
            self._dropped("the source stopped delivering")
        else:
            self.ended = meta["end"]

    def _take_poses(self, ready: set) -> None:
        while self.posing and not self.counting.full() and self.posing.head().poses in ready:
            entry = self.posing.pop()
            self.pool.done(entry.pose_actor)
            self.preview = entry.preview or self.preview
            self._submit(entry)
        if self.ended and self.reading is None and not (self.posing or self.finishing or self.counting.full()):
            self.finishing = True
            self._submit(_Entry(final=True))

    def _submit(self, entry: _Entry) -> None:
        """Hand the entry's poses (or, for the final one, the end of the stream) to the counting host."""
        if entry.final:
            entry.counts, entry.state = self.counter.finish.remote(self.name)
        else:
            entry.counts, entry.state = self.counter.push.remote(self.name, entry.poses)
        self.counting.put(entry)

    def _take_counts(self, ready: set, deliver: Callable[[_Feed, pa.RecordBatch], None]) -> None:
        while self.counting and self.counting.head().counts in ready:
            entry = self.counting.head()
            counts = _fetch(entry.counts)
            if isinstance(counts, _Lost):
                self._recover_counting(counts)
                return
            self.counting.pop()
            self.delivered += 1
            self.state = entry.state
            if not entry.final:
                self.resume_index = entry.last_index + 1
            deliver(self, counts)
            if entry.final:
                self._finish()
                return

    # -- live sources that drop ----------------------------------------------------------------
    def _watch_live_source(self) -> None:
        silent = time.monotonic() - self.last_frames_at
        if self.reconnect and self.down_since is None and self.opening is None and silent > self.live_timeout:
            self._dropped(f"no frame for {silent:.0f} s")

    def _dropped(self, why: str) -> None:
        """The live source stopped: close it, keep the counting session, and reopen it later."""
        if self.down_since is None:  # (not again for each failed attempt)
            self.down_since = time.monotonic()
            self.dropped_before = self.result.frames_dropped
            self.result.warnings.append(f"reconnecting: {why}")
        self.reading = self.opening = None
        self.capture.close.remote(self.name)
        self.reopen_at = time.monotonic() + self.backoff
        self.backoff = min(2 * self.backoff, BACKOFF[1])

    def reopen_if_due(self) -> None:
        if self.reopen_at is not None and time.monotonic() >= self.reopen_at and not self.done:
            self.reopen_at = None
            self.opening = self._open(0)

    def _back_up(self) -> None:
        self.downtime_seconds += time.monotonic() - self.down_since
        self.down_since, self.backoff = None, BACKOFF[0]
        self.reconnections += 1

    # -- ends and faults -----------------------------------------------------------------------
    def _finish(self) -> None:
        self.result.conclude(FeedCounting.tally(ray.get(self.state)))
        self._end()

    def fail(self, error: CadenceError) -> None:
        self.result.error = error
        self._end()

    def stop(self) -> None:
        """Stop the feed where it is (its count so far is its result)."""
        if not self.done:
            if self.state is not None:
                tally = FeedCounting.tally(ray.get(self.state))
                self.result.frames_with_person = tally.frames_with_person
            self._end()

    def _end(self) -> None:
        self.done = True
        if self.down_since is not None:
            self.downtime_seconds += time.monotonic() - self.down_since
            self.down_since = None
        self.reopen_at = None
        self.result.processing_seconds = time.perf_counter() - self.started
        self.result.max_queue_depth = {"pose": self.posing.max_depth, "count": self.counting.max_depth}
        for entry in self.posing.drain():  # a failed feed leaves the pool's tally as it found it
            self.pool.done(entry.pose_actor)
        self.capture.close.remote(self.name)
        self.counter.close.remote(self.name)
        if self.pose_home is not None:
            self.pool.leave(self.pose_home)
            self.pool.actors[self.pose_home].forget.remote(self.name)

    def _may_recover(self, lost: _Lost) -> bool:
        """Recover, unless the feed's actors keep dying with no progress between (a source that kills
        them, say): more than ``MAX_RECOVERIES`` recoveries in a row over ``stall_seconds`` with the
        feed no further.  Deaths spread over a long run, each after some progress, are survived, and
        so are bursts (one death is often seen twice: the call that died, then the restarted host
        that no longer holds the feed), as is a machine too busy to make progress between kills.
        Calls refused while Ray restarts the host (every 2 s, for as long as a busy machine takes to
        start it) are that one death seen again: they are recovered from but not counted, until
        ``RESTART_SECONDS`` have passed without progress."""
        mark, now = (self.next_index, self.delivered), time.monotonic()
        if mark != self.progress_mark:
            self.stalled, self.progress_mark, self.progress_time = 0, mark, now
        if lost.restarting and self.stalled and now - self.progress_time < RESTART_SECONDS:
            return True
        self.result.recoveries += 1
        self.stalled += 1
        if self.stalled > MAX_RECOVERIES and now - self.progress_time >= self.stall_seconds:
            self.fail(CadenceError(f"{self.result.source}: its actors died {self.stalled} times in a row over "
                                   f"{now - self.progress_time:.0f} s with no progress; giving up"))
            return False
        return True

    def _recover_capture(self, lost: _Lost) -> None:
        """The capture host lost the feed: open the source again where the pipeline had got to."""
        if self._may_recover(lost):
            self.reading = None
            self.opening = self._open(self.next_index)

    def _recover_counting(self, lost: _Lost) -> None:
        """The counting host lost the feed: restore the session after the last count batch received,
        and submit the batches after it again, in order."""
        if self._may_recover(lost):
            self.counter.open.remote(self.name, self.counting_component, self.state)
            for entry in self.counting.drain():
                self._submit(entry)


class CountingPipeline:
    """Counts repetitions on many feeds at once on the connected Ray cluster.

    ``feeds`` maps a feed name to its source (a file, a camera index, a stream URL, or a list of
    files played back to back).  :meth:`run` counts them to their ends, calling ``on_update`` with
    every count as it comes.  A long-running owner (``cadence serve``) instead adds and removes
    feeds as it goes (:meth:`add`, :meth:`remove`) and calls :meth:`step` in a loop.
    """

    def __init__(self, feeds: dict[str, Source] | None = None, settings: PipelineSettings | None = None):
        self.feeds = dict(feeds or {})
        self.settings = settings or PipelineSettings()
        self._feeds: dict[str, _Feed] = {}
        self._pool: ActorPool | None = None
        self.capture_hosts: list = []
        self.counting_hosts: list = []
        self._host_capacity = self.settings.feeds_per_host
        self._turn = 0
        self._on_update: Callable[[CountUpdate], None] | None = None

    def pool_size(self) -> int:
        if self.settings.pose_actors:
            return self.settings.pose_actors
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if not self.feeds:  # feeds will come and go (a service): every CPU
            return max(1, cpus)
        return max(1, min(cpus, len(self.feeds) * self.settings.queue()))

    def frame_batches(self) -> int:
        return self.settings.frame_batches or 2 * len(self._pool.actors) + 2

    def start(self) -> None:
        """Start the pose pool and open every feed given; wait until each pose actor has built its graph."""
        s = self.settings
        actors = [PoseExtraction.options(scheduling_strategy="SPREAD").remote() for _ in range(self.pool_size())]
        self._pool = ActorPool(actors)
        hosts = math.ceil(len(self.feeds) / s.feeds_per_host) or 1
        self._host_capacity = math.ceil(len(self.feeds) / hosts) or s.feeds_per_host  # spread evenly
        for name, source in self.feeds.items():
            self.add(name, source)
        if not self.feeds:  # feeds will come (a service): a pair of hosts ready for the first
            self._host_with_room()
        hosts = [h.close.remote("") for h in self.capture_hosts + self.counting_hosts]  # (a no-op: started?)
        ray.get([a.ready.remote() for a in actors] + hosts)
        opening = [f.opening for f in self._feeds.values()]
        ray.wait(opening, num_returns=len(opening))
        for feed in self._feeds.values():
            feed.advance(set(opening), self._deliver, None)
            feed.started = time.perf_counter()
        self._host_capacity = s.feeds_per_host

    def add(self, name: str, source: Source, job: RepetitionCounting | None = None, start: int = 0,
            state: dict | None = None) -> None:
        """Open a feed (after :meth:`start`): its source from frame ``start``, its counting session
        from ``state`` (a snapshot from :meth:`snapshot`) when given."""
        if name in self._feeds and not self._feeds[name].done:
            raise ValueError(f"CountingPipeline: a feed named {name!r} is running; stop it or choose another name")
        self.feeds[name] = source
        host = self._host_with_room()
        self._feeds[name] = _Feed(name, source, job or self.settings.job, self.settings, host,
                                  self.capture_hosts[host], self.counting_hosts[host], self._pool, start, state)

    def _host_with_room(self) -> int:
        """The pair of hosts (capture, counting) holding the fewest feeds, a new pair when all are full."""
        held = [0] * len(self.capture_hosts)
        for feed in self._feeds.values():
            held[feed.host] += not feed.done
        if held and min(held) < self._host_capacity:
            return held.index(min(held))
        here = _on_this_node()
        # a few threads decode at once; one per feed would multiply malloc's arenas, and memory with them
        threads = min(self._host_capacity, CAPTURE_THREADS) + 1
        self.capture_hosts.append(CaptureHost.options(**here, max_concurrency=threads).remote(self.settings.batch_size))
        self.counting_hosts.append(CountingHost.options(**here).remote())
        return len(self.capture_hosts) - 1

    def remove(self, name: str) -> CountResult:
        """Stop a feed where it is; its result (the count so far) stays in :attr:`results`."""
        feed = self._feeds[name]
        feed.stop()
        return feed.result

    def feed(self, name: str) -> _Feed:
        return self._feeds[name]

    def snapshot(self, name: str) -> tuple[int, dict | None]:
        """Where a feed can resume: the frame after the last one counted, and its session then."""
        feed = self._feeds[name]
        return feed.resume_index, (ray.get(feed.state) if feed.state is not None else None)

    @property
    def pose_actors(self) -> list:
        return self._pool.actors if self._pool else []

    @property
    def results(self) -> list[CountResult]:
        return [feed.result for feed in self._feeds.values()]

    def _deliver(self, feed: _Feed, counts: pa.RecordBatch) -> None:
        for update in schemas.batch_to_updates(counts):
            feed.result.record(update)
            if self._on_update is not None:
                self._on_update(update)

    def run(self, on_update: Callable[[CountUpdate], None] | None = None,
            on_frames: Callable[[str, int], None] | None = None) -> list[CountResult]:
        """Count every feed to its end; returns (and keeps in :attr:`results`) one result per feed."""
        if self._pool is None:
            self.start()
        while self.step(on_update, on_frames):
            pass
        return self.results

    def step(self, on_update: Callable[[CountUpdate], None] | None = None,
             on_frames: Callable[[str, int], None] | None = None, timeout: float = 1.0) -> bool:
        """Move every feed on as far as it can go now, waiting at most ``timeout`` seconds for work
        to finish; False when no feed is left running."""
        self._on_update = on_update
        active = [f for f in self._feeds.values() if not f.done]
        if not active:
            return False
        for feed in active:
            feed.reopen_if_due()
        self._hand_out_frames(active)
        waiting = [ref for feed in active for ref in feed.waiting()]
        ready: set = set()
        if waiting:
            ray.wait(waiting, num_returns=1, timeout=timeout)
            ready = set(ray.wait(waiting, num_returns=len(waiting), timeout=0)[0])
        else:  # every feed is waiting to reconnect
            time.sleep(min(timeout, 0.1))
        for feed in active:
            feed.advance(ready, self._deliver, on_frames)
        return any(not f.done for f in self._feeds.values())

    def _hand_out_frames(self, active: list[_Feed]) -> None:
        """Ask for frames in turn, while fewer than ``frame_batches`` are in flight."""
        room = self.frame_batches() - sum(f.frames_in_flight() for f in active)
        self._turn += 1
        for k in range(len(active)):
            if room <= 0:
                return
            feed = active[(self._turn + k) % len(active)]
            if feed.wants_frames():
                feed.read()
                room -= 1

    def close(self) -> None:
        for actor in self.capture_hosts + self.counting_hosts + self.pose_actors:
            ray.kill(actor)


def count_feeds(feeds: dict[str, Source], settings: PipelineSettings | None = None,
                on_update: Callable[[CountUpdate], None] | None = None) -> list[CountResult]:
    """Run the pipeline over ``feeds`` on the connected cluster and return one result per feed."""
    pipeline = CountingPipeline(feeds, settings)
    try:
        return pipeline.run(on_update)
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
