"""Ray actors that host the components of ``cadence.pipelines`` as streaming stages.

Three kinds, so that a feed costs some state in a process rather than processes of its own:

- :class:`CaptureHost` opens and reads the sources of many feeds (``open_source``), handing out
  frame batches;
- :class:`PoseExtraction` holds MediaPipe's landmarkers; a pool of them serves every feed;
- :class:`CountingHost` holds the :class:`~cadence.pipelines.repetitions.FeedCounting` sessions of
  many feeds and pushes each feed's pose batches through its own session.

The stages' calls report no task events (``enable_task_events=False``): a long-running job makes
tens of calls a second, and their events, kept for Ray's dashboard and state API (which cadence does
not start), grew the GCS by about 7 MiB a minute.

Stages take and give Arrow record batches (:mod:`cadence.actors.schemas`); the algorithms are the
components' own.  Every call names its feed.  A host that Ray restarts after its process died comes
back holding no feed, and a call for a feed it does not hold raises :class:`StateLost`: the driver
then opens that feed again (the source where the pipeline had got to, the session from the snapshot
after the last count batch it received) and resubmits what came after.  Nothing is lost or counted
twice, and no host carries on from an empty state unnoticed.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import ray

from cadence.pipelines.drawing import preview_jpeg
from cadence.pipelines.posetracking import DETECTION_SECONDS, TrackingPoseExtractor, segment_batches
from cadence.pipelines.repetitions import FeedCounting
from cadence.pipelines.temporal import frame_step
from cadence.pipelines.base import TemporalSession
from cadence.pipelines.video import Frame, LiveStream, Source, is_camera, open_source

from . import schemas


class StateLost(RuntimeError):
    """This host does not hold the feed (Ray restarted it): the driver must open the feed again."""


class _Local:
    """Counts the batches this actor was handed from an actor on another node: each stage stamps
    the batches it makes with its node (:func:`schemas.stamped`), and the next checks the stamp.
    The node pipeline places a feed's stages on one node, so the count stays 0 (a test holds it to that)."""

    def _here(self) -> str:
        if not hasattr(self, "_node"):
            self._node, self.foreign = ray.get_runtime_context().get_node_id(), 0
        return self._node

    def _check(self, batch: pa.RecordBatch) -> None:
        made = schemas.made_on(batch)
        if made and made != self._here():
            self.foreign += 1

    def foreign_batches(self) -> int:
        """Batches handed to this actor from an actor on another node, since it started."""
        self._here()
        return self.foreign


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, enable_task_events=False)
class CaptureHost(_Local):
    """Reads the sources of many feeds into batches of up to ``batch_size`` frames.

    A file feed is read as fast as the pipeline asks (no frame is ever dropped); a live feed
    (camera, URL, or a file read live) is read on its own thread, which keeps the newest frames and
    counts the ones the pipeline was too slow for.  The driver starts this actor with a few
    threads, so several feeds decode at once, and keeps at most one call per feed in flight; a
    live feed's call waits at most ``LIVE_WAIT`` seconds for a frame, so a stalled camera holds
    no thread for long.
    """

    LIVE_WAIT = 0.25

    def __init__(self, batch_size: int = 8):
        self.batch_size = batch_size
        self.feeds: dict[str, tuple[Any, Iterator[list[Frame]], int]] = {}
        self.positions: dict[str, int] = {}  # per feed: where its source was at the last batch

    def open(self, feed: str, source: Source, live: bool, start: int = 0, batch_size: int | None = None,
             rate: float | None = None, detection_seconds: float = DETECTION_SECONDS) -> dict:
        """Open the feed's source (a typed error names a bad one); a file feed resumed after a
        restart skips to frame ``start``.  At most ``rate`` frames a second are read into batches
        (one in :func:`frame_step`; the others are skipped before they become images).  A live
        feed's batches hold up to ``batch_size`` frames (the host's by default), and it keeps at
        most that many waiting; a file's hold whole pose-tracking segments of ``detection_seconds``,
        at least ``batch_size`` frames.  Returns its frame rate and frame count (0: unknown)."""
        self.close(feed)
        batch = batch_size or self.batch_size
        stream = open_source(source, live, capacity=batch, start=0 if is_camera(source) else start, rate=rate)
        if isinstance(stream, LiveStream):
            frames = iter(())
        else:  # a file skips to the frame without converting the ones before
            frames = segment_batches(stream.frames(start, frame_step(stream.fps, rate)), batch, detection_seconds)
        self.feeds[feed] = (stream, frames, batch)
        self.positions[feed] = start if not is_camera(source) else 0
        return {"fps": stream.fps, "frames": operator.length_hint(stream)}

    @ray.method(num_returns=2)
    def next_batch(self, feed: str) -> tuple[pa.RecordBatch, dict]:
        """The feed's next frames (none at its end), and a summary the driver reads without
        fetching the images."""
        if feed not in self.feeds:
            raise StateLost(f"the capture host does not hold {feed} (restarted?)")
        stream, frames, size = self.feeds[feed]
        if isinstance(stream, LiveStream):
            batch = stream.take(size, gather=0.05, wait=self.LIVE_WAIT)
            end, dropped = not batch and stream.finished, stream.dropped
        else:
            batch = next(frames, [])
            end, dropped = not batch, 0
        position = stream.position  # where the source is: frames read since the last batch (posed or not)
        read, self.positions[feed] = max(0, position - self.positions.get(feed, 0)), position
        meta = {"frames": read, "position": position, "posed": len(batch), "end": end, "dropped": dropped,
                "last_index": batch[-1].index if batch else None,
                "warnings": list(getattr(stream, "warnings", [])) if end else []}
        return schemas.stamped(schemas.frames_to_batch(feed, batch), self._here()), meta

    def close(self, feed: str) -> None:
        stream, _, _ = self.feeds.pop(feed, (None, None, 0))
        self.positions.pop(feed, None)
        if isinstance(stream, LiveStream):
            stream.close()


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1, enable_task_events=False)
class PoseExtraction(_Local):
    """MediaPipe's landmarkers (:class:`TrackingPoseExtractor`), used by this actor's single thread.

    A file's batch holds whole segments (the driver sizes it so), so a session of its own poses it
    exactly as the inline runner does, and Ray redoes the calls of a killed actor exactly on its
    restarted self.  A live feed's batches (a few frames each) all come to one actor, in order: its
    session carries on from call to call until :meth:`forget`; a restarted actor starts a new segment
    at the feed's next frame.
    """

    def __init__(self):
        self.extractors: dict[float, TrackingPoseExtractor] = {}  # by detection_seconds
        self.live: dict[str, TemporalSession] = {}  # live feeds' sessions

    def _extractor(self, detection_seconds: float) -> TrackingPoseExtractor:
        if detection_seconds not in self.extractors:
            self.extractors[detection_seconds] = TrackingPoseExtractor(detection_seconds=detection_seconds)
        return self.extractors[detection_seconds]

    def ready(self) -> bool:
        """Build the graphs before frames arrive (before a live feed's clock starts): the detector and
        trackers for one and two people.  With the one-person tracker alone, a live two-person clip's
        first call took 0.85-1.0 s here, its frames dropped meanwhile; with both, 0.25-0.38 s."""
        self._extractor(DETECTION_SECONDS).prepare((1, 2))
        return True

    def node(self) -> str:
        """The id of the node this actor runs on (to see how a pool spread)."""
        return ray.get_runtime_context().get_node_id()

    def _posed(self, frames: pa.RecordBatch, feed: str | None, detection_seconds: float) -> tuple[list, list]:
        self._check(frames)
        decoded = schemas.batch_to_frames(frames)
        extractor = self._extractor(detection_seconds)
        session = extractor.session() if feed is None else self.live.setdefault(feed, extractor.session())
        people = [posed for frame in decoded for posed in session.push(frame)]
        if feed is None:
            session.finish()
        return decoded, people

    def extract(self, frames: pa.RecordBatch, feed: str | None = None,
                detection_seconds: float = DETECTION_SECONDS) -> pa.RecordBatch:
        """Everyone's poses on each frame: a file's batch with ``feed`` None, a live feed's by name."""
        return schemas.stamped(schemas.people_to_batch(frames, self._posed(frames, feed, detection_seconds)[1]),
                               self._here())

    @ray.method(num_returns=2)
    def extract_with_preview(self, frames: pa.RecordBatch, feed: str | None = None,
                             detection_seconds: float = DETECTION_SECONDS) -> tuple[pa.RecordBatch, bytes]:
        """As :meth:`extract`, and a JPEG of the batch's last frame with everyone's skeleton drawn
        (for a live page; the frames are here already, so the preview costs no transfer)."""
        decoded, people = self._posed(frames, feed, detection_seconds)
        preview = preview_jpeg(decoded[-1].image, people[-1]) if decoded else b""
        return schemas.stamped(schemas.people_to_batch(frames, people), self._here()), preview

    def forget(self, feed: str) -> None:
        """The live feed ended: hand its trackers back."""
        session = self.live.pop(feed, None)
        if session is not None:
            session.finish()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, enable_task_events=False)
