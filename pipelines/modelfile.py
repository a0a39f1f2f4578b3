"""Model and checkpoint files: numpy arrays plus one JSON header in an ``.npz``, never pickle.

Loading uses ``np.load(allow_pickle=False)`` and reads only plain numeric and text arrays, so a
model file from someone else cannot run code here; anything unexpected is refused with a clear
error.  Files are written under a hidden name and renamed into place, so a crash (even ``kill -9``)
while writing leaves the previous file whole.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .classifiers import Adam, ClassifierModel
from .errors import ModelFileError
from .files import replaced_atomically

FORMAT = "cadence-model"
MAX_HEADER_BYTES = 1 << 20  # the JSON header: classes, parameters, training metrics
MAX_ARRAY_BYTES = 1 << 28  # 256 MiB: a network of 8,000 x 8,000 float32 weights; trained models are a few MB
VERSION = 1
KINDS = ("logistic_regression", "fully_connected_network")


def _arrays(model: ClassifierModel, prefix: str = "") -> dict[str, np.ndarray]:
    arrays = {f"{prefix}mean": model.mean, f"{prefix}scale": model.scale}
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"{prefix}w{i}"], arrays[f"{prefix}b{i}"] = w, b
    if model.optimizer is not None:
        for i, (m, v) in enumerate(zip(model.optimizer.m, model.optimizer.v)):
            arrays[f"{prefix}adam_m{i}"], arrays[f"{prefix}adam_v{i}"] = m, v
    return arrays


def _header(model: ClassifierModel) -> dict:
    return {"kind": model.kind, "classes": model.classes, "params": model.params, "layers": len(model.weights),
            "optimizer_step": None if model.optimizer is None else model.optimizer.step}


def save(path: str | os.PathLike, models: dict[str, ClassifierModel], extra: dict | None = None) -> Path:
    """Write named models (``{"model": m}``, or a checkpoint's several) and a JSON ``extra``."""
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, "models": {k: _header(m) for k, m in models.items()},
              "extra": extra or {}}
    arrays = {"header": np.array(json.dumps(header))}
    for name, model in models.items():
        arrays.update(_arrays(model, f"{name}/"))
    with replaced_atomically(path) as hidden, open(hidden, "wb") as f:
        np.savez(f, **arrays)
    return path


def load(path: str | os.PathLike) -> tuple[dict[str, ClassifierModel], dict]:
    """The models in a file and its ``extra``; :class:`ModelFileError` for anything else."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "no such model file", "check the path, or train one with cadence train")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(_checked(path, data, "header", MAX_HEADER_BYTES)))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError("format")
            if header.get("version") != VERSION:
                raise ModelFileError(path, f"is version {header.get('version')} of the model format; this cadence "
                                           f"reads version {VERSION}")
            arrays = {k: _checked(path, data, k, MAX_ARRAY_BYTES) for k in _needed(header["models"])}
        models = {name: _model(name, spec, arrays) for name, spec in header["models"].items()}
    except ModelFileError:
        raise
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ModelFileError(path, "is not a cadence model file (its header or arrays are not as expected)",
                             "it may be corrupt or of another program; models are never loaded with pickle") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(path, f"is not a cadence model file ({type(e).__name__})",
                             "it may be corrupt or of another program") from e
    return models, header.get("extra", {})


def _needed(specs: dict[str, Any]) -> list[str]:
    """The arrays the header's models use: only these are read."""
    names = []
    for name, spec in specs.items():
        layers = int(spec["layers"])
        names += [f"{name}/mean", f"{name}/scale"] + [f"{name}/{w}{i}" for i in range(layers) for w in "wb"]
        if spec.get("optimizer_step") is not None:
            names += [f"{name}/adam_{m}{i}" for i in range(2 * layers) for m in "mv"]
    return names


def _checked(path: Path, data: Any, key: str, limit: int) -> np.ndarray:
    """One array of the file, read only once its declared shape and size are checked (a file may
    declare terabytes, or hide a huge array inside a small compressed one)."""
    member = f"{key}.npy"
    if member not in data.zip.namelist():
        raise ValueError(f"no array {key}")
    with data.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > limit or data.zip.getinfo(member).file_size > limit + 4096:
        raise ModelFileError(path, f"declares an array {key} of {size:,} bytes, more than any model holds "
                                   f"(at most {limit:,})", "it is corrupt or was made to exhaust memory: do not use it")
    return data[key]


def _numeric(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    a = arrays[key]
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{key} is not numeric")
    return a


def _model(name: str, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> ClassifierModel:
    if spec["kind"] not in KINDS:
        raise ValueError(f"unknown kind {spec['kind']!r}")
    layers = int(spec["layers"])
    weights = [_numeric(arrays, f"{name}/w{i}") for i in range(layers)]
    biases = [_numeric(arrays, f"{name}/b{i}") for i in range(layers)]
    mean, scale = _numeric(arrays, f"{name}/mean"), _numeric(arrays, f"{name}/scale")
    classes = [str(c) for c in spec["classes"]]
    sizes = [len(mean)] + [w.shape[1] for w in weights]
    if any(w.shape != (a, b) for w, a, b in zip(weights, sizes, sizes[1:])) or sizes[-1] != len(classes):
        raise ValueError("layer shapes do not fit together")
    optimizer = None
    if spec.get("optimizer_step") is not None:
        count = 2 * layers
        optimizer = Adam([_numeric(arrays, f"{name}/adam_m{i}") for i in range(count)],
                         [_numeric(arrays, f"{name}/adam_v{i}") for i in range(count)], int(spec["optimizer_step"]))
    return ClassifierModel(spec["kind"], classes, mean, scale, weights, biases, spec.get("params", {}), optimizer)
