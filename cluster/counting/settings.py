"""How the counting pipeline runs: :class:`PipelineSettings`, shared by the driver and every node."""

from __future__ import annotations

from dataclasses import dataclass, field

from cadence.pipelines.repetitions import RepetitionCounting

from .feed import LIVE_TIMEOUT, STALL_SECONDS

# Placement's yardstick: frames a second one CPU poses through the pipeline (about 21-24 measured
# on 720p clips here, bench/README.md); only the ratio between nodes matters when all are alike.
POSE_FRAMES_PER_CPU = 20.0
FEED_FRAMES_PER_SECOND = 30.0  # what a feed is taken to need before its source is open


@dataclass
class PipelineSettings:
    """How the actor pipeline runs ``job`` (window, stride, strategy, live and counter live there)."""

    job: RepetitionCounting = field(default_factory=RepetitionCounting)
    batch_size: int = 8  # a file's frames per Ray call at least, cut at whole pose-tracking segments (a second)
    live_batch_size: int = 2  # live feeds: a frame waits for its batch to fill and be posed (latency)
    queue_size: int | None = None  # per feed and stage, in batches: 4, or 2 for live feeds
    pose_actors: int | None = None  # per node; default: one per CPU of the node, at most what its feeds can use
    feeds_per_host: int = 32  # feeds read by one capture host and counted by one counting host
    frame_batches: int | None = None  # frame batches in flight over a node's feeds: 2 per pose actor, +2
    stall_seconds: float = STALL_SECONDS  # see feed.MAX_RECOVERIES
    reconnect: bool = False  # live feeds: reopen a source that stops delivering (the service's cameras)
    live_timeout: float = LIVE_TIMEOUT  # a live source silent this long has stopped delivering
    preview_seconds: float | None = None  # keep a JPEG of a recent frame per feed this often (a live page)
    # each feed's counting session is sent to the driver every so many seconds *of the stream*: a node
    # lost resumes its files from there (exactly) and its cameras with the count then
    snapshot_seconds: float = 10.0
    pose_frames_per_cpu: float = POSE_FRAMES_PER_CPU

    def queue(self, live: bool | None = None) -> int:
        """Per feed and stage, in batches.  Live feeds keep short queues: when the pool falls
        behind, frames are better dropped at capture than left to wait (latency)."""
        return self.queue_size or (2 if (self.job.live if live is None else live) else 4)
