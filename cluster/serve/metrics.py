"""``GET /metrics``: the counting service's figures in Prometheus's text format (prometheus-client).

Read from the service's feed views at each scrape, by a collector of its own (no global registry):
per feed, its count, frames read and dropped, reconnections and time down (counters), capture-to-
count latency (p50 and p95 of recent updates), frames per second since the last scrape, and the
batches waiting between stages (queue depths); and the number of feeds in each state.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cadence.cluster.counting.feed import RUNNING
from cadence.cluster.serve.service import CountingService

STATES = (*RUNNING, "ended", "failed")


class ServiceCollector:
    def __init__(self, service: CountingService):
        self.service = service
        self._last: dict[str, tuple[float, int]] = {}  # feed -> (time, frames) at the last scrape
        self._lock = threading.Lock()

    def collect(self):
        feeds = self.service.feeds()
        labels = ["feed", "name"]
        count = GaugeMetricFamily("cadence_feed_count", "Cumulative repetitions counted", labels=labels)
        frames = CounterMetricFamily("cadence_feed_frames", "Frames read", labels=labels)
        dropped = CounterMetricFamily("cadence_feed_frames_dropped", "Frames a live feed dropped (behind)",
                                      labels=labels)
        reconnections = CounterMetricFamily("cadence_feed_reconnections", "Times a live source was reopened",
                                            labels=labels)
        downtime = CounterMetricFamily("cadence_feed_downtime_seconds", "Seconds a live source was down",
                                       labels=labels)
        latency = GaugeMetricFamily("cadence_feed_latency_seconds", "Capture-to-count latency of recent updates",
                                    labels=labels + ["quantile"])
        fps = GaugeMetricFamily("cadence_feed_frames_per_second", "Frames read per second since the last scrape",
                                labels=labels)
        depth = GaugeMetricFamily("cadence_feed_queue_depth", "Batches waiting for a stage", labels=labels + ["stage"])
        state = GaugeMetricFamily("cadence_feeds", "Feeds in each state", labels=["state"])
        node = GaugeMetricFamily("cadence_feed_node", "The Ray node a running feed runs on (1)",
                                 labels=labels + ["node"])
        moves = CounterMetricFamily("cadence_feed_moves", "Times a feed was started again on another node",
                                    labels=labels)
        node_feeds = GaugeMetricFamily("cadence_node_feeds", "Feeds running on each Ray node", labels=["node", "address"])
        node_frames = CounterMetricFamily("cadence_node_frames", "Frames read on each Ray node", labels=["node", "address"])
        now = time.monotonic()
        depths = self.service.queue_depths()
        with self._lock:
            for feed in feeds:
                values = [feed.id, feed.name]
                count.add_metric(values, feed.count)
                frames.add_metric(values, feed.frames)
                dropped.add_metric(values, feed.frames_dropped)
                reconnections.add_metric(values, feed.reconnections)
                downtime.add_metric(values, feed.downtime_seconds)
                for quantile, value in (("0.5", feed.latency_p50), ("0.95", feed.latency_p95)):
                    if value is not None:
                        latency.add_metric(values + [quantile], value)
                before, seen = self._last.get(feed.id, (now, feed.frames))
                fps.add_metric(values, (feed.frames - seen) / (now - before) if now > before else 0.0)
                self._last[feed.id] = (now, feed.frames)
                for stage, value in depths.get(feed.id, {}).items():
                    depth.add_metric(values + [stage], value)
                if feed.node and feed.state in RUNNING:
                    node.add_metric(values + [feed.node], 1)
                moves.add_metric(values, feed.moves)
        for info in self.service.nodes():
            node_feeds.add_metric([info["node"], info["address"]], info["feeds"])
            node_frames.add_metric([info["node"], info["address"]], info["frames"])
        for name in STATES:
            state.add_metric([name], sum(f.state == name for f in feeds))
        yield from (count, frames, dropped, reconnections, downtime, latency, fps, depth, state, node, moves,
                    node_feeds, node_frames)


def registry(service: CountingService) -> CollectorRegistry:
    """A registry of the service's figures alone."""
    figures = CollectorRegistry()
    figures.register(ServiceCollector(service))
    return figures


def exposition(figures: CollectorRegistry) -> tuple[bytes, str]:
    """The metrics page and its content type."""
    return generate_latest(figures), CONTENT_TYPE_LATEST
