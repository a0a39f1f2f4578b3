"""One node's share of the counting job: its feeds are read, posed and counted on that node alone.

::

    CaptureHost (many feeds each) -> PoseExtraction (a pool, one per CPU) -> CountingHost (many feeds each)

:class:`NodePipeline` runs these stages for its feeds with every actor pinned to one node
(``NodeAffinitySchedulingStrategy``), so a frame batch goes from its capture host through that
node's object store to a pose actor beside it, and the poses on to the counting host beside them:
no frame leaves the node.  :class:`NodeCounting` is the actor that hosts a NodePipeline on its node
and steps it on a thread of its own; the driver (:class:`~.pipeline.CountingPipeline`) only adds
and removes feeds and polls it for what people read: count updates, the feeds' status, a session
snapshot every ``PipelineSettings.snapshot_seconds`` of each stream, and final results.

A feed costs state, not processes: each capture host reads, and each counting host counts, up to
``feeds_per_host`` feeds, while the node's pose pool, where nearly all the CPU goes, serves every
feed of the node.

Bounds: per feed, at most ``queue_size`` frame batches are being read or posed and as many pose
batches are being counted; over all the node's feeds, at most ``frame_batches`` frame batches exist
at once (enough to keep every pose actor busy), handed out to the feeds in turn.  So a slow stage
holds its producers back, and memory grows with neither the stream's length nor the number of feeds.

Pose tracking (:class:`~cadence.pipelines.posetracking.TrackingPoseExtractor`): a file's batches
hold whole segments of ``detection_seconds``, so any pose actor poses any batch, one feed's
batches in parallel, and exactly as the inline runner does.  A live feed's batches are a few frames,
so they all go to one pose actor (the feed's home, the actor with the fewest), which carries the
feed's tracking on from batch to batch.

Faults: a file's pose calls depend on nothing but their frames, and Ray redoes the calls of a pose
actor that died (a live feed's tracking starts a new segment there, at its next frame).  When a
host dies, Ray restarts it empty; each of its feeds then finds itself unknown there (``StateLost``)
and is opened again: the source where the pipeline had got to, the counting session from the
snapshot after the last count batch received, with the batches after it submitted again.  When the
whole node goes, the driver starts its feeds on other nodes (see :mod:`.pipeline`).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cadence.actors import schemas
from cadence.actors.queues import ActorPool
from cadence.actors.stages import CaptureHost, CountingHost, PoseExtraction
from cadence.pipelines.results import CountResult, CountUpdate
from cadence.pipelines.video import Source

from .feed import Feed, FeedOrder, FeedStatus
from .settings import PipelineSettings

CAPTURE_THREADS = 4  # feeds a capture host reads at once
STATUS_SECONDS = 0.25  # how often a node reports its feeds' statuses, snapshots due and ends
POLL_GATHER = 0.1  # a node answers the driver's polls at most this often (count updates wait at most this)


def node_cpus(node: str) -> int:
    """The CPUs Ray counts on a node (0 for a node it does not know)."""
    for info in ray.nodes():
        if info["NodeID"] == node:
            return int(info.get("Resources", {}).get("CPU", 0))
    return 0


def pinned(node: str) -> dict:
    """Actor options that keep an actor on ``node``, never anywhere else (``soft=False``)."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


class Stepped:
    """:meth:`run` for a pipeline that has ``started``, ``start()``, ``step()`` and ``results``."""

    def run(self, on_update: Callable[[CountUpdate], None] | None = None,
            on_frames: Callable[[str, int], None] | None = None) -> list[CountResult]:
        """Count every feed to its end; returns (and keeps in :attr:`results`) one result per feed."""
        if not self.started:
            self.start()
        while self.step(on_update, on_frames):
            pass
        return self.results


