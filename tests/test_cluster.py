"""Joining Ray: a local Ray when no address is given, and a real 2-node cluster losing a node."""

from __future__ import annotations

import pytest
import ray

from cadence.cluster.runtime.connect import connected
from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.video import read_video

from .helpers import video


def test_ray_starts_locally_when_no_address_is_given(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    with connected(num_cpus=1) as where:
        assert ray.is_initialized() and where["address"] == "local" and where["cpus"] == 1
    assert not ray.is_initialized()  # started here, so stopped here


def test_two_node_cluster_survives_losing_a_worker_node():
    from ray.cluster_utils import Cluster

    path = video("pushup_incorrect_001.mp4")
    expected = RepetitionCounting().run(read_video(path)).count
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    worker = cluster.add_node(num_cpus=2)
    try:
        with connected(cluster.address) as where:
            assert where["nodes"] == 2 and where["cpus"] == 6
            pipeline = CountingPipeline({"pushup": str(path)}, PipelineSettings(pose_actors=4, batch_size=4))
            pipeline.start()
            nodes = {ray.get(a.node.remote()) for a in pipeline.pose_actors}
            assert len(nodes) == 2  # the pose pool spreads over both nodes
            removed = []

            def remove_worker(_, n):
                if not removed and pipeline.results[0].frames >= 60:
                    removed.append(True)
                    cluster.remove_node(worker)

            try:
                (result,) = pipeline.run(on_frames=remove_worker)
            finally:
                pipeline.close()
        assert removed and result.error is None and result.frames == 290
        assert result.count == pytest.approx(expected, abs=1e-9)
    finally:
        cluster.shutdown()
