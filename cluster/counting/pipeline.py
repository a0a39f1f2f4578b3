"""The repetition-counting job on Ray: many feeds at once, each living on one node.

::

    driver (this process)            node A                                node B
    CountingPipeline  --orders-->  NodeCounting: capture -> pose -> count   NodeCounting: ...
                      <--counts, status, snapshots every 10 s of stream--

Each feed is placed on one node (:mod:`.placement`: the node with the most pose capacity left,
among those carrying the labels it asks for), where a :class:`~.node.NodeCounting` actor reads,
poses and counts it with every stage on that node (:mod:`.node`): its frames never leave the node.
What crosses to the driver is what people read: count updates, each feed's status, a snapshot of
its counting session every ``snapshot_seconds`` of its stream, its result, and a preview JPEG only
when someone asks for one.

A node that joins takes new feeds.  A node that is lost hands its feeds to the others: a file
resumes from the frame after its last snapshot with the session of then, and the updates it counts
again up to where the driver had got are dropped, so it ends with exactly the count of an
uninterrupted run and nothing is counted twice; a camera reopens on its new node with the count of
its last snapshot (the repetitions of the seconds between are lost, and a warning says so).

On one machine this is one node: the same actors as ever, beside one NodeCounting.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from cadence.pipelines.errors import CadenceError
from cadence.pipelines.repetitions import FeedCounting
from cadence.pipelines.results import CountResult, CountUpdate
from cadence.pipelines.video import Source, is_camera

from .feed import FeedOrder, FeedStatus, describe, feed_names
from .node import NodeCounting, NodePipeline, NodeReport, Stepped, pinned
from .placement import NodeInfo, NoNodeError, choose_node, live_nodes, need_of
from .settings import PipelineSettings

__all__ = ["CountingPipeline", "PipelineSettings", "FeedStatus", "NodePipeline", "count_feeds", "feed_names",
           "describe"]

MEMBERSHIP_SECONDS = 2.0  # how often the driver looks for nodes that joined or left
POLL_SECONDS = 0.25  # a node answers a poll at once when it has news, else after this long
MAX_MOVES = 5  # a feed whose node is lost this often with no count between fails (a source that kills them)
QUARANTINE_SECONDS = 30.0  # a node whose counting actor died takes no feed for this long, if others can


@dataclass
class _Record:
    """The driver's side of one feed: where it runs, what it has delivered, where it would resume."""

    order: FeedOrder
    result: CountResult
    status: FeedStatus
    resume: tuple[int, dict | None]  # (frame, session) of the last snapshot received
    added: float = field(default_factory=time.perf_counter)
    last_frame: int = -1  # frame index of the last update delivered
    replay_until: int = -1  # a moved file's updates up to this frame were delivered already
    frames_seen: int = 0  # frames reported to ``on_frames`` so far
    moves: int = 0
    moves_in_a_row: int = 0  # moves with no update delivered between
    waiting_since: float | None = None  # when it began to wait for a node it may run on
    warnings: list[str] = field(default_factory=list)  # the driver's own (moves)
    done: bool = False

    @property
    def node(self) -> str | None:
        return self.status.node


@dataclass
class _Node:
    """A node the driver runs feeds on: its NodeCounting, the poll in flight, its frames counted."""

    info: NodeInfo
    actor: object
    started: ray.ObjectRef
    poll: ray.ObjectRef | None = None


