"""Model and checkpoint files in safetensors, the ecosystem's pickle-free tensor format.

A file holds named models (``{"model": m}``, or a checkpoint's ``model`` and ``best``): each one's
arrays as tensors ``NAME/mean``, ``NAME/scale``, ``NAME/w0``, ``NAME/b0``, ... (and an updatable
model's training state: ``NAME/adam_m0``, ``NAME/adam_v0``, ..., ``NAME/feature_mean``,
``NAME/feature_m2``), and in the file's metadata one JSON header, ``cadence``: the format and its
version, each model's kind, classes and parameters, and an ``extra`` record (the extractor's
parameters and the training metrics for a trained model; the settings and progress for a
checkpoint).  Any safetensors reader (Python, Rust, JavaScript) reads the weights, and the
metadata says what they are.

Reading never runs code and never trusts sizes: the file's own header (its first 8 bytes give
its length) is read and checked first: at most 1 MiB, only float and integer tensors, none
larger than 256 MiB, each one's byte range inside the file.  Then only the tensors the models
use are read.  Anything else is refused with a :class:`ModelFileError` naming the file.  Files are
written under a hidden name and renamed into place, so a crash (even ``kill -9``) while writing
leaves the previous file whole.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .classifier_models import ClassifierModel, TrainingState
from .errors import ModelFileError
from .files import write_bytes_atomically
from .storage import Location

FORMAT = "cadence-model"
VERSION = 2  # 1 was an .npz layout
MAX_HEADER_BYTES = 1 << 20  # the safetensors header: tensor names, shapes, offsets, and cadence's metadata
MAX_ARRAY_BYTES = 1 << 28  # 256 MiB: a network of 8,000 x 8,000 float32 weights; trained models are a few MB
KINDS = ("logistic_regression", "fully_connected_network")
DTYPES = {"F32": 4, "F64": 8, "I64": 8, "I32": 4}


def _tensors(model: ClassifierModel, prefix: str) -> dict[str, np.ndarray]:
    tensors = {}
    if model.mean is not None:
        tensors[f"{prefix}mean"], tensors[f"{prefix}scale"] = model.mean, model.scale
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        tensors[f"{prefix}w{i}"], tensors[f"{prefix}b{i}"] = w, b
    state = model.training
    if state is not None:
        for i, (m, v) in enumerate(zip(state.m, state.v)):
            tensors[f"{prefix}adam_m{i}"], tensors[f"{prefix}adam_v{i}"] = m, v
        if state.feature_mean is not None:
            tensors[f"{prefix}feature_mean"], tensors[f"{prefix}feature_m2"] = state.feature_mean, state.feature_m2
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _header(model: ClassifierModel) -> dict:
    state = model.training
    return {"kind": model.kind, "classes": model.classes, "params": model.params, "layers": len(model.weights),
            "training": None if state is None else {"step": state.step, "rows": state.rows,
                                                    "statistics": state.feature_mean is not None}}


def save(path: str | os.PathLike, models: dict[str, ClassifierModel], extra: dict | None = None) -> Path | str:
    """Write named models and a JSON ``extra`` to exactly ``path``; returns it (a ``Path``, or the URI)."""
    from safetensors.numpy import save as serialise

    where = Location.of(path)
    path = where.text if where.remote else Path(where.text)
    header = {"format": FORMAT, "version": VERSION, "models": {k: _header(m) for k, m in models.items()},
              "extra": extra or {}}
    tensors: dict[str, np.ndarray] = {}
    for name, model in models.items():
        tensors.update(_tensors(model, f"{name}/"))
    data = serialise(tensors, metadata={"format": FORMAT, "cadence": json.dumps(header)})
    write_bytes_atomically(path, data)
    return path


def load(path: str | os.PathLike) -> tuple[dict[str, ClassifierModel], dict]:
    """The models in a file (a path or a URI) and its ``extra``; :class:`ModelFileError` for anything else."""
    where = Location.of(path)
    if not where.exists():
        raise ModelFileError(where, where.missing().replace("no such file", "no such model file"),
                             "check the path, or train one with cadence train")
    path = Path(where.text) if not where.remote else _Downloaded(where)
    try:
        layout, header = _read_header(path)
        arrays = _read_tensors(path, layout, _needed(header["models"]))
        models = {name: _model(name, spec, arrays) for name, spec in header["models"].items()}
    except ModelFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError, struct.error) as e:
        raise ModelFileError(path, f"is not a cadence model file ({e})",
                             "it may be corrupt, edited or of another program; models are never loaded with "
                             "pickle") from e
    except OSError as e:
        raise ModelFileError(path, f"cannot be read ({e})") from e
    return models, header.get("extra", {})


class _Downloaded:
    """A model file in object storage, read whole (models are small): what the readers below need of a path."""

    def __init__(self, where: Location):
        self.where, self.data = where, where.read_bytes()

    def __str__(self) -> str:
        return str(self.where)

    def size(self) -> int:
        return len(self.data)

    def open(self):
        return io.BytesIO(self.data)


def _read_header(path: Path | _Downloaded) -> tuple[dict, dict]:
    """The safetensors layout (tensor names to dtype, shape, offsets) and cadence's header, checked."""
    size = path.size() if isinstance(path, _Downloaded) else path.stat().st_size
    with (path.open() if isinstance(path, _Downloaded) else open(path, "rb")) as f:
        start = f.read(8)
        if start[:2] == b"PK":
            raise ModelFileError(path, "is a model file of an older cadence (.npz), which this one does not read",
                                 "train the model again (cadence train), which writes safetensors")
        if len(start) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", start)
        if length > MAX_HEADER_BYTES or length + 8 > size:
            raise ModelFileError(path, f"declares a header of {length:,} bytes (the file has {size:,}; a model's "
                                       f"header is under {MAX_HEADER_BYTES:,})",
                                 "it is corrupt or was made to exhaust memory: do not use it")
        layout = json.loads(f.read(length))
    metadata = layout.pop("__metadata__", None) or {}
    if metadata.get("format") != FORMAT:
        raise ValueError("no cadence metadata: a safetensors file of another program")
    header = json.loads(metadata["cadence"])
    if header.get("version") != VERSION:
        raise ModelFileError(path, f"is version {header.get('version')} of the model format; this cadence reads "
                                   f"version {VERSION}")
    for name, spec in layout.items():
        _check_tensor(path, name, spec, size - 8 - length)
    return layout, header


