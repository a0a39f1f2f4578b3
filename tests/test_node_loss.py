"""A node of a real multi-node Ray on this machine lost mid-feed: its feeds move to another node,
files ending with exactly the count of an uninterrupted run and cameras reopened there, through the
pipeline, ``cadence count --address`` and the counting service."""

from __future__ import annotations

import json
import subprocess
import time

import cv2
import pyarrow.parquet as pq
import pytest

from cadence.cluster.bench.cluster import add_local_node, local_cluster
from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
from cadence.cluster.runtime.connect import connected
from cadence.pipelines.video import read_video

from .helpers import CADENCE, ROOT, Camera, inline_count, video, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.mediapipe]


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


def test_the_service_moves_its_feeds_off_a_lost_node_a_file_exactly_and_a_camera_live(long_clip, tmp_path):
    from cadence.cluster.serve.service import CountingService, FeedSpec
    from cadence.cluster.serve.store import CountStore

    path, expected = long_clip
    camera = Camera(video("jumpingjack_correct_001.mp4"))
    cluster = local_cluster({"num_cpus": 0}, {"num_cpus": 1})  # one node with CPUs, for now
    store = CountStore(tmp_path / "store")
    camera.start()
    try:
        with connected(cluster.address):
            service = CountingService(store, PipelineSettings(reconnect=True, snapshot_seconds=2.0))
            service.start()
            try:
                live = service.add(FeedSpec(source=camera.url, per_person=False)).id
                wait_for(lambda: service.feed(live).frames > 30, 180, "the camera under way")
                file = service.add(FeedSpec(source=str(path), per_person=False)).id  # (far from its end below)
                first = service.feed(file).node
                assert first is not None and service.feed(live).node == first
                add_local_node(cluster, num_cpus=1)  # a node joins ...
                wait_for(lambda: service.feed(file).frames >= 100, 180, "the file under way")
                shown = service.feed(live).count
                _remove(cluster, first)  # ... and the first one is lost
                moved = wait_for(lambda: (f := service.feed(live)).moves == 1 and f.state == "running" and f, 120,
                                 "the camera running again on the new node")
                ended = wait_for(lambda: (f := service.feed(file)).state != "running" and f.state != "reconnecting"
                                 and f.state != "starting" and f, 240, "the file to end")
                nodes = service.nodes()
            finally:
                service.stop()
    finally:
        camera.kill()
        store.close()
        cluster.shutdown()
    assert ended.state == "ended" and ended.error is None and ended.moves == 1 and ended.node != first
    assert ended.count == pytest.approx(expected, abs=1e-3)
    assert moved.node not in (None, first) and moved.count >= shown  # a count shown never goes down
    assert {n["node"] for n in nodes} == {moved.node}