class NodePipeline(Stepped):
    """Counts repetitions on many feeds at once with every stage on one node (this process's node
    by default).

    ``feeds`` maps a feed name to its source (a file, a camera index, a stream URL, or a list of
    files played back to back).  :meth:`run` counts them to their ends, calling ``on_update`` with
    every count as it comes.  A long-running owner (:class:`NodeCounting`) instead adds and removes
    feeds as it goes (:meth:`add`, :meth:`remove`) and calls :meth:`step` in a loop.
    """

    def __init__(self, feeds: dict[str, Source] | None = None, settings: PipelineSettings | None = None,
                 node: str | None = None):
        self.feeds = dict(feeds or {})
        self.settings = settings or PipelineSettings()
        self.node = node or ray.get_runtime_context().get_node_id()
        self._feeds: dict[str, Feed] = {}
        self._pool: ActorPool | None = None
        self.capture_hosts: list = []
        self.counting_hosts: list = []
        self._host_capacity = self.settings.feeds_per_host
        self._turn = 0
        self._on_update: Callable[[CountUpdate], None] | None = None

    def pool_size(self, feeds: int) -> int:
        """One pose actor per CPU of the node, no more than ``feeds`` feeds can keep busy (all of
        them when none are known yet: feeds will come and go)."""
        if self.settings.pose_actors:
            return self.settings.pose_actors
        cpus = max(1, node_cpus(self.node))
        return cpus if not feeds else max(1, min(cpus, feeds * self.settings.queue()))

    def frame_batches(self) -> int:
        return self.settings.frame_batches or 2 * len(self._pool.actors) + 2

    def start(self, orders: Sequence[FeedOrder] | None = None) -> None:
        """Start the pose pool and open every feed given (``orders``, else :attr:`feeds` with the
        settings' job); wait until each pose actor has built its graph."""
        s = self.settings
        orders = list(orders) if orders is not None else [FeedOrder(n, src) for n, src in self.feeds.items()]
        actors = [PoseExtraction.options(**pinned(self.node)).remote() for _ in range(self.pool_size(len(orders)))]
        self._pool = ActorPool(actors)
        hosts = math.ceil(len(orders) / s.feeds_per_host) or 1
        self._host_capacity = math.ceil(len(orders) / hosts) or s.feeds_per_host  # spread evenly
        for order in orders:
            self.add(order.name, order.source, order.job, order.start, order.state)
        if not orders:  # feeds will come (a service): a pair of hosts ready for the first
            self._host_with_room()
        hosts = [h.close.remote("") for h in self.capture_hosts + self.counting_hosts]  # (a no-op: started?)
        ray.get([a.ready.remote() for a in actors] + hosts)
        opening = [f.opening for f in self._feeds.values()]
        ray.wait(opening, num_returns=len(opening))
        for feed in self._feeds.values():
            feed.advance(set(opening), self._deliver, None)
            feed.started = time.perf_counter()
        self._host_capacity = s.feeds_per_host

    def add(self, name: str, source: Source, job=None, start: int = 0, state: dict | None = None) -> None:
        """Open a feed (after :meth:`start`): its source from frame ``start``, its counting session
        from ``state`` (a snapshot from :meth:`snapshot`) when given."""
        if name in self._feeds and not self._feeds[name].done:
            raise ValueError(f"NodePipeline: a feed named {name!r} is running; stop it or choose another name")
        self.feeds[name] = source
        host = self._host_with_room()
        self._feeds[name] = Feed(name, source, job or self.settings.job, self.settings, host,
                                 self.capture_hosts[host], self.counting_hosts[host], self._pool, start, state)

    def _host_with_room(self) -> int:
        """The pair of hosts (capture, counting) holding the fewest feeds, a new pair when all are full."""
        held = [0] * len(self.capture_hosts)
        for feed in self._feeds.values():
            held[feed.host] += not feed.done
        if held and min(held) < self._host_capacity:
            return held.index(min(held))
        here = pinned(self.node)
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

    def feed(self, name: str) -> Feed:
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

    def _deliver(self, feed: Feed, counts: pa.RecordBatch) -> None:
        for update in schemas.batch_to_updates(counts):
            feed.result.record(update)
            if self._on_update is not None:
                self._on_update(update)

    @property
    def started(self) -> bool:
        return self._pool is not None

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

    def _hand_out_frames(self, active: list[Feed]) -> None:
        """Ask for frames in turn, while fewer than ``frame_batches`` are in flight; a feed that has
        not delivered a frame yet (new, or moved here off a lost node) first."""
        room = self.frame_batches() - sum(f.frames_in_flight() for f in active)
        self._turn += 1
        turns = [active[(self._turn + k) % len(active)] for k in range(len(active))]
        for feed in sorted(turns, key=lambda f: f.has_delivered_frames):  # (a stable sort: turns kept)
            if room <= 0:
                return
            if feed.wants_frames():
                feed.read()
                room -= 1

    def close(self) -> None:
        for actor in self.capture_hosts + self.counting_hosts + self.pose_actors:
            ray.kill(actor)


