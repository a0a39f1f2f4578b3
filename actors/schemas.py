"""The Arrow record batches that flow between pipeline stages, and their codecs.

Every batch holds several consecutive frames (or count updates) of one feed.  Columns shared by all:

=============== ========  ==========================================================
``feed``        string    the feed's name (its source, or the name given in --feeds)
``frame_index`` int64     index of the frame in its feed (for counts: the window's last)
``timestamp``   float64   seconds into the feed
``captured_at`` float64   wall-clock time (``time.time()``) the frame was read; for counts,
                          that of the oldest frame the update is the first to count
=============== ========  ==========================================================

Payloads: ``FRAMES`` carries the BGR image bytes with their ``height`` and ``width``, and the
frame's ``shot`` (see ``Frame.shot``), which ``POSES`` carries on; ``POSES`` every person found (a list of 33 x 4 keypoints, each flattened to a fixed-size list of 132
float32); ``COUNTS`` the cumulative ``count``, the repetitions completed with it, and (with per-person
counting) each tracked person's count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from cadence.pipelines.pose import JOINT_NAMES, Pose
from cadence.pipelines.repetitions import PeopleInFrame
from cadence.pipelines.results import CountUpdate, RepetitionEvent
from cadence.pipelines.video import Frame

KEYPOINT_VALUES = len(JOINT_NAMES) * 4
KEYPOINTS = pa.list_(pa.float32(), KEYPOINT_VALUES)

_COMMON = [
    pa.field("feed", pa.string(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("timestamp", pa.float64(), nullable=False),
    pa.field("captured_at", pa.float64(), nullable=False),
]
_SHOT = pa.field("shot", pa.int32(), nullable=False)
FRAMES = pa.schema(_COMMON + [_SHOT, pa.field("height", pa.int32()), pa.field("width", pa.int32()),
                              pa.field("image", pa.large_binary())])
POSES = pa.schema(_COMMON + [_SHOT, pa.field("poses", pa.list_(KEYPOINTS))])
REPETITION = pa.struct([("index", pa.int32()), ("start_frame", pa.int64()), ("end_frame", pa.int64()),
                        ("start_time", pa.float64()), ("end_time", pa.float64()), ("confidence", pa.float64())])
PEOPLE = pa.map_(pa.string(), pa.float64())  # person id -> count, with per-person counting
COUNTS = pa.schema(_COMMON + [pa.field("count", pa.float64()), pa.field("repetitions", pa.list_(REPETITION)),
                              pa.field("people", PEOPLE), pa.field("pose_coverage", pa.float64()),
                              pa.field("reliability", pa.float64())])


def _common(feed: str, indexes: Sequence[int], timestamps: Sequence[float], captured_at: Sequence[float]) -> list:
    n = len(indexes)
    return [pa.array([feed] * n, pa.string()), pa.array(indexes, pa.int64()),
            pa.array(timestamps, pa.float64()), pa.array(captured_at, pa.float64())]


def _column(batch: pa.RecordBatch, name: str) -> list:
    return batch.column(name).to_pylist()


# -- where a batch was made -------------------------------------------------------------------
def stamped(batch: pa.RecordBatch, node: str) -> pa.RecordBatch:
    """The batch marked with the id of the Ray node that made it (schema metadata; no copy of the data)."""
    return batch.replace_schema_metadata({b"node": node.encode()})


def made_on(batch: pa.RecordBatch) -> str:
    """The node id a batch was :func:`stamped` with ('' if none)."""
    return (batch.schema.metadata or {}).get(b"node", b"").decode()


# -- frames -----------------------------------------------------------------------------------
def frames_to_batch(feed: str, frames: Sequence[Frame]) -> pa.RecordBatch:
    """Images go into one contiguous buffer, so the batch travels with one copy."""
    sizes = np.array([f.image.nbytes for f in frames], dtype=np.int64)
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    data = np.concatenate([np.ascontiguousarray(f.image).reshape(-1) for f in frames]) if frames else np.zeros(0, np.uint8)
    images = pa.Array.from_buffers(pa.large_binary(), len(frames), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    columns = _common(feed, [f.index for f in frames], [f.timestamp for f in frames], [f.captured_at for f in frames])
    columns += [pa.array([f.shot for f in frames], pa.int32()), pa.array([f.image.shape[0] for f in frames], pa.int32()),
                pa.array([f.image.shape[1] for f in frames], pa.int32()), images]
    return pa.RecordBatch.from_arrays(columns, schema=FRAMES)


def batch_to_frames(batch: pa.RecordBatch) -> list[Frame]:
    feed = batch.column("feed")
    images = batch.column("image")
    offsets = np.frombuffer(images.buffers()[1], dtype=np.int64)[images.offset:]
    data = np.frombuffer(images.buffers()[2], dtype=np.uint8)
    heights, widths = batch.column("height").to_numpy(), batch.column("width").to_numpy()
    indexes, timestamps, captured, shots = (_column(batch, n) for n in ("frame_index", "timestamp", "captured_at", "shot"))
    return [Frame(data[offsets[i]:offsets[i + 1]].reshape(heights[i], widths[i], 3), indexes[i], timestamps[i],
                  feed[i].as_py(), captured[i], shots[i]) for i in range(batch.num_rows)]


# -- poses ------------------------------------------------------------------------------------
def people_to_batch(frames: pa.RecordBatch, people: Sequence[Sequence[Pose]]) -> pa.RecordBatch:
    """Everyone found per frame, with the frame batch's common columns; keypoints in one flat buffer."""
    offsets = np.zeros(len(people) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(row) for row in people])
    flat = [pose.keypoints.reshape(-1) for row in people for pose in row]
    values = np.concatenate(flat) if flat else np.zeros(0, np.float32)
    items = pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), KEYPOINT_VALUES)
    carried = [frames.column(name) for name in ("feed", "frame_index", "timestamp", "captured_at", "shot")]
    return pa.RecordBatch.from_arrays(carried + [pa.ListArray.from_arrays(pa.array(offsets), items)], schema=POSES)