class CountingHost(_Local):
    """The counting sessions of many feeds.  Each call returns its count updates and the feed's
    session snapshot after it, which the driver keeps for as long as it may need to restore it.
    Calls run one at a time, in the order the driver made them."""

    def __init__(self) -> None:
        self.sessions: dict[str, TemporalSession] = {}

    def open(self, feed: str, counting: FeedCounting, state: dict | None = None) -> bool:
        """Start the feed's session afresh, or from a snapshot it returned earlier."""
        session = counting.session()
        if state is not None:
            session.restore(state)
        self.sessions[feed] = session
        return True

    def _session(self, feed: str) -> TemporalSession:
        if feed not in self.sessions:
            raise StateLost(f"the counting host does not hold {feed} (restarted?)")
        return self.sessions[feed]

    @ray.method(num_returns=2)
    def push(self, feed: str, people: pa.RecordBatch) -> tuple[pa.RecordBatch, dict]:
        session = self._session(feed)
        self._check(people)
        updates = [update for frame in schemas.batch_to_people(people) for update in session.push(frame)]
        return schemas.updates_to_batch(feed, updates), session.snapshot()

    @ray.method(num_returns=2)
    def finish(self, feed: str) -> tuple[pa.RecordBatch, dict]:
        session = self._session(feed)
        return schemas.updates_to_batch(feed, session.finish()), session.snapshot()

    def close(self, feed: str) -> None:
        self.sessions.pop(feed, None)
