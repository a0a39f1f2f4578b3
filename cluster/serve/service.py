"""The counting service behind ``cadence serve``: feeds that come and go, on the actor pipeline.

One :class:`~cadence.cluster.counting.pipeline.CountingPipeline` (the same job and actors as ``cadence
count``) runs for the service's whole life on a driver thread of its own.  The HTTP handlers never
touch it: they queue commands (add a feed, stop one) that the driver thread runs between steps, and
read the feeds' views, which the driver thread replaces after every step.  Live sources are reopened
with backoff when they drop (``PipelineSettings.reconnect``), and each feed keeps a recent frame
with the people found drawn on it, for the page.

Everything a feed produces goes to a :class:`~cadence.cluster.serve.store.CountStore` as it comes,
with each snapshot of its counting session its node sends (every ``snapshot_seconds`` of the
stream); a service started on the same store brings back the feeds that were running, from there.  Count updates, repetitions and
state changes are also published to subscribers (the server's Server-Sent Events), each through a
bounded queue of its own, so a slow client loses its own oldest events and holds up nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from cadence.pipelines.errors import InputError, ParameterError
from cadence.pipelines.repetitions import FeedCounting, RepetitionCounting
from cadence.pipelines.results import CountUpdate
from cadence.pipelines.video import Source, is_camera, shown

from cadence.cluster.serve.store import CountStore, StoredFeed
from cadence.cluster.counting.feed import RUNNING
from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings, describe

SAVE_SECONDS = 5.0  # how often each running feed's figures are written to the store (snapshots: as they come)
RECENT = 500  # the latest updates whose latencies a feed's p50 and p95 are of
SUBSCRIBER_QUEUE = 256  # events a slow subscriber may fall behind by before its oldest are dropped


@dataclass
class FeedSpec:
    """A feed to count, as ``POST /feeds`` gives it.  ``live`` defaults to True for cameras and
    stream URLs, False for files (read as fast as the pipeline goes); ``rate``, ``window_seconds``
    and ``stride_seconds`` to the job's (15 frames posed a second, 3 s, 0.5 s or the window if
    shorter; ``rate`` None: every frame)."""

    source: Source
    name: str | None = None
    live: bool | None = None
    strategy: str = RepetitionCounting.strategy
    window_seconds: float = RepetitionCounting.window_seconds
    stride_seconds: float | None = RepetitionCounting.stride_seconds
    per_person: bool = True
    labels: dict[str, str] | None = None  # run it on a node carrying these Ray node labels
    rate: float | None = RepetitionCounting.rate

    @classmethod
    def stored(cls, source: Source, name: str, settings: dict) -> FeedSpec:
        """The spec of a feed in the store.  One stored before analysis rates had its windows in
        frames at 30 fps and posed every frame: it resumes so, its snapshot being of that job."""
        settings = dict(settings)
        if "window" in settings:
            settings["window_seconds"] = settings.pop("window") / 30
            stride = settings.pop("stride", None)
            settings["stride_seconds"] = None if stride is None else stride / 30
            settings.setdefault("rate", None)
        return cls(source, name, **settings)

    def checked(self) -> FeedSpec:
        """The spec with its defaults filled in; an :class:`InputError` names a bad field."""
        if isinstance(self.source, str) and not self.source.strip() or isinstance(self.source, list) and not self.source:
            raise InputError("source", "is empty", "give a video file, a camera index or a stream URL")
        try:
            self.job().check_params()
        except ParameterError as e:
            raise InputError(e.parameter, e.problem[len(e.parameter) + 1:]) from None
        live = is_camera(self.source) if self.live is None else self.live
        name = self.name or (describe(self.source) if is_camera(self.source) else Path(describe(self.source)).name)
        return FeedSpec(self.source, name, live, self.strategy, self.window_seconds, self.stride_seconds,
                        self.per_person, dict(self.labels) if self.labels else None, self.rate)

    def job(self) -> RepetitionCounting:
        return RepetitionCounting(window_seconds=self.window_seconds, stride_seconds=self.stride_seconds,
                                  strategy=self.strategy, live=bool(self.live), per_person=self.per_person,
                                  rate=self.rate)


@dataclass
class FeedView:
    """What the API shows of a feed."""

    id: str
    name: str
    source: Any
    live: bool
    state: str
    count: float = 0.0
    people: dict[str, float] = field(default_factory=dict)
    frames: int = 0  # read from the source (posed, skipped at the feed's rate, or dropped)
    frames_dropped: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    reconnections: int = 0
    downtime_seconds: float = 0.0
    node: str | None = None  # the Ray node id it runs on
    moves: int = 0  # times it was started again on another node after losing its own
    error: str | None = None
    created: float = 0.0
    settings: dict = field(default_factory=dict)
    frames_analysed: int = 0  # read to be posed (while it runs; then as stored: 0)
    pose_coverage: float | None = None  # see FeedTally: from its latest snapshot while it runs, then its end
    reliability: float | None = None

    def to_dict(self) -> dict:
        """As the API shows it: a URL's password left out (the store keeps the source whole, to
        reopen it)."""
        return asdict(self) | {"source": shown(self.source)}


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)

    def put(self, event: dict) -> None:  # on the subscriber's event loop
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


class CountingService:
    """Counts the feeds it is given until :meth:`stop`; thread-safe methods for the HTTP side."""

    def __init__(self, store: CountStore, settings: PipelineSettings | None = None):
        self.store = store
        self.settings = settings or PipelineSettings(reconnect=True, preview_seconds=1.0)
        self.pipeline: CountingPipeline | None = None
        self._views: dict[str, FeedView] = {}
        self._commands: queue.Queue = queue.Queue()
        self._subscribers: dict[str, list[_Subscriber]] = collections.defaultdict(list)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._saved: dict[str, float] = {}  # when each feed's figures were last written
        self._before_restart: dict[str, tuple[int, float]] = {}  # reconnections and downtime before a restart
        self._snapshots: dict[str, tuple] = {}  # the snapshot last written of each feed
        self._delivered: dict[str, int] = {}  # count batches each feed had when its latencies were summarised
        self._depths: dict[str, dict[str, int]] = {}  # running feeds' batches in flight per stage
        self._nodes: list[dict] = []  # the pipeline's nodes, as of the last step
        self.started_at = time.time()
        self.error: BaseException | None = None

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the pose pool, bring back the stored feeds, and start the driver thread."""
        self.pipeline = CountingPipeline({}, self.settings)
        self.pipeline.start(warm=True)
        for stored in self.store.feeds():
            self._views[stored.id] = self._view_of_stored(stored)
            self._before_restart[stored.id] = (stored.reconnections, stored.downtime)
            if stored.state in RUNNING:
                self._resume(stored)
        self._thread = threading.Thread(target=self._drive, name="cadence-serve-driver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Pause every feed and write its figures and session snapshot (a restart resumes it from
        there), then stop the pipeline."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        if self.pipeline is not None:
            self.pipeline.pause(self._on_update)  # every feed's session now, and the updates before it
            for feed_id, view in self._views.items():
                if view.state in RUNNING:
                    self._save(feed_id)
            self.pipeline.close()
            self.pipeline = None

    def _drive(self) -> None:
        try:
            while not self._stopping.is_set():
                self._run_commands()
                if not self.pipeline.step(self._on_update, timeout=0.1):
                    time.sleep(0.05)
                self._refresh()
        except BaseException as e:  # noqa: BLE001  (reported by /health and the log, not lost in a thread)
            self.error = e
            raise

    def _run_commands(self) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(command())
            except Exception as e:  # noqa: BLE001  (handed to the caller)
                future.set_exception(e)

    def _call(self, command: Callable[[], Any]) -> Any:
        """Run ``command`` on the driver thread and return its result (raising its error)."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the counting service is not running")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put((command, future))
        return future.result(timeout=60)

    # -- feeds --------------------------------------------------------------------------------
    def add(self, spec: FeedSpec) -> FeedView:
        """Start counting a feed; returns its view (state ``starting``)."""
        spec = spec.checked()
        return self._call(lambda: self._add(spec))

    def _add(self, spec: FeedSpec) -> FeedView:
        feed_id = uuid.uuid4().hex[:8]
        settings = {"live": spec.live, "strategy": spec.strategy, "rate": spec.rate,
                    "window_seconds": spec.window_seconds, "stride_seconds": spec.stride_seconds,
                    "per_person": spec.per_person} | ({"labels": spec.labels} if spec.labels else {})
        stored = StoredFeed(feed_id, spec.name, spec.source, settings, time.time(), "starting")
        self.store.add_feed(stored)
        self._views[feed_id] = self._view_of_stored(stored)
        self.pipeline.add(feed_id, spec.source, spec.job(), labels=spec.labels)
        self._refresh()
        return self._views[feed_id]

    def _resume(self, stored: StoredFeed) -> None:
        spec = FeedSpec.stored(stored.source, stored.name, stored.settings)
        self.store.rewind(stored.id)
        start = 0 if is_camera(spec.source) else stored.resume_index
        self.pipeline.add(stored.id, spec.source, spec.job(), start=start, state=stored.snapshot, labels=spec.labels)

    def remove(self, feed_id: str) -> FeedView:
        """Stop a feed; it stays listed, with its final count."""
        if feed_id not in self._views:
            raise KeyError(feed_id)
        return self._call(lambda: self._remove(feed_id))

    def _remove(self, feed_id: str) -> FeedView:
        if self._views[feed_id].state in RUNNING:
            self.pipeline.remove(feed_id)
            self._refresh()
        return self._views[feed_id]

    def feeds(self) -> list[FeedView]:
        return list(self._views.values())

    def feed(self, feed_id: str) -> FeedView:
        return self._views[feed_id]

    def history(self, feed_id: str) -> list[dict]:
        return self.store.history(feed_id)

    def repetitions(self, feed_id: str) -> list[dict]:
        return self.store.repetitions(feed_id)

    def preview(self, feed_id: str) -> bytes | None:
        """A JPEG of a recent frame of the feed with the people found drawn, if one was made."""
        if feed_id not in self._depths:  # a feed that ended before this service started
            return None
        ref = self._call(lambda: self.pipeline.preview(feed_id))
        try:
            return ray.get(ref, timeout=10) if ref is not None else None
        except (ray.exceptions.RayError, TimeoutError):  # its node went, or is too busy to answer now
            return None

    def queue_depths(self) -> dict[str, dict[str, int]]:
        """Batches in flight per running feed and stage, as last heard from its node."""
        return dict(self._depths)

    def nodes(self) -> list[dict]:
        """Each node running feeds: id, address, CPUs, feeds and frames read there."""
        return list(self._nodes)

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, feed_id: str) -> _Subscriber:
        """Events of one feed from now on, into an asyncio queue of the calling event loop."""
        self.feed(feed_id)
        subscriber = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            self._subscribers[feed_id].append(subscriber)
        return subscriber

    def unsubscribe(self, feed_id: str, subscriber: _Subscriber) -> None:
        with self._lock:
            self._subscribers[feed_id].remove(subscriber)

    def _publish(self, feed_id: str, event: dict) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(feed_id, ()))
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, event)
            except RuntimeError:  # its loop has closed
                pass

    # -- on the driver thread -----------------------------------------------------------------
    def _on_update(self, update: CountUpdate) -> None:
        feed_id = update.feed
        self.store.add_updates(feed_id, [update], [update.people])
        self._publish(feed_id, {"event": "count", "data": {
            "count": round(update.count, 3), "frame_index": update.frame_index,
            "timestamp": round(update.timestamp, 3), "at": time.time(), "people": update.people or {}}})
        for repetition in update.repetitions:
            self._publish(feed_id, {"event": "repetition", "data": repetition.to_dict()})

    def _refresh(self) -> None:
        """New views of the running feeds; state changes to the store and subscribers; snapshots."""
        now = time.monotonic()
        self._nodes = self.pipeline.nodes()
        for feed_id, old in list(self._views.items()):
            if old.state not in RUNNING:
                continue
            status, result = self.pipeline.status(feed_id), self.pipeline.result(feed_id)
            p50, p95 = old.latency_p50, old.latency_p95
            if self._delivered.get(feed_id) != len(result.latencies) and result.latencies:
                self._delivered[feed_id] = len(result.latencies)
                p50, p95 = np.percentile(result.latencies[-RECENT:], [50, 95]).round(3).tolist()
            reconnections, downtime = self._before_restart.get(feed_id, (0, 0.0))
            view = FeedView(old.id, old.name, old.source, old.live, status.state, round(result.count, 3),
                            result.people or old.people, result.frames, result.frames_dropped, p50, p95,
                            reconnections + status.reconnections, round(downtime + status.downtime_seconds, 3),
                            status.node, status.moves,
                            str(result.error) if result.error else None, old.created, old.settings,
                            result.frames_analysed, *self._confidence(feed_id, result, old))
            self._views[feed_id] = view
            if status.running:
                self._depths[feed_id] = dict(status.queue_depths)
            else:
                self._depths.pop(feed_id, None)
            if view.state != old.state:
                self._save(feed_id)
                self._publish(feed_id, {"event": "state", "data": {"state": view.state, "error": view.error}})
            elif self.pipeline.snapshot(feed_id) is not self._snapshots.get(feed_id):
                self._save(feed_id)  # now: the store holds exactly the updates counted before it
            elif now - self._saved.get(feed_id, 0.0) >= SAVE_SECONDS:
                self._save(feed_id, figures_only=True)

    def _confidence(self, feed_id: str, result, old: FeedView) -> tuple[float | None, float | None]:
        """(pose_coverage, reliability): the result's once it has ended, else from the feed's latest
        snapshot (every few seconds of its stream), else as shown before."""
        if result.reliability is not None:
            return round(result.pose_coverage, 3), round(result.reliability, 3)
        state = self.pipeline.snapshot(feed_id)[1]
        if state is None:
            return old.pose_coverage, old.reliability
        tally = FeedCounting.tally(state)
        return round(tally.pose_coverage, 3), round(tally.reliability, 3)

    def _save(self, feed_id: str, figures_only: bool = False) -> None:
        """Write a feed's figures, and (unless ``figures_only``) while it runs, the latest session
        snapshot its node sent, to the store.  A snapshot is saved as it arrives, when every update
        counted before it has been stored and none after it: a restart rewinds to it exactly."""
        view = self._views[feed_id]
        values: dict[str, Any] = {"state": view.state, "count": view.count, "people": view.people,
                                  "frames": view.frames, "frames_dropped": view.frames_dropped,
                                  "downtime": view.downtime_seconds, "reconnections": view.reconnections,
                                  "error": view.error}
        if view.state in RUNNING:
            snapshot = self.pipeline.snapshot(feed_id)
            if not figures_only and snapshot is not self._snapshots.get(feed_id):  # (each written once)
                values["resume_index"], values["snapshot"] = snapshot
                self._snapshots[feed_id] = snapshot
        else:
            values["snapshot"] = None
        self.store.update_feed(feed_id, **values)
        self._saved[feed_id] = time.monotonic()

    @staticmethod
    def _view_of_stored(stored: StoredFeed) -> FeedView:
        return FeedView(stored.id, stored.name, stored.source, bool(stored.settings.get("live")), stored.state,
                        stored.count, stored.people or {}, stored.frames, stored.frames_dropped,
                        reconnections=stored.reconnections, downtime_seconds=stored.downtime, error=stored.error,
                        created=stored.created,
                        settings=stored.settings)
