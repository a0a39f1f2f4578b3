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
    from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
    from cadence.cluster.runtime.connect import connected
    from cadence.pipelines.video import concatenate

    from .benchmarks import playlists

    lists = playlists(data, feeds, seconds)
    print(f"bench cluster: counting {feeds} feeds inline first (the expected counts)", file=sys.stderr, flush=True)
    expected = {name: job.run(concatenate(*playlist)).count for name, playlist in lists.items()}
    cluster = _start_cluster(nodes, cpus_per_node)
    names = _node_names(cluster)
    by_id = {node.node_id: node for node in cluster.worker_nodes}
    kill: dict = {}
    updates: dict[str, list[int]] = {name: [] for name in lists}
    try:
        with connected(cluster.address):
            pipeline = CountingPipeline(lists, PipelineSettings(job), measure_bytes=True)
            pipeline.start()
            placed = {n["node"]: n["feeds"] for n in pipeline.nodes()}
            started, cpu = time.perf_counter(), time.process_time()

            def on_update(update) -> None:
                updates[update.feed].append(update.frame_index)
                moved = kill.get("moved", {})
                if update.feed in moved and update.feed not in kill["back"]:
                    kill["back"][update.feed] = time.perf_counter()

            def on_frames(feed: str, _n: int) -> None:
                if kill_after is None or kill or time.perf_counter() - started < kill_after:
                    return
                victim = max(by_id, key=lambda node_id: sum(pipeline.node_of(f) == node_id for f in lists
                                                            if pipeline.status(f).running))
                kill.update(node=victim, at=time.perf_counter(), wall=time.time(), back={},
                            moved={f for f in lists if pipeline.node_of(f) == victim and pipeline.status(f).running})
                print(f"bench cluster: removing {names[victim]} ({len(kill['moved'])} feeds) at "
                      f"{kill['at'] - started:.1f} s", file=sys.stderr, flush=True)
                threading.Thread(target=cluster.remove_node, args=(by_id[victim],), daemon=True).start()

            results = pipeline.run(on_update, on_frames)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            frames_by_node = dict(pipeline.node_frames)
            foreign = pipeline.foreign_batches()
            cross, reports = pipeline.cross_node_bytes, pipeline.reports
            pipeline.close()
    finally:
        cluster.shutdown()
    frames = sum(r.frames for r in results)
    recovery = detected = caught_up = None
    if kill and kill["moved"]:
        running = {m["feed"]: m["running_at"] for m in pipeline.moves}
        if all(f in running for f in kill["moved"]):
            recovery = round(max(running[f] for f in kill["moved"]) - kill["wall"], 2)
        detected = round(min((loss["at"] for loss in pipeline.node_losses), default=kill["wall"]) - kill["wall"], 2)
        if all(f in kill["back"] for f in kill["moved"]):
            caught_up = round(max(kill["back"][f] for f in kill["moved"]) - kill["at"], 2)
    counts = {r.feed: r.count for r in results}
    repeated = {feed: sum(b <= a for a, b in zip(idx, idx[1:])) for feed, idx in updates.items()}
    return {
        "nodes": [{"node": names.get(node_id, node_id[:8]), "feeds": placed.get(node_id, 0),
                   "frames_per_second": round(frames_by_node.get(node_id, 0) / elapsed, 2)}
                  for node_id in names],
        "cross_node_bytes_per_frame": round(cross / max(frames, 1), 1),
        "counts_equal_inline": all(counts[f] == expected[f] for f in lists),
        "recovery_seconds": recovery,  # from the kill until every moved feed reads frames on its new node
        "loss_detected_seconds": detected,  # from the kill until the driver knew
        "caught_up_seconds": caught_up,  # until every moved feed delivered a count past where it had got
        "frames": frames, "seconds": round(elapsed, 2), "frames_per_second": round(frames / elapsed, 2),
        "cross_node_bytes": cross, "foreign_batches": foreign,
        "driver_cpu_seconds": round(cpu, 2),  # this process's CPU over the run (placing, polling, merging)
        "driver_reports": reports, "driver_cpu_ms_per_report": round(1000 * cpu / max(reports, 1), 3),
        "updates_repeated": sum(repeated.values()),
        "killed": names.get(kill.get("node"), None) if kill else None,
        "moved_feeds": sorted(kill.get("moved", ())) if kill else [],
        "feeds": [{"feed": r.feed, "count": round(r.count, 3), "inline": round(expected[r.feed], 3),
                   "frames": r.frames, "recoveries": r.recoveries, "error": str(r.error) if r.error else None}
                  for r in results],
    }
