"""The Arrow record batches that flow between pipeline stages, and their codecs.

Every batch holds several consecutive frames (or windows) of one feed.  Columns shared by all:

=============  ==========  ===========================================================
``feed``       string      the feed's name (its source, or the name given in --feeds)
``frame_index`` int64      index of the frame in its feed (for windows: the last frame)
``timestamp``  float64     seconds into the feed (for windows: of the last frame)
``capture_time`` float64   wall-clock time (``time.time()``) the frame was captured; for
                           windows and counts, that of the oldest frame the window adds
=============  ==========  ===========================================================

Payloads: ``FRAMES`` carries the BGR image bytes with their ``height`` and ``width``; ``POSES``
every person found (a list of 33 x 4 keypoints, flattened to a fixed-size list of 132 float32);
``SELECTED`` the one person followed (null where nobody was); ``WINDOWS`` the window's first frame
``start`` and its selected poses; ``COUNTS`` the cumulative ``count``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipelines.pose import JOINT_NAMES, Pose
from pipelines.temporal import Window
from pipelines.video import Frame

KEYPOINT_VALUES = len(JOINT_NAMES) * 4
KEYPOINTS = pa.list_(pa.float32(), KEYPOINT_VALUES)

_COMMON = [
    pa.field("feed", pa.string(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("timestamp", pa.float64(), nullable=False),
    pa.field("capture_time", pa.float64(), nullable=False),
]
FRAMES = pa.schema(_COMMON + [pa.field("height", pa.int32()), pa.field("width", pa.int32()),
                              pa.field("image", pa.large_binary())])
POSES = pa.schema(_COMMON + [pa.field("poses", pa.list_(KEYPOINTS))])
SELECTED = pa.schema(_COMMON + [pa.field("pose", KEYPOINTS, nullable=True)])
WINDOWS = pa.schema(_COMMON + [pa.field("start", pa.int64()), pa.field("poses", pa.list_(KEYPOINTS))])
COUNTS = pa.schema(_COMMON + [pa.field("count", pa.float64())])


def _common(feed: str, indexes: Sequence[int], timestamps: Sequence[float], capture_times: Sequence[float]) -> list:
    n = len(indexes)
    return [pa.array([feed] * n, pa.string()), pa.array(indexes, pa.int64()),
            pa.array(timestamps, pa.float64()), pa.array(capture_times, pa.float64())]


def _pose_lists(per_row: Sequence[Sequence[Pose | None]]) -> pa.Array:
    """A list of poses per row; a missing pose is a null entry."""
    offsets = np.zeros(len(per_row) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(row) for row in per_row])
    flat = [p for row in per_row for p in row]
    values = np.zeros((len(flat), KEYPOINT_VALUES), dtype=np.float32)
    for i, pose in enumerate(flat):
        if pose is not None:
            values[i] = pose.keypoints.reshape(-1)
    mask = pa.array([p is None for p in flat], pa.bool_()) if any(p is None for p in flat) else None
    items = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), KEYPOINT_VALUES,
                                              mask=mask)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items)


def _from_pose_lists(column: pa.ListArray) -> list[list[Pose | None]]:
    """The inverse of :func:`_pose_lists`: each row's poses."""
    everyone = _to_poses(column.values) if len(column.values) else []
    offsets = column.offsets.to_numpy()
    return [everyone[offsets[i]:offsets[i + 1]] for i in range(len(column))]


def _to_poses(items: pa.FixedSizeListArray) -> list[Pose | None]:
    # .values keeps the slots of null entries (flatten() would drop them); mind the slice offset.
    start = items.offset * KEYPOINT_VALUES
    values = items.values.to_numpy(zero_copy_only=False)[start:start + len(items) * KEYPOINT_VALUES]
    values = values.reshape(-1, len(JOINT_NAMES), 4)
    valid = items.is_valid().to_numpy(zero_copy_only=False)
    return [Pose(values[i]) if valid[i] else None for i in range(len(items))]


