"""Session snapshots as bytes, and back, without pickle.

A :class:`~.base.TemporalSession`'s ``snapshot()`` is a tree of dicts, lists, tuples, numbers,
strings, numpy arrays and :class:`~.pose.Pose` records.  :func:`encode_snapshot` writes the tree as
JSON, tagging the types JSON lacks (a tuple, a non-finite float, a pose, an array by its dtype,
shape and place), followed by the arrays' raw bytes one after another:

    b"cadence-snapshot-1\n" | JSON length (8 bytes, little-endian) | JSON | the arrays' bytes

so :func:`decode_snapshot` rebuilds the same tree and a session restored from the bytes continues
exactly as the one snapshotted.  Reading the bytes runs no code, unlike unpickling, so a store that
holds them (``cadence serve``'s) can be read safely; anything else is refused when encoding.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .pose import Pose

_TAG = "__cadence__"
_MAGIC = b"cadence-snapshot-1\n"


def _encoded(value: Any, arrays: list[bytes], offset: list[int]) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"encode_snapshot: dict keys must be strings, got {list(value)[:5]}")
        if _TAG in value:
            raise TypeError(f"encode_snapshot: a dict may not use the key {_TAG!r}")
        return {k: _encoded(v, arrays, offset) for k, v in value.items()}
    if isinstance(value, list):
        if value and set(map(type, value)) == {float} and all(map(math.isfinite, value)):
            return value  # a list of plain floats, as it is (a fast path: the common case)
        return [_encoded(v, arrays, offset) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encoded(v, arrays, offset) for v in value]}
    if isinstance(value, Pose):
        return {_TAG: "pose", "array": _encoded(value.keypoints, arrays, offset), "shot": value.shot}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"encode_snapshot: arrays of {value.dtype} are not supported")
        data = np.ascontiguousarray(value).tobytes()
        arrays.append(data)
        offset[0] += len(data)
        return {_TAG: "array", "dtype": value.dtype.str, "shape": list(value.shape), "end": offset[0]}
    if isinstance(value, np.generic):
        return _encoded(value.item(), arrays, offset)
    raise TypeError(f"encode_snapshot: cannot store a {type(value).__name__} in a snapshot")


def _decoded(value: Any, blob: memoryview, start: list[int]) -> Any:
    if isinstance(value, list):
        return [_decoded(v, blob, start) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _decoded(v, blob, start) for k, v in value.items()}
    if tag == "tuple":
        return tuple(_decoded(v, blob, start) for v in value["items"])
    if tag == "float":
        return float(value["value"])
    if tag == "pose":
        return Pose(_decoded(value["array"], blob, start), int(value.get("shot", 0)))
    if tag == "array":
        dtype = np.dtype(value["dtype"])
        end = int(value["end"])
        if dtype.kind not in "biuf" or not start[0] <= end <= len(blob):
            raise ValueError(f"decode_snapshot: a bad array entry {value}")
        array = np.frombuffer(blob[start[0]:end], dtype=dtype).reshape(value["shape"]).copy()
        start[0] = end
        return array
    raise ValueError(f"decode_snapshot: unknown tag {tag!r} (written by a newer cadence?)")


def encode_snapshot(state: Any) -> bytes:
    """A session's snapshot as bytes (see the module's docstring)."""
    arrays: list[bytes] = []
    tree = json.dumps(_encoded(state, arrays, [0]), separators=(",", ":")).encode()
    return b"".join([_MAGIC, len(tree).to_bytes(8, "little"), tree, *arrays])


def decode_snapshot(data: bytes) -> Any:
    """The snapshot :func:`encode_snapshot` wrote; ValueError for anything else."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        raise ValueError("decode_snapshot: not a cadence snapshot")
    length = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 8], "little")
    body = len(_MAGIC) + 8
    tree = json.loads(data[body:body + length])
    return _decoded(tree, memoryview(data)[body + length:], [0])