def _check_tensor(path: Path, name: str, spec: dict, data_bytes: int) -> None:
    if spec["dtype"] not in DTYPES:
        raise ValueError(f"tensor {name} is of type {spec['dtype']}, not a number type a model holds")
    count = int(np.prod([int(d) for d in spec["shape"]], dtype=object))
    begin, end = (int(o) for o in spec["data_offsets"])
    if count * DTYPES[spec["dtype"]] > MAX_ARRAY_BYTES:
        raise ModelFileError(path, f"declares a tensor {name} of {count * DTYPES[spec['dtype']]:,} bytes, more than "
                                   f"any model holds (at most {MAX_ARRAY_BYTES:,})",
                             "it is corrupt or was made to exhaust memory: do not use it")
    if not 0 <= begin <= end <= data_bytes or end - begin != count * DTYPES[spec["dtype"]]:
        raise ValueError(f"tensor {name} lies outside the file or does not fit its shape")


def _read_tensors(path: Path | _Downloaded, layout: dict, names: list[str]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    missing = [n for n in names if n not in layout]
    if missing:
        raise ValueError(f"no tensor {missing[0]}")
    if isinstance(path, _Downloaded):
        from safetensors.numpy import load as deserialise

        tensors = deserialise(path.data)
        return {n: np.array(tensors[n]) for n in names}
    with safe_open(str(path), framework="numpy") as f:
        return {n: np.array(f.get_tensor(n)) for n in names}  # writable copies: a resumed model trains on


def _needed(specs: dict[str, Any]) -> list[str]:
    """The tensors the header's models use: only these are read."""
    names = []
    for name, spec in specs.items():
        layers, training = int(spec["layers"]), spec.get("training")
        names += [f"{name}/mean", f"{name}/scale"] if layers else []
        names += [f"{name}/{w}{i}" for i in range(layers) for w in "wb"]
        if training is not None:
            names += [f"{name}/adam_{m}{i}" for i in range(2 * layers) for m in "mv"]
            names += [f"{name}/feature_mean", f"{name}/feature_m2"] if training["statistics"] else []
    return names


def _model(name: str, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> ClassifierModel:
    if spec["kind"] not in KINDS:
        raise ValueError(f"unknown kind {spec['kind']!r}")
    layers, classes = int(spec["layers"]), [str(c) for c in spec["classes"]]
    weights = [arrays[f"{name}/w{i}"] for i in range(layers)]
    biases = [arrays[f"{name}/b{i}"] for i in range(layers)]
    mean = arrays[f"{name}/mean"] if layers else None
    scale = arrays[f"{name}/scale"] if layers else None
    if layers:
        sizes = [len(mean)] + [w.shape[1] for w in weights]
        if (any(w.shape != (a, b) for w, a, b in zip(weights, sizes, sizes[1:])) or sizes[-1] != len(classes)
                or scale.shape != mean.shape or any(b.shape != (w.shape[1],) for w, b in zip(weights, biases))):
            raise ValueError("layer shapes do not fit together")
    training = None
    if spec.get("training") is not None:
        t = spec["training"]
        training = TrainingState([arrays[f"{name}/adam_m{i}"] for i in range(2 * layers)],
                                 [arrays[f"{name}/adam_v{i}"] for i in range(2 * layers)], int(t["step"]),
                                 int(t["rows"]), arrays.get(f"{name}/feature_mean"), arrays.get(f"{name}/feature_m2"))
    return ClassifierModel(spec["kind"], classes, mean, scale, weights, biases, spec.get("params", {}), training)
