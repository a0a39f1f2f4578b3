"""A node of a real multi-node Ray on this machine lost mid-feed: its feeds move to the other node
and files end with exactly the count of an uninterrupted run, through the pipeline, ``cadence count
--address`` and the counting service."""

from __future__ import annotations

import json
import subprocess
import time

import cv2
import pyarrow.parquet as pq
import pytest

from cadence.cluster.bench.cluster import local_cluster
from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
from cadence.cluster.runtime.connect import connected
from cadence.pipelines.video import read_video

from .helpers import CADENCE, ROOT, inline_count, video


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """About 25 s of real exercise in one file (two push-up clips and the jumping jacks, MJPG), so
    that a feed sends snapshots before its node is removed, and its inline count."""
    path = tmp_path_factory.mktemp("long") / "pushups-and-jumping-jacks.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for name in ("pushup_incorrect_001.mp4", "jumpingjack_correct_001.mp4", "pushup_incorrect_001.mp4"):
        for frame in read_video(video(name)):
            writer.write(cv2.resize(frame.image, (640, 360)))
    writer.release()
    return path, inline_count(path)


@pytest.fixture
def two_workers():
    """A head without CPUs (as clusters often run: the driver's node takes no feeds) and two workers."""
    cluster = local_cluster({"num_cpus": 0}, {"num_cpus": 1}, {"num_cpus": 1})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _remove(cluster, node_id: str) -> None:
    (node,) = [n for n in cluster.worker_nodes if n.node_id == node_id]
    cluster.remove_node(node)


def test_a_lost_node_hands_its_feeds_to_the_other_and_files_end_with_exact_counts(two_workers, long_clip):
    path, expected = long_clip
    updates, removed = [], []
    with connected(two_workers.address):
        pipeline = CountingPipeline({"a": str(path), "b": str(path)}, PipelineSettings(snapshot_seconds=3.0))

        def remove_a_node(feed, _n):  # once feed a resumes from a snapshot of its own, not from the start
            if not removed and feed == "a" and pipeline.snapshot("a")[0] >= 150:
                removed.append(pipeline.node_of("a"))
                _remove(two_workers, removed[0])

        try:
            results = {r.feed: r for r in pipeline.run(updates.append, remove_a_node)}
        finally:
            pipeline.close()
    assert removed and pipeline.node_losses[0]["node"] == removed[0]
    for feed, result in results.items():
        assert result.error is None and result.count == pytest.approx(expected, abs=1e-9)
        indexes = [u.frame_index for u in updates if u.feed == feed]
        assert indexes == sorted(set(indexes))  # nothing delivered twice
        assert result.node != removed[0]
    assert results["a"].recoveries == 1 and any("moved from node" in w for w in results["a"].warnings)


def test_cadence_count_on_a_cluster_survives_losing_a_node(two_workers, long_clip, tmp_path):
    path, expected = long_clip
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(f"{path}\n{path}\n")
    out = tmp_path / "counts.parquet"
    run = subprocess.Popen([*CADENCE, "count", "--feeds", str(feeds), "--address", two_workers.address, "--json",
                            "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        parts = out.with_name(out.name + ".parts")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:  # until both feeds are past frame 330
            rows = [row for p in sorted(parts.glob("*.parquet")) for row in pq.read_table(p).to_pylist()] \
                if parts.exists() else []
            reached = {row["feed"]: row["frame_index"] for row in rows}
            if len(reached) == 2 and min(reached.values()) > 330:
                break
            time.sleep(0.5)
        assert run.poll() is None, run.stderr.read()
        first, left = two_workers.worker_nodes
        two_workers.remove_node(first)
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    assert [r["count"] for r in results] == [round(expected, 3)] * 2
    assert sorted(r["recoveries"] for r in results) == [0, 1]
    assert all(r["node"] == left.node_id for r in results)
    table = pq.read_table(out).to_pandas()
    assert not table.duplicated(["feed", "frame_index"]).any()
    for _, rows in table.groupby("feed"):
        assert rows["count"].is_monotonic_increasing


def test_the_service_moves_a_feed_off_a_lost_node_and_ends_with_the_exact_count(two_workers, long_clip, tmp_path):
    from cadence.cluster.serve.service import CountingService, FeedSpec
    from cadence.cluster.serve.store import CountStore

    path, expected = long_clip
    store = CountStore(tmp_path / "store")
    with connected(two_workers.address):
        service = CountingService(store, PipelineSettings(reconnect=True, snapshot_seconds=3.0))
        service.start()
        try:
            feed = service.add(FeedSpec(source=str(path), per_person=False)).id
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and service.feed(feed).frames < 200:
                time.sleep(0.2)
            lost = service.feed(feed).node
            _remove(two_workers, lost)
            while time.monotonic() < deadline and service.feed(feed).state != "ended":
                time.sleep(0.2)
            view = service.feed(feed)
            nodes = service.nodes()
        finally:
            service.stop()
            store.close()
    assert view.state == "ended" and view.error is None
    assert view.count == pytest.approx(expected, abs=1e-3) and view.moves == 1 and view.node != lost
    assert [n["node"] for n in nodes] == [view.node]
