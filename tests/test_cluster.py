"""Ray of several real nodes on this machine (each its own raylet, object store and workers, all on
loopback): feeds placed by pose capacity, frames that never leave their node, labelled feeds.
Nodes lost mid-feed: ``test_node_loss.py``."""

from __future__ import annotations

import time

import pytest
import ray

from cadence.cluster.bench.cluster import add_local_node, local_cluster
from cadence.cluster.counting.pipeline import MEMBERSHIP_SECONDS, CountingPipeline
from cadence.cluster.counting.placement import NoNodeError, live_nodes
from cadence.cluster.runtime.connect import connected

from .helpers import inline_count, video

pytestmark = [pytest.mark.ray, pytest.mark.mediapipe]

SHORT_CLIPS = ("squat_correct_016.mp4", "squat_correct_013.mp4", "squat_correct_001.avi", "squat_correct_010.mp4",
               "squat_correct_007.mp4", "pullup_correct_002.mp4")




def test_ray_starts_locally_when_no_address_is_given(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    with connected(num_cpus=1) as where:
        assert ray.is_initialized() and where["address"] == "local" and where["cpus"] == 1
    assert not ray.is_initialized()  # started here, so stopped here


@pytest.fixture(scope="module")
def three_nodes():
    """A head and two workers of one CPU each; the workers labelled site=b and site=c."""
    cluster = local_cluster({"num_cpus": 1}, {"num_cpus": 1, "labels": {"site": "b"}},
                            {"num_cpus": 1, "labels": {"site": "c"}})
    try:
        with connected(cluster.address):
            yield cluster
    finally:
        cluster.shutdown()


def test_feeds_spread_evenly_over_equal_nodes_and_their_frames_never_leave_them(three_nodes):
    clips = {f"feed{k}": video(name) for k, name in enumerate(SHORT_CLIPS)}
    pipeline = CountingPipeline({name: str(path) for name, path in clips.items()})
    try:
        pipeline.start()
        placed = {n["node"]: n["feeds"] for n in pipeline.nodes()}
        results = pipeline.run()
        foreign = pipeline.foreign_batches()
    finally:
        pipeline.close()
    nodes = {three_nodes.head_node.node_id} | {n.node_id for n in three_nodes.worker_nodes}
    assert set(placed) == nodes and sorted(placed.values()) == [2, 2, 2]
    assert foreign == 0  # no frame batch, and no pose batch, reached an actor of another node
    for result in results:
        assert result.error is None and result.node in nodes
        assert result.count == pytest.approx(inline_count(clips[result.feed]), abs=1e-9)


def test_a_labelled_feed_lands_on_a_node_carrying_its_labels(three_nodes):
    (site_c,) = [n.id for n in live_nodes() if n.labels.get("site") == "c"]
    clip = video("squat_correct_010.mp4")
    pipeline = CountingPipeline()
    try:
        pipeline.start()
        for k in range(3):
            pipeline.add(f"gym-c-{k}", str(clip), labels={"site": "c"})
        pipeline.add("nowhere", str(clip), labels={"site": "z"})
        results = {r.feed: r for r in pipeline.run()}
    finally:
        pipeline.close()
    for k in range(3):
        result = results[f"gym-c-{k}"]
        assert result.error is None and result.node == site_c
        assert result.count == pytest.approx(inline_count(clip), abs=1e-9)
    error = results["nowhere"].error
    assert isinstance(error, NoNodeError) and "site=z" in str(error) and "ray start" in str(error)


def test_a_node_that_joins_takes_the_next_feed(three_nodes):
    clip = str(video("pushup_incorrect_001.mp4"))
    pipeline = CountingPipeline({f"busy{k}": clip for k in range(3)})  # one a node, for a while
    try:
        pipeline.start()
        joined = add_local_node(three_nodes, num_cpus=1)
        time.sleep(MEMBERSHIP_SECONDS + 0.5)  # the driver looks for new nodes this often
        pipeline.step()
        pipeline.add("new", clip)
        assert pipeline.node_of("new") == joined.node_id  # the only node with all its capacity free
        results = {r.feed: r for r in pipeline.run()}
    finally:
        pipeline.close()
    assert results["new"].error is None and results["new"].node == joined.node_id
    assert results["new"].count == pytest.approx(inline_count(video("pushup_incorrect_001.mp4")), abs=1e-9)