# -- frames -----------------------------------------------------------------------------------
def frames_to_batch(feed: str, frames: Sequence[Frame], capture_times: Sequence[float]) -> pa.RecordBatch:
    """Images go into one contiguous buffer, so the batch travels with one copy."""
    sizes = np.array([f.image.nbytes for f in frames], dtype=np.int64)
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    data = np.concatenate([np.ascontiguousarray(f.image).reshape(-1) for f in frames]) if frames else np.zeros(0, np.uint8)
    images = pa.Array.from_buffers(pa.large_binary(), len(frames), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    columns = _common(feed, [f.index for f in frames], [f.timestamp for f in frames], capture_times)
    columns += [pa.array([f.image.shape[0] for f in frames], pa.int32()),
                pa.array([f.image.shape[1] for f in frames], pa.int32()), images]
    return pa.RecordBatch.from_arrays(columns, schema=FRAMES)


def batch_to_frames(batch: pa.RecordBatch) -> list[Frame]:
    feed = batch.column("feed")
    images = batch.column("image")
    offsets = np.frombuffer(images.buffers()[1], dtype=np.int64)[images.offset:]
    data = np.frombuffer(images.buffers()[2], dtype=np.uint8)
    heights, widths = batch.column("height").to_numpy(), batch.column("width").to_numpy()
    indexes, timestamps = batch.column("frame_index").to_numpy(), batch.column("timestamp").to_numpy()
    return [Frame(data[offsets[i]:offsets[i + 1]].reshape(heights[i], widths[i], 3), int(indexes[i]),
                  float(timestamps[i]), feed[i].as_py()) for i in range(batch.num_rows)]


# -- poses ------------------------------------------------------------------------------------
def _carry(batch: pa.RecordBatch) -> list:
    return [batch.column(name) for name in ("feed", "frame_index", "timestamp", "capture_time")]


def poses_to_batch(frames: pa.RecordBatch, poses: Sequence[Sequence[Pose]]) -> pa.RecordBatch:
    """Every person found per frame, carrying the frame batch's common columns."""
    return pa.RecordBatch.from_arrays(_carry(frames) + [_pose_lists(poses)], schema=POSES)


def batch_to_poses(batch: pa.RecordBatch) -> list[list[Pose]]:
    return _from_pose_lists(batch.column("poses"))  # type: ignore[return-value]


def selected_to_batch(poses: pa.RecordBatch, selected: Sequence[Pose | None]) -> pa.RecordBatch:
    lists = _pose_lists([[p] for p in selected])
    return pa.RecordBatch.from_arrays(_carry(poses) + [lists.values], schema=SELECTED)


def batch_to_selected(batch: pa.RecordBatch) -> list[Pose | None]:
    return _to_poses(batch.column("pose"))


# -- windows ----------------------------------------------------------------------------------
def windows_to_batch(feed: str, windows: Sequence[Window], timestamps: Sequence[float],
                     capture_times: Sequence[float]) -> pa.RecordBatch:
    columns = _common(feed, [w.stop - 1 for w in windows], timestamps, capture_times)
    columns += [pa.array([w.start for w in windows], pa.int64()), _pose_lists([list(w.elements) for w in windows])]
    return pa.RecordBatch.from_arrays(columns, schema=WINDOWS)


def batch_to_windows(batch: pa.RecordBatch) -> list[Window]:
    starts = batch.column("start").to_numpy()
    return [Window(int(start), poses) for start, poses in zip(starts, _from_pose_lists(batch.column("poses")))]


# -- counts -----------------------------------------------------------------------------------
def counts_to_batch(feed: str, indexes: Sequence[int], timestamps: Sequence[float],
                    capture_times: Sequence[float], counts: Sequence[float]) -> pa.RecordBatch:
    columns = _common(feed, indexes, timestamps, capture_times) + [pa.array(counts, pa.float64())]
    return pa.RecordBatch.from_arrays(columns, schema=COUNTS)


def empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)
