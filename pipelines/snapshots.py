"""Session snapshots as bytes, and back, without pickle.

A :class:`~.base.TemporalSession`'s ``snapshot()`` is a tree of dicts, lists, tuples, numbers,
strings, numpy arrays and :class:`~.pose.Pose` records.  :func:`encode_snapshot` writes it as JSON,
tagging the types JSON lacks (a tuple, an array with its dtype and shape, a pose), so that
:func:`decode_snapshot` rebuilds the same tree: a session restored from the bytes continues exactly
as the one snapshotted.  Reading the bytes runs no code, unlike unpickling, so a store that holds
them (``cadence serve``'s) can be read safely; anything else is refused when encoding.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from .pose import Pose

_TAG = "__cadence__"


def _encoded(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"encode_snapshot: dict keys must be strings, got {list(value)[:5]}")
        if _TAG in value:
            raise TypeError(f"encode_snapshot: a dict may not use the key {_TAG!r}")
        return {k: _encoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encoded(v) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encoded(v) for v in value]}
    if isinstance(value, Pose):
        return {_TAG: "pose", "array": _encoded(value.keypoints)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"encode_snapshot: arrays of {value.dtype} are not supported")
        data = np.ascontiguousarray(value)
        return {_TAG: "array", "dtype": data.dtype.str, "shape": list(data.shape),
                "data": base64.b64encode(data.tobytes()).decode("ascii")}
    if isinstance(value, np.generic):
        return _encoded(value.item())
    raise TypeError(f"encode_snapshot: cannot store a {type(value).__name__} in a snapshot")


def _decoded(value: Any) -> Any:
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _decoded(v) for k, v in value.items()}
    if tag == "tuple":
        return tuple(_decoded(v) for v in value["items"])
    if tag == "float":
        return float(value["value"])
    if tag == "pose":
        return Pose(_decoded(value["array"]))
    if tag == "array":
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"decode_snapshot: arrays of {dtype} are not supported")
        data = base64.b64decode(value["data"])
        return np.frombuffer(data, dtype=dtype).reshape(value["shape"]).copy()
    raise ValueError(f"decode_snapshot: unknown tag {tag!r} (written by a newer cadence?)")


def encode_snapshot(state: Any) -> bytes:
    """A session's snapshot as JSON bytes (see the module's docstring)."""
    return json.dumps(_encoded(state), separators=(",", ":")).encode()


def decode_snapshot(data: bytes) -> Any:
    """The snapshot :func:`encode_snapshot` wrote."""
    return _decoded(json.loads(data))
