"""``cadence bench cluster``: the counting job on a real multi-node Ray started on this machine.

Each node is a Ray node of its own (``ray.cluster_utils.Cluster``: its own raylet, object store and
worker processes), so an object handed between actors of two nodes is copied between their object
stores, as between machines.  The driver runs on the head node.

``cross_node_bytes_per_frame`` is measured: every report a node's counting actor hands to the
driver from another node, and every feed order the driver hands to another node, is pickled as Ray
pickles it and its bytes added up; that sum over the frames counted.  Nothing else of the job goes
between nodes, and the bench checks it: each stage stamps the batches it makes with its node and
the next stage counts the batches that came from another node (``foreign_batches``, reported; 0
means no frame or pose batch left its node).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from cadence.pipelines.repetitions import RepetitionCounting


def local_cluster(head: dict, *workers: dict):
    """A Ray of several nodes on this machine, all on loopback: the head started with ``head``'s
    arguments (``num_cpus``, ``labels``), a worker node for each of ``workers``.  Shut it down with
    its ``shutdown()``."""
    from ray.cluster_utils import Cluster

    from cadence.cluster.runtime.connect import on_loopback

    with on_loopback():
        cluster = Cluster(initialize_head=True, head_node_args=head | {"node_ip_address": "127.0.0.1"})
    for worker in workers:
        add_local_node(cluster, **worker)
    cluster.wait_for_nodes()
    return cluster


def add_local_node(cluster, **args):
    """Another node of a :func:`local_cluster` (``num_cpus``, ``labels``), on loopback; returns it."""
    from cadence.cluster.runtime.connect import on_loopback

    with on_loopback():
        return cluster.add_node(**args, node_ip_address="127.0.0.1")


def _start_cluster(nodes: int, cpus: int):
    return local_cluster({"num_cpus": cpus}, *[{"num_cpus": cpus}] * (nodes - 1))


def _node_names(cluster) -> dict[str, str]:
    names = {cluster.head_node.node_id: "node-1 (head, driver)"}
    for k, node in enumerate(cluster.worker_nodes, start=2):
        names[node.node_id] = f"node-{k}"
    return names


def bench_cluster(data: Path, nodes: int, feeds: int, seconds: float, kill_after: float | None,
                  cpus_per_node: int, job: RepetitionCounting) -> dict:
    """Count ``feeds`` playlists of real clips inline (the expected counts), then on a cluster of
    ``nodes`` nodes, killing the worker node with the most feeds ``kill_after`` seconds in."""
    from cadence.pipelines.video import concatenate

    from cadence.cluster.bench.pipeline import playlists

    lists = playlists(data, feeds, seconds)
    print(f"bench cluster: counting {feeds} feeds inline first (the expected counts)", file=sys.stderr, flush=True)
    expected = {name: job.run(concatenate(*playlist)).count for name, playlist in lists.items()}
    cluster = _start_cluster(nodes, cpus_per_node)
    names = _node_names(cluster)
    try:
        run = _Run(lists, job, cluster, names, kill_after)
    finally:
        cluster.shutdown()
    return run.figures(expected)


class _Run:
    """The counting job on the cluster, and the node killed ``kill_after`` seconds into it."""

    def __init__(self, lists: dict[str, list[str]], job: RepetitionCounting, cluster, names: dict[str, str],
                 kill_after: float | None):
        from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
        from cadence.cluster.runtime.connect import connected

        self.lists, self.cluster, self.names, self.kill_after = lists, cluster, names, kill_after
        self.by_id = {node.node_id: node for node in cluster.worker_nodes}
        self.kill: dict = {}
        self.updates: dict[str, list[int]] = {name: [] for name in lists}
        with connected(cluster.address):
            self.pipeline = CountingPipeline(lists, PipelineSettings(job), measure_bytes=True)
            self.pipeline.start()
            self.placed = {n["node"]: n["feeds"] for n in self.pipeline.nodes()}
            self.started, cpu = time.perf_counter(), time.process_time()
            self.results = self.pipeline.run(self.on_update, self.on_frames)
            self.elapsed, self.cpu = time.perf_counter() - self.started, time.process_time() - cpu
            self.frames_by_node = dict(self.pipeline.node_frames)
            self.foreign = self.pipeline.foreign_batches()
            self.pipeline.close()

    def on_update(self, update) -> None:
        self.updates[update.feed].append(update.frame_index)
        if update.feed in self.kill.get("moved", ()) and update.feed not in self.kill["back"]:
            self.kill["back"][update.feed] = time.perf_counter()

    def on_frames(self, feed: str, _n: int) -> None:
        if self.kill_after is None or self.kill or time.perf_counter() - self.started < self.kill_after:
            return
        pipeline = self.pipeline
        running = [f for f in self.lists if pipeline.status(f).running]
        victim = max(self.by_id, key=lambda node_id: sum(pipeline.node_of(f) == node_id for f in running))
        self.kill.update(node=victim, at=time.perf_counter(), wall=time.time(), back={},
                         moved={f for f in running if pipeline.node_of(f) == victim})
        print(f"bench cluster: removing {self.names[victim]} ({len(self.kill['moved'])} feeds) at "
              f"{self.kill['at'] - self.started:.1f} s", file=sys.stderr, flush=True)
        threading.Thread(target=self.cluster.remove_node, args=(self.by_id[victim],), daemon=True).start()

    def recovery(self) -> dict:
        """Seconds from the kill until every moved feed read frames on its new node, until the driver
        knew of the loss, and until every moved feed delivered a count past where it had got."""
        kill, figures = self.kill, {"recovery_seconds": None, "loss_detected_seconds": None,
                                    "caught_up_seconds": None}
        if not kill or not kill["moved"]:
            return figures
        running = {m["feed"]: m["running_at"] for m in self.pipeline.moves}
        if all(f in running for f in kill["moved"]):
            figures["recovery_seconds"] = round(max(running[f] for f in kill["moved"]) - kill["wall"], 2)
        lost = min((loss["at"] for loss in self.pipeline.node_losses), default=kill["wall"])
        figures["loss_detected_seconds"] = round(lost - kill["wall"], 2)
        if all(f in kill["back"] for f in kill["moved"]):
            figures["caught_up_seconds"] = round(max(kill["back"][f] for f in kill["moved"]) - kill["at"], 2)
        return figures

    def figures(self, expected: dict[str, float]) -> dict:
        results, pipeline, elapsed = self.results, self.pipeline, self.elapsed
        frames = sum(r.frames for r in results)
        counts = {r.feed: r.count for r in results}
        repeated = {feed: sum(b <= a for a, b in zip(idx, idx[1:])) for feed, idx in self.updates.items()}
        cross, reports = pipeline.cross_node_bytes, pipeline.reports
        return {
            "nodes": [{"node": self.names.get(node_id, node_id[:8]), "feeds": self.placed.get(node_id, 0),
                       "frames_per_second": round(self.frames_by_node.get(node_id, 0) / elapsed, 2)}
                      for node_id in self.names],
            "cross_node_bytes_per_frame": round(cross / max(frames, 1), 1),
            "counts_equal_inline": all(counts[f] == expected[f] for f in self.lists),
            **self.recovery(),
            "frames": frames, "seconds": round(elapsed, 2), "frames_per_second": round(frames / elapsed, 2),
            "cross_node_bytes": cross, "foreign_batches": self.foreign,
            "driver_cpu_seconds": round(self.cpu, 2),  # this process's CPU over the run (placing, polling, merging)
            "driver_reports": reports, "driver_cpu_ms_per_report": round(1000 * self.cpu / max(reports, 1), 3),
            "updates_repeated": sum(repeated.values()),
            "killed": self.names.get(self.kill.get("node")) if self.kill else None,
            "moved_feeds": sorted(self.kill.get("moved", ())) if self.kill else [],
            "feeds": [{"feed": r.feed, "count": round(r.count, 3), "inline": round(expected[r.feed], 3),
                       "frames": r.frames, "recoveries": r.recoveries, "error": str(r.error) if r.error else None}
                      for r in results],
        }