class CountingPipeline(Stepped):
    """Counts repetitions on many feeds at once on the connected Ray cluster, each feed on one node.

    ``feeds`` maps a feed name to its source (a file, a camera index, a stream URL, or a list of
    files played back to back).  :meth:`run` counts them to their ends, calling ``on_update`` with
    every count as it comes.  A long-running owner (``cadence serve``) instead adds and removes
    feeds as it goes (:meth:`add`, :meth:`remove`) and calls :meth:`step` in a loop, reading each
    feed's :meth:`status` and :meth:`result`.
    """

    def __init__(self, feeds: dict[str, Source] | None = None, settings: PipelineSettings | None = None,
                 labels: dict[str, dict[str, str]] | None = None, measure_bytes: bool = False):
        self.feeds = dict(feeds or {})
        self.settings = settings or PipelineSettings()
        self.labels = dict(labels or {})  # feed name -> the Ray node labels its node must carry
        self._records: dict[str, _Record] = {}
        self._nodes: dict[str, _Node] = {}
        self._known: list[NodeInfo] = []
        self._looked = 0.0
        self._waiting: list[str] = []  # feeds with no node to run on yet (a node lost; labels nobody has)
        self._quarantine: dict[str, float] = {}  # node -> until when: its actor died, Ray may not know yet
        self._starting: dict[str, list[FeedOrder]] | None = None  # during start: each node's orders
        self.here = ""  # the driver's node
        # with measure_bytes (benchmarks): the pickled sizes of what went between the driver and other nodes
        self.measure_bytes, self.cross_node_bytes = measure_bytes, 0
        self.node_losses: list[dict] = []  # {"node", "at", "feeds", "why"} for each node lost
        self.node_frames: dict[str, int] = {}  # frames read on each node, lost ones too
        self.moves: list[dict] = []  # {"feed", "node", "running_at"}: a moved feed running again
        self.reports = 0  # node reports taken

    # -- life ---------------------------------------------------------------------------------
    def start(self, warm: bool = False) -> None:
        """Place every feed given, start a NodeCounting on each node that got one, and wait until
        each has its pose pool ready.  With ``warm`` and no feeds yet (a service), start the node a
        first feed would go to now, without waiting for it: that feed then starts at once instead
        of after a pool's start (3.5 s here)."""
        self.here = ray.get_runtime_context().get_node_id()
        self._look_at_nodes(force=True)
        self._starting = {}
        for name, source in self.feeds.items():
            self.add(name, source, labels=self.labels.get(name))
        for node_id, orders in self._starting.items():  # each node's pool sized for the feeds it got
            info = next(n for n in self._known if n.id == node_id)
            actor = NodeCounting.options(**pinned(node_id)).remote(self.settings)
            self._nodes[node_id] = _Node(info, actor, actor.start.remote(orders))
        self._starting = None
        started = [node.started for node in self._nodes.values()]
        ray.wait(started, num_returns=len(started))  # (a node that failed to start: see _check_started)
        if warm and not self._nodes:
            with contextlib.suppress(NoNodeError):  # none with CPUs yet: the first feed waits for one
                info = choose_node(self._known, {}, self.settings.pose_frames_per_cpu)
                actor = NodeCounting.options(**pinned(info.id)).remote(self.settings)
                self._nodes[info.id] = _Node(info, actor, actor.start.remote())

    def close(self) -> None:
        stopping = [node.actor.stop.remote() for node in self._nodes.values()]
        ray.wait(stopping, num_returns=len(stopping), timeout=15)
        for node in self._nodes.values():
            ray.kill(node.actor)
        self._nodes.clear()

    # -- feeds --------------------------------------------------------------------------------
    def add(self, name: str, source: Source, job=None, start: int = 0, state: dict | None = None,
            labels: dict[str, str] | None = None) -> None:
        """Start a feed on the node with the most pose capacity left (among those carrying
        ``labels``): its source from frame ``start``, its counting session from ``state`` (a
        snapshot from :meth:`snapshot`) when given."""
        if name in self._records and not self._records[name].done:
            raise ValueError(f"CountingPipeline: a feed named {name!r} is running; stop it or choose another name")
        self.feeds[name] = source
        order = FeedOrder(name, source, job, start, state, labels)
        result = CountResult(name, describe(source))
        if state is not None:
            result.resume(FeedCounting.tally(state), start)
        self._records[name] = _Record(order, result, FeedStatus(name, frames=result.frames), (start, state),
                                      frames_seen=result.frames)
        self._place(name)

    def remove(self, name: str) -> CountResult:
        """Stop a feed where it is; its result (the count so far) stays in :attr:`results`."""
        record = self._records[name]
        if not record.done:
            node = self._nodes.get(record.node)
            if node is not None:
                node.actor.remove.remote(name)
            self._end(record, replace(record.status, state="ended"))
        return record.result

    def status(self, name: str) -> FeedStatus:
        """What the feed is doing, as last heard (KeyError for a feed never added)."""
        return self._records[name].status

    def result(self, name: str) -> CountResult:
        return self._records[name].result

    def snapshot(self, name: str) -> tuple[int, dict | None]:
        """Where a feed can resume: the frame after the last one counted at its latest snapshot,
        and its session then."""
        return self._records[name].resume

    def pause(self, on_update: Callable[[CountUpdate], None] | None = None) -> None:
        """Stop every node's feeds where they are (``cadence serve`` stopping): take what the nodes
        reported until then (``on_update`` gets the updates), and their sessions now, so that each
        feed's :meth:`snapshot` holds exactly the updates delivered.  Then only :meth:`close`."""
        pausing = {node_id: node.actor.pause.remote() for node_id, node in self._nodes.items()}
        for node_id, ref in pausing.items():
            node = self._nodes.get(node_id)
            if node is None:  # lost while pausing the others
                continue
            try:
                snapshots = ray.get(ref, timeout=60)
                for poll in (node.poll, node.actor.poll.remote(0.0)):  # the poll in flight, then the rest
                    if poll is not None:
                        self._take(ray.get(poll, timeout=60), on_update, None)
                node.poll = None
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                continue  # a node lost now: its feeds resume from their last snapshot
            for name, resume in snapshots.items():
                if name in self._records and self._records[name].node == node_id:
                    self._records[name].resume = resume

    def preview(self, name: str) -> ray.ObjectRef | None:
        """A reference to a JPEG of a recent frame of the feed (None if it has no node)."""
        node = self._nodes.get(self._records[name].node) if name in self._records else None
        return node.actor.preview.remote(name) if node is not None else None

    @property
    def results(self) -> list[CountResult]:
        return [record.result for record in self._records.values()]

    def node_of(self, name: str) -> str | None:
        return self._records[name].node

    def nodes(self) -> list[dict]:
        """Each node running feeds: its id, address, CPUs, feeds running there and frames counted there."""
        running: dict[str, int] = {}
        for record in self._records.values():
            if not record.done and record.node:
                running[record.node] = running.get(record.node, 0) + 1
        return [{"node": node_id, "address": node.info.address, "cpus": node.info.cpus,
                 "feeds": running.get(node_id, 0), "frames": self.node_frames.get(node_id, 0)}
                for node_id, node in self._nodes.items()]

    def stage_actors(self) -> dict[str, list]:
        """Every node's actors by stage (capture, pose, counting), for fault-injection benchmarks and tests."""
        actors: dict[str, list] = {"capture": [], "pose": [], "counting": []}
        for stages in ray.get([node.actor.stage_actors.remote() for node in self._nodes.values()]):
            for stage, handles in stages.items():
                actors[stage] += handles
        return actors

    def foreign_batches(self) -> int:
        """Frame and pose batches that reached an actor on another node than the one that made them."""
        actors = self.stage_actors()
        return sum(ray.get([a.foreign_batches.remote() for a in actors["pose"] + actors["counting"]]))

    # -- the loop -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self.here)

    def step(self, on_update: Callable[[CountUpdate], None] | None = None,
             on_frames: Callable[[str, int], None] | None = None, timeout: float = 1.0) -> bool:
        """Take what the nodes have to say, waiting at most ``timeout`` seconds for some; move the
        feeds of a lost node.  False when no feed is left running."""
        if not any(not r.done for r in self._records.values()):
            return False
        self._look_at_nodes()
        self._check_started()
        for node in self._nodes.values():
            if node.poll is None:
                node.poll = node.actor.poll.remote(POLL_SECONDS)
        polls = {node.poll: node_id for node_id, node in self._nodes.items()}
        if polls:
            ready, _ = ray.wait(list(polls), num_returns=1, timeout=timeout)
            ready = ray.wait(list(polls), num_returns=len(polls), timeout=0)[0] if ready else []
        else:
            time.sleep(min(timeout, 0.1))
            ready = []
        for ref in ready:
            node_id = polls[ref]
            self._nodes[node_id].poll = None
            try:
                report = ray.get(ref)
            except (RayActorError, ActorUnavailableError) as e:
                self._lost(node_id, f"its counting actor died ({type(e).__name__})")
                continue
            self._take(report, on_update, on_frames)
        return any(not r.done for r in self._records.values())

    def _take(self, report: NodeReport, on_update, on_frames) -> None:
        self.reports += 1
        if self.measure_bytes and report.node != self.here:
            self.cross_node_bytes += len(pickle.dumps(report, protocol=5))
        for update in report.updates:
            record = self._records.get(update.feed)
            if record is not None and record.node == report.node and not record.done and self._fresh(record, update):
                record.last_frame, record.moves_in_a_row = update.frame_index, 0
                record.result.record(update)
                if on_update is not None:
                    on_update(update)
        for name, resume in report.snapshots.items():
            if name in self._records and self._records[name].node == report.node:
                self._records[name].resume = resume
        for name, status in report.statuses.items():
            record = self._records.get(name)
            if record is None or record.done or record.node != report.node:
                continue
            new = max(0, status.frames - record.frames_seen)
            record.frames_seen += new
            self.node_frames[report.node] = self.node_frames.get(report.node, 0) + new
            if record.moves and status.state == "running" and record.status.state != "running":
                self.moves.append({"feed": name, "node": report.node, "running_at": time.time()})
            record.status = replace(status, moves=record.moves)
            record.result.frames, record.result.frames_dropped = status.frames, status.frames_dropped
            record.result.frames_analysed = status.frames_analysed
            record.result.node = status.node
            if new and on_frames is not None:
                on_frames(name, new)
        for name, result in report.results.items():
            record = self._records.get(name)
            if record is not None and not record.done and record.node == report.node:
                self._conclude(record, result)
        if report.error is not None:
            self._lost(report.node, f"its counting loop failed: {report.error!r}")

    def _fresh(self, record: _Record, update: CountUpdate) -> bool:
        """False for an update a moved feed counted again: a file's up to where the driver had got
        (the same update, delivered already), a camera's whose count is below the one shown."""
        if update.frame_index <= record.replay_until:
            return False
        if is_camera(record.order.source) and record.moves and update.count < record.result.count:
            return False
        record.replay_until = -1
        return True

    def _conclude(self, record: _Record, result: CountResult) -> None:
        """The node's final result, with what the driver kept: latencies, repetitions, moves."""
        kept = record.result
        result.latencies, result.repetitions = kept.latencies, kept.repetitions
        result.recoveries += kept.recoveries
        result.warnings = record.warnings + result.warnings
        result.processing_seconds = time.perf_counter() - record.added
        if result.people is None:
            result.people = kept.people
        result.node = record.node
        record.result = result
        self._end(record, replace(record.status, state="failed" if result.error is not None else "ended"))

    def _end(self, record: _Record, status: FeedStatus) -> None:
        record.done, record.status = True, status
        if record.result.processing_seconds == 0:
            record.result.processing_seconds = time.perf_counter() - record.added
        if record.order.name in self._waiting:
            self._waiting.remove(record.order.name)

    # -- nodes --------------------------------------------------------------------------------
    def _look_at_nodes(self, force: bool = False) -> None:
        """Every ``MEMBERSHIP_SECONDS``: learn the nodes that joined (they take new feeds, and
        feeds waiting for a node), and lose the ones Ray no longer counts alive."""
        if not force and time.monotonic() - self._looked < MEMBERSHIP_SECONDS:
            return
        self._looked = time.monotonic()
        self._known = live_nodes()
        alive = {n.id for n in self._known}
        for node_id in [n for n in self._nodes if n not in alive]:
            self._lost(node_id, "Ray counts it dead")
        for name in list(self._waiting):
            self._waiting.remove(name)
            self._place(name)

    def _check_started(self) -> None:
        """Lose a node whose counting actor failed to start (its pose pool, say)."""
        for node_id, node in list(self._nodes.items()):
            if node.started is not None and ray.wait([node.started], timeout=0)[0]:
                try:
                    ray.get(node.started)
                    node.started = None
                except ray.exceptions.RayError as e:
                    self._lost(node_id, f"its counting actor failed to start: {e}")

    def _place(self, name: str) -> None:
        record = self._records[name]
        needs: dict[str, list[float]] = {}
        for other in self._records.values():
            if not other.done and other.node and other is not record:
                job = other.order.job or self.settings.job
                needs.setdefault(other.node, []).append(need_of(other.status.fps, job))
        now = time.monotonic()
        healthy = [n for n in self._known if self._quarantine.get(n.id, 0) < now]
        try:
            info = choose_node(healthy or self._known, needs, self.settings.pose_frames_per_cpu,
                               record.order.labels, name)
        except NoNodeError as e:
            # a service's feed waits for a node to join; so does a moving file, for a while
            waited = time.monotonic() - record.waiting_since if record.waiting_since else 0.0
            if self.settings.reconnect or (record.moves and waited < self.settings.stall_seconds):
                record.status = replace(record.status, state="reconnecting", node=None)
                record.waiting_since = record.waiting_since or time.monotonic()
                self._waiting.append(name)
            else:
                record.result.error = e
                self._end(record, replace(record.status, state="failed", node=None))
            return
        record.waiting_since = None
        start, state = record.resume
        order = replace(record.order, start=start, state=state)
        record.status = replace(record.status, node=info.id, state="starting" if not record.moves else "reconnecting")
        if self.measure_bytes and info.id != self.here:
            self.cross_node_bytes += len(pickle.dumps(order, protocol=5))
        node = self._nodes.get(info.id)
        if self._starting is not None:
            self._starting.setdefault(info.id, []).append(order)
        elif node is None:  # a pool of one pose actor per CPU of the node: feeds will come and go
            actor = NodeCounting.options(**pinned(info.id)).remote(self.settings)
            self._nodes[info.id] = _Node(info, actor, actor.start.remote())
            actor.add.remote(order)
        else:
            node.actor.add.remote(order)

    def _lost(self, node_id: str, why: str) -> None:
        """A node (or its counting actor) is gone: start its running feeds elsewhere."""
        node = self._nodes.pop(node_id, None)
        if node is None:
            return
        try:
            ray.kill(node.actor)
        except Exception:  # noqa: BLE001  (gone already)
            pass
        moved = [r for r in self._records.values() if r.node == node_id and not r.done]
        self.node_losses.append({"node": node_id, "at": time.time(), "feeds": [r.order.name for r in moved],
                                 "why": why})
        self._quarantine[node_id] = time.monotonic() + QUARANTINE_SECONDS
        for record in moved:
            record.moves += 1
            record.moves_in_a_row += 1
            record.result.recoveries += 1
            if record.moves_in_a_row > MAX_MOVES:
                record.result.error = CadenceError(f"{record.result.source}: its node was lost {record.moves_in_a_row} "
                                                   f"times with no count between, the last time because {why}; giving up")
                self._end(record, replace(record.status, state="failed", node=None))
                continue
            if not is_camera(record.order.source):
                record.replay_until = record.last_frame
            record.warnings.append(f"moved from node {node.info.address or node_id[:8]} ({why}) at frame "
                                   f"{record.resume[0]}")
            record.status = replace(record.status, node=None)
            self._place(record.order.name)


def count_feeds(feeds: dict[str, Source], settings: PipelineSettings | None = None,
                on_update: Callable[[CountUpdate], None] | None = None) -> list[CountResult]:
    """Run the pipeline over ``feeds`` on the connected cluster and return one result per feed."""
    pipeline = CountingPipeline(feeds, settings)
    try:
        return pipeline.run(on_update)
    finally:
        pipeline.close()
