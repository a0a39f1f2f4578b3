"""One feed's side of the node pipeline: where its batches are, its result, its faults.

:class:`Feed` moves one feed's batches from its capture host through the node's pose pool to its
counting host, and recovers when one of them dies; :class:`FeedStatus` is what anyone else reads of
it (a frozen copy); :class:`FeedOrder` is what starts one (its source, job, and where it resumes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from cadence.actors.queues import ActorPool, BoundedQueue
from cadence.actors.stages import StateLost
from cadence.pipelines.errors import CadenceError
from cadence.pipelines.repetitions import FeedCounting, RepetitionCounting
from cadence.pipelines.results import CountResult
from cadence.pipelines.video import DEFAULT_FPS, Source, is_camera, shown

if TYPE_CHECKING:
    from .settings import PipelineSettings

MAX_RECOVERIES = 5  # per feed: hosts that die this many times in a row with no progress between, and
STALL_SECONDS = 30.0  # go on dying for this long without it, fail the feed (a source that kills them)
RESTART_SECONDS = 60.0  # a host Ray is still restarting this long after the feed moved on counts as dying again
LIVE_TIMEOUT = 10.0  # seconds without a frame after which a live source counts as dropped
BACKOFF = (1.0, 30.0)  # reopening a dropped live source: first wait, doubling up to the second
RUNNING = ("starting", "running", "reconnecting")  # a feed's states before it ends or fails


@dataclass(frozen=True)
class FeedOrder:
    """A feed to start: its source, its job (the pipeline's when None), and where it resumes: the
    source from frame ``start`` (a file), the counting session from ``state`` (a snapshot)."""

    name: str
    source: Source
    job: RepetitionCounting | None = None
    start: int = 0
    state: dict | None = field(default=None, repr=False)
    labels: dict[str, str] | None = None  # the node must carry these Ray node labels


@dataclass(frozen=True)
class FeedStatus:
    """What a feed is doing, as last heard: ``state`` is ``starting``, ``running``,
    ``reconnecting``, ``ended`` or ``failed``; ``node`` the Ray node id it runs on; ``moves`` how
    often it was started again on another node after losing its own."""

    name: str
    state: str = "starting"
    node: str | None = None
    frames: int = 0  # read from the source (posed, skipped or dropped)
    frames_dropped: int = 0
    delivered: int = 0  # count batches received
    reconnections: int = 0
    downtime_seconds: float = 0.0
    moves: int = 0
    fps: float = 0.0  # the source's frame rate, once open
    queue_depths: dict[str, int] = field(default_factory=dict)  # batches in flight per stage
    frames_analysed: int = 0  # read to be posed (at most the job's rate a second)

    @property
    def running(self) -> bool:
        return self.state in RUNNING


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


def describe(source: Source) -> str:
    """A source as results name it: a playlist by its first file; a URL without its password."""
    if isinstance(source, (list, tuple)):
        return f"{shown(source[0])} (x{len(source)})"
    return str(shown(source))


def feed_names(sources: Sequence[str]) -> dict[str, str]:
    """Name feeds by their sources, numbering repeats so every name is unique."""
    names: dict[str, str] = {}
    for source in sources:
        name, k = shown(source), 1  # a name is shown: never a URL's password
        while name in names:
            k += 1
            name = f"{shown(source)}#{k}"
        names[name] = source
    return names


@dataclass
class _Entry:
    """One batch of one feed on its way through the stages."""

    poses: ray.ObjectRef | None = None  # (Ray keeps the frames until the pose call is done, for its retries)
    pose_actor: int = -1
    counts: ray.ObjectRef | None = None
    state: ray.ObjectRef | None = None  # the feed's session after this batch
    last_index: int = -1  # the batch's last frame
    frames: int = 0
    preview: ray.ObjectRef | None = None  # a JPEG of its last frame with the people found drawn
    final: bool = False


class Feed:
    """One feed on its node: where its batches are, and its result.

    ``start`` and ``state`` resume a feed: its source from frame ``start`` (a file), its counting
    session from a snapshot.  With ``settings.reconnect``, a camera or stream URL that ends, fails or stays
    silent for ``settings.live_timeout`` seconds once it has delivered, or cannot be opened at all
    (a camera still booting), is reopened with backoff (``state`` is then ``reconnecting``, and its
    warnings say why) while its counting session, and so its count, carries on.
    """

    def __init__(self, name: str, source: Source, job: RepetitionCounting, settings: PipelineSettings,
                 host: int, capture, counter, pool: ActorPool, start: int = 0, state: dict | None = None):
        self.name, self.source, self.job, self.live = name, source, job, job.live
        self.host, self.capture, self.counter, self.pool = host, capture, counter, pool
        self.counting_component: FeedCounting | None = None  # made once the source's frame rate is known
        self.result = CountResult(name, describe(source))
        self.queue = settings.queue(job.live)
        # cameras and stream URLs are reopened when they drop; a file, even read live, ends
        self.reconnect, self.live_timeout = settings.reconnect and is_camera(source), settings.live_timeout
        # a file's batches hold whole pose-tracking segments, so any pose actor poses any of them exactly;
        # a live feed's few frames go to its home actor, which carries its tracking on
        self.batch_size = settings.live_batch_size if job.live else settings.batch_size
        self.pose_home = pool.home() if job.live else None
        self.opening: ray.ObjectRef | None = self._open(start)
        self.state: ray.ObjectRef | None = None  # the session after the last count batch received
        if state is not None:
            self.state = ray.put(state)
            self.result.resume(FeedCounting.tally(state), start)
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
        self.has_delivered_frames = False  # "starting" until it has
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
        self.fps = 0.0  # the source's frame rate, once opened
        self.counted = self.counted_when_sent = 0  # frames counted; and when the last snapshot was sent

    def view(self, node: str | None = None, moves: int = 0) -> FeedStatus:
        """A frozen copy of what the feed is doing."""
        return FeedStatus(self.name, self.state_name, node, self.result.frames, self.result.frames_dropped,
                          self.delivered, self.reconnections, round(self.downtime_seconds, 3), moves,
                          self.fps, {"pose": len(self.posing), "count": len(self.counting)},
                          self.result.frames_analysed)

    def snapshot_due(self, seconds: float) -> bool:
        """Whether ``seconds`` of the stream were counted since the last snapshot sent (see
        :meth:`sent_snapshot`): a period of the stream, not of the clock, so what snapshots cost per
        frame does not depend on how fast the machine is."""
        rate = self.job.analysis_rate(self.fps or DEFAULT_FPS)
        return self.state is not None and self.counted - self.counted_when_sent >= seconds * rate

    def sent_snapshot(self) -> None:
        self.counted_when_sent = self.counted

    @property
    def state_name(self) -> str:
        """``starting``, ``running``, ``reconnecting``, ``ended`` or ``failed``."""
        if self.done:
            return "failed" if self.result.error is not None else "ended"
        if self.down_since is not None:
            return "reconnecting"
        return "running" if self.has_delivered_frames else "starting"

    def _open(self, start: int) -> ray.ObjectRef:
        return self.capture.open.remote(self.name, self.source, self.live, start, self.batch_size,
                                        self.job.rate, self.job.detection_seconds)

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

    def advance(self, ready: set, deliver: Callable[[Feed, pa.RecordBatch], None],
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
            if self.reconnect:  # also a camera still booting when added: it is tried again, as a dropped one
                self._dropped(str(error))
            else:
                self.fail(error)

    # -- the hand-overs ------------------------------------------------------------------------
    def _opened(self) -> None:
        opened, self.opening = _fetch(self.opening), None
        if isinstance(opened, _Lost):
            self._recover_capture(opened)
        else:
            self.fps = opened["fps"] or self.fps
            if self.counting_component is None:  # its windows are in poses at the rate the source is posed at
                self.counting_component = self.job.feed_counting(self.name, self.fps or DEFAULT_FPS)
                self.counter.open.remote(self.name, self.counting_component, self.state)
        self.last_frames_at = time.monotonic()

    def _take_frames(self, on_frames: Callable[[str, int], None] | None) -> None:
        (frames, meta_ref), self.reading = self.reading, None
        meta = _fetch(meta_ref)
        if isinstance(meta, _Lost):
            self._recover_capture(meta)
            return
        self.result.frames_dropped = self.dropped_before + meta["dropped"]
        # frames read from the source (posed, skipped or dropped): a file's are where its reader got to,
        # so frames read again after a lost capture host are not counted twice; a camera's add up
        if is_camera(self.source):
            self.result.frames += meta["frames"]
        else:
            self.result.frames = max(self.result.frames, meta["position"])
        self.result.frames_analysed += meta["posed"]
        if meta["posed"]:
            self.next_index = meta["last_index"] + 1
            self.has_delivered_frames, self.last_frames_at = True, time.monotonic()
            if self.down_since is not None:
                self._back_up()
            entry = _Entry(last_index=meta["last_index"], frames=meta["posed"])
            args = (frames, self.name if self.live else None, self.job.detection_seconds)
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

    def _take_counts(self, ready: set, deliver: Callable[[Feed, pa.RecordBatch], None]) -> None:
        while self.counting and self.counting.head().counts in ready:
            entry = self.counting.head()
            counts = _fetch(entry.counts)
            if isinstance(counts, _Lost):
                self._recover_counting(counts)
                return
            self.counting.pop()
            self.delivered += 1
            self.counted += entry.frames
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
        if self._may_recover(lost) and self.counting_component is not None:
            self.counter.open.remote(self.name, self.counting_component, self.state)
            for entry in self.counting.drain():
                self._submit(entry)


