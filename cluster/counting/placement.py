"""Which node a new feed lives on: the one with the most pose capacity left, among those it may use.

A node's pose capacity is its CPUs times what one CPU poses a second
(``PipelineSettings.pose_frames_per_cpu``); each feed placed there takes what it needs (the frames a
second its job poses of its source: at most the job's rate, of its frame rate once known, else of
``FEED_FRAMES_PER_SECOND``), and a new feed goes where the most is left as a
share of the node's capacity.  So equal nodes take feeds in turn, a node with twice the CPUs takes
twice the feeds, a node that joins takes the new feeds until it is as loaded as the others, and a
node without CPUs (a head started with ``--num-cpus 0``) takes none.

A feed may ask for nodes by Ray node label (``ray start --labels site=gym``): a camera reachable
from one site only.  Labels are Ray's own; cadence keeps no list of hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cadence.pipelines.errors import InputError
from cadence.pipelines.repetitions import RepetitionCounting

from .settings import FEED_FRAMES_PER_SECOND


class NoNodeError(InputError):
    """No live node can take a feed (none carries its labels, or none has a CPU)."""


@dataclass(frozen=True)
class NodeInfo:
    """A live Ray node as placement sees it."""

    id: str
    cpus: int
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str = ""

    def carries(self, labels: Mapping[str, str] | None) -> bool:
        return all(self.labels.get(k) == v for k, v in (labels or {}).items())


def live_nodes() -> list[NodeInfo]:
    """The cluster's live nodes, from Ray's own view (``ray.nodes()``)."""
    import ray

    return [NodeInfo(n["NodeID"], int(n.get("Resources", {}).get("CPU", 0)), dict(n.get("Labels") or {}),
                     n.get("NodeManagerAddress", ""))
            for n in ray.nodes() if n.get("Alive")]


def free_capacity(node: NodeInfo, needs: Iterable[float], frames_per_cpu: float) -> float:
    """Frames a second the node can still pose, after what the feeds placed on it need."""
    return node.cpus * frames_per_cpu - sum(needs)


def choose_node(nodes: Iterable[NodeInfo], needs: Mapping[str, list[float]], frames_per_cpu: float,
                labels: Mapping[str, str] | None = None, feed: str = "feed") -> NodeInfo:
    """The node with the most free pose capacity, as a share of its own, among those with CPUs
    that carry ``labels`` (``needs``: node id -> what each of its feeds needs): so nodes fill
    alike, and once every node is short of CPU (live feeds then drop frames), a node of twice the
    CPUs still holds twice the feeds.  Ties go to the node with fewer feeds, then to the node id,
    so a placement is the same every run."""
    candidates = [n for n in nodes if n.cpus > 0 and n.carries(labels)]
    if not candidates:
        wanted = ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        seen = "; ".join(f"{n.address or n.id[:8]} {dict(n.labels) or '(no labels)'}" for n in nodes) or "none"
        problem = f"no live node with CPUs carries the labels {wanted}" if wanted else "no live node has CPUs"
        raise NoNodeError(feed, f"{problem} (nodes: {seen})",
                          f"start one with `ray start --address ADDRESS --labels {wanted or 'KEY=VALUE'}`")
    return max(candidates, key=lambda n: (free_capacity(n, needs.get(n.id, ()), frames_per_cpu) / (n.cpus * frames_per_cpu),
                                          -len(needs.get(n.id, ())), n.id))


def need_of(fps: float | None, job: RepetitionCounting) -> float:
    """What a feed of ``job`` needs, in frames a second to pose: the rate its source is posed at."""
    return job.analysis_rate(float(fps) if fps else FEED_FRAMES_PER_SECOND)