@dataclass
class NodeReport:
    """What a :class:`NodeCounting` has to say since the driver last polled it: count updates in
    order, each changed feed's status, snapshots due (``name -> (resume index, session)``), the
    results of feeds that ended, and how many frame batches reached an actor of another node
    (always 0: the locality check)."""

    node: str
    updates: list[CountUpdate] = field(default_factory=list)
    statuses: dict[str, FeedStatus] = field(default_factory=dict)
    snapshots: dict[str, tuple[int, dict]] = field(default_factory=dict)
    results: dict[str, CountResult] = field(default_factory=dict)
    foreign_batches: int = 0
    error: BaseException | None = None

    def empty(self) -> bool:
        return not (self.updates or self.statuses or self.snapshots or self.results or self.error)


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4, enable_task_events=False)
class NodeCounting:
    """Hosts a :class:`NodePipeline` on the node it was placed on, and steps it on a thread of its
    own.  The driver's calls (:meth:`add`, :meth:`remove`) are queued and run by that thread between
    steps; :meth:`poll` hands over what happened since the last poll.  If this actor or its node
    dies, the driver starts the feeds again elsewhere from their last snapshots."""

    def __init__(self, settings: PipelineSettings):
        self.settings = settings
        self.node = ray.get_runtime_context().get_node_id()
        self.pipeline = NodePipeline({}, settings, self.node)
        self._commands: queue.Queue = queue.Queue()
        self._ready = threading.Condition()
        self._report = NodeReport(self.node)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused = False
        self._polled = 0.0  # when the last poll answered

    def start(self, orders: Sequence[FeedOrder] = ()) -> str:
        """Start the node's pose pool and hosts with these feeds, and the stepping thread; returns the node id."""
        self.pipeline.start(orders)
        self._thread = threading.Thread(target=self._drive, name="cadence-node-driver", daemon=True)
        self._thread.start()
        return self.node

    def add(self, order: FeedOrder) -> None:
        self._commands.put(lambda: self.pipeline.add(order.name, order.source, order.job, order.start, order.state))

    def remove(self, name: str) -> None:
        self._commands.put(lambda: self.pipeline.remove(name))

    def poll(self, timeout: float = 0.5) -> NodeReport:
        """What happened since the last poll; waits up to ``timeout`` seconds for something to say,
        and answers at most every ``POLL_GATHER`` seconds, so a busy node's news come in a few
        reports a second (the driver's work grows with reports, not with feeds)."""
        time.sleep(max(0.0, self._polled + POLL_GATHER - time.monotonic()))
        with self._ready:
            if self._report.empty():
                self._ready.wait(timeout)
            report, self._report = self._report, NodeReport(self.node)
        self._polled = time.monotonic()
        return report

    def pause(self) -> dict[str, tuple[int, dict]]:
        """Stop stepping (the driver is stopping), and return every running feed's resume point and
        session now: every update they count was published before, and none will come after."""
        done: queue.Queue = queue.Queue()

        def pause() -> None:
            self._paused = True
            done.put({name: self.pipeline.snapshot(name) for name, feed in self.pipeline._feeds.items()
                      if not feed.done and feed.state is not None})
        self._commands.put(pause)
        return done.get(timeout=60)

    def preview(self, name: str) -> bytes | None:
        """A JPEG of a recent frame of the feed with the people found drawn, if one was made."""
        try:
            ref = self.pipeline.feed(name).preview
        except KeyError:
            return None
        return ray.get(ref) if ref is not None else None

    def stage_actors(self) -> dict[str, list]:
        """The node's actors by stage (for fault-injection benchmarks and tests)."""
        return {"capture": list(self.pipeline.capture_hosts), "pose": list(self.pipeline.pose_actors),
                "counting": list(self.pipeline.counting_hosts)}

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pipeline.close()

    # -- on the stepping thread ----------------------------------------------------------------
    def _drive(self) -> None:
        last: dict[str, FeedStatus] = {}
        looked = 0.0
        try:
            while not self._stopping.is_set():
                self._run_commands()
                if self._paused:
                    self._stopping.wait(0.05)
                    continue
                updates: list[CountUpdate] = []
                if not self.pipeline.step(updates.append, timeout=0.05):
                    self._stopping.wait(0.02)
                # updates go at once (latency); the feeds' statuses, snapshots and ends a few times a second
                if time.monotonic() - looked >= STATUS_SECONDS:
                    looked = time.monotonic()
                    self._publish(updates, last)
                elif updates:
                    self._publish(updates)
        except BaseException as e:  # noqa: BLE001  (handed to the driver, which moves the feeds)
            with self._ready:
                self._report.error = e
                self._ready.notify_all()

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _publish(self, updates: list[CountUpdate], last: dict[str, FeedStatus] | None = None) -> None:
        """Add what changed to the report: new updates, and with ``last`` (the statuses sent so
        far), changed statuses, snapshots due and results."""
        statuses, snapshots, results = {}, {}, {}
        for name, feed in list(self.pipeline._feeds.items()) if last is not None else ():
            if name in results or (name in last and not last[name].running):
                continue
            status = feed.view(self.node)
            if status != last.get(name):
                statuses[name] = last[name] = status
            if feed.done:
                results[name] = replace(feed.result, latencies=[], repetitions=[])  # the driver has them
            elif feed.snapshot_due(self.settings.snapshot_seconds):
                snapshots[name] = (feed.resume_index, ray.get(feed.state))
                feed.sent_snapshot()
        if updates or statuses or snapshots or results:
            with self._ready:
                r = self._report
                r.updates += updates
                r.statuses.update(statuses)
                r.snapshots.update(snapshots)
                r.results.update(results)
                self._ready.notify_all()