def batch_to_people(batch: pa.RecordBatch) -> list[PeopleInFrame]:
    column = batch.column("poses")
    items = column.values  # mind the slice offsets: a batch may be a slice of a larger one
    start = items.offset * KEYPOINT_VALUES
    values = items.values.to_numpy(zero_copy_only=False)[start:start + len(items) * KEYPOINT_VALUES]
    keypoints = values.reshape(-1, len(JOINT_NAMES), 4)
    offsets = column.offsets.to_numpy()  # into all of .values, also for a slice
    indexes, timestamps, captured, shots = (_column(batch, n) for n in ("frame_index", "timestamp", "captured_at", "shot"))
    return [PeopleInFrame(indexes[i], timestamps[i], captured[i],
                          [Pose(k, shots[i]) for k in keypoints[offsets[i]:offsets[i + 1]]])
            for i in range(batch.num_rows)]


# -- counts -----------------------------------------------------------------------------------
_REPETITION_FIELDS = [f.name for f in REPETITION]


def updates_to_batch(feed: str, updates: Sequence[CountUpdate]) -> pa.RecordBatch:
    columns = _common(feed, [u.frame_index for u in updates], [u.timestamp for u in updates],
                      [u.captured_at for u in updates])
    repetitions = [[{name: getattr(r, name) for name in _REPETITION_FIELDS} for r in u.repetitions] for u in updates]
    people = [None if u.people is None else list(u.people.items()) for u in updates]
    return pa.RecordBatch.from_arrays(columns + [pa.array([u.count for u in updates], pa.float64()),
                                                 pa.array(repetitions, pa.list_(REPETITION)),
                                                 pa.array(people, PEOPLE),
                                                 pa.array([u.pose_coverage for u in updates], pa.float64()),
                                                 pa.array([u.reliability for u in updates], pa.float64())],
                                      schema=COUNTS)


def batch_to_updates(batch: pa.RecordBatch) -> list[CountUpdate]:
    rows = zip(*(_column(batch, n) for n in ("feed", "frame_index", "timestamp", "count", "captured_at",
                                             "repetitions", "people", "pose_coverage", "reliability")))
    return [CountUpdate(feed, index, timestamp, count, captured,
                        tuple(RepetitionEvent(feed, **r) for r in repetitions),
                        None if people is None else dict(people), pose_coverage=coverage, reliability=reliability)
            for feed, index, timestamp, count, captured, repetitions, people, coverage, reliability in rows]
