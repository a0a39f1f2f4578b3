"""What the classifiers make and read: a trained :class:`ClassifierModel` (standardisation, dense
layers, softmax), its training state and progress as plain data (a checkpoint keeps them), the
matrices examples become, and how a model is scored on validation rows.  The estimators that
train these are in :mod:`cadence.pipelines.classifiers`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import clip_vector
from .base import AnnotatedFeature, Transformer
from .errors import DataError, ModelFileError

HELD_BACK = 0.1  # the share of the training data held back for validation when none is given


@dataclass(frozen=True)
class Classification:
    label: str
    probability: float
    probabilities: dict[str, float] = field(repr=False)


def as_vector(feature: Any) -> np.ndarray:
    """A feature vector from a vector, or from a list of windows (pooled as a clip's are)."""
    if hasattr(feature, "vector"):  # one window
        return np.asarray(feature.vector, np.float32)
    if isinstance(feature, (list, tuple)) and feature and hasattr(feature[0], "vector"):
        return clip_vector(feature)
    vector = np.asarray(feature, dtype=np.float32)
    if vector.ndim != 1:
        raise DataError(f"expected a feature vector (1-D) or a list of windows, got shape {vector.shape}")
    return vector


def as_matrix(data: Iterable[AnnotatedFeature]) -> tuple[np.ndarray, np.ndarray]:
    rows = list(data)
    if not rows:
        raise DataError("no training examples")
    return np.stack([as_vector(d.feature) for d in rows]), np.array([str(d.annotation) for d in rows])


def check_labels(owner: object, labels: Sequence[str]) -> list[str]:
    classes = sorted(set(map(str, labels)))
    if len(classes) < 2:
        raise DataError(f"{type(owner).__name__}: needs examples of at least two labels, got {classes or 'none'}")
    return classes


@dataclass
class TrainingState:
    """An updatable model's training state: Adam's moments and step count, and the running
    statistics of the features seen (rows, mean, sum of squared deviations) for the standardisation."""

    m: list[np.ndarray]
    v: list[np.ndarray]
    step: int = 0
    rows: int = 0
    feature_mean: np.ndarray | None = None  # float64
    feature_m2: np.ndarray | None = None  # float64

    @classmethod
    def fitted_on(cls, model: ClassifierModel, x: np.ndarray) -> TrainingState:
        """The state of a model fitted in one go on ``x``: the features' running statistics are
        those of ``x`` and Adam starts afresh, so updates carry on from the fitted model."""
        params = model.weights + model.biases
        x = np.asarray(x, np.float64)
        mean = x.mean(axis=0)
        return cls([np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], 0, len(x), mean,
                   ((x - mean) ** 2).sum(axis=0))

    def copy(self) -> TrainingState:
        return TrainingState([a.copy() for a in self.m], [a.copy() for a in self.v], self.step, self.rows,
                             None if self.feature_mean is None else self.feature_mean.copy(),
                             None if self.feature_m2 is None else self.feature_m2.copy())


class ClassifierModel(Transformer):
    """A classifier: standardise, then dense layers (none hidden: logistic regression), softmax.
    ``weights``/``biases`` are per layer; a model made by ``make_transformer`` has none until its
    first update."""

    def __init__(self, kind: str, classes: list[str], mean: np.ndarray | None, scale: np.ndarray | None,
                 weights: list[np.ndarray], biases: list[np.ndarray], params: dict | None = None,
                 training: TrainingState | None = None):
        self.kind, self.classes, self.mean, self.scale = kind, list(classes), mean, scale
        self.weights, self.biases, self.params = weights, biases, params or {}
        self.training = training  # an updatable model's state

    def get_params(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes, "params": self.params}

    @property
    def dimension(self) -> int | None:
        """The feature vector's length (None before the first update)."""
        return None if self.mean is None else len(self.mean)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, one row per row of ``x`` (columns in ``classes`` order)."""
        if not self.weights:
            raise DataError(f"{self.kind} model: not trained yet; update it with examples first")
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.dimension:
            raise DataError(f"{self.kind} model: expects feature vectors of {self.dimension} values, got {x.shape[1]}")
        return forward(self, x)[-1]

    def predicted(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.classes)[self.probabilities(x).argmax(axis=1)]

    def applied(self, feature: Any) -> Classification:
        p = self.probabilities(as_vector(feature))[0]
        best = int(p.argmax())
        return Classification(self.classes[best], float(p[best]), dict(zip(self.classes, map(float, p))))

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write the model to exactly ``path`` as safetensors (no pickle: any safetensors reader loads
        its weights), with ``metadata`` (JSON) beside it; :meth:`load` reads it back."""
        from .modelfile import save

        return save(path, {"model": self}, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassifierModel:
        """The model in a file :meth:`save` or ``cadence train`` wrote; :class:`ModelFileError` names
        anything else."""
        from .modelfile import load

        models, _ = load(path)
        if "model" not in models:
            raise ModelFileError(path, "holds no trained model (a checkpoint?)",
                                 "give a file written by save or cadence train --model")
        return models["model"]

    def copy(self) -> ClassifierModel:
        return ClassifierModel(self.kind, self.classes, None if self.mean is None else self.mean.copy(),
                               None if self.scale is None else self.scale.copy(), [w.copy() for w in self.weights],
                               [b.copy() for b in self.biases], dict(self.params),
                               None if self.training is None else self.training.copy())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ClassifierModel) and self.kind == other.kind and self.classes == other.classes
                and len(self.weights) == len(other.weights)
                and all(np.array_equal(a, b) for a, b in zip(self.weights + self.biases, other.weights + other.biases))
                and np.array_equal(self.mean, other.mean) and np.array_equal(self.scale, other.scale))

    __hash__ = None  # type: ignore[assignment]


def forward(model: ClassifierModel, x: np.ndarray, dropout: Callable[[np.ndarray], np.ndarray] | None = None,
             ) -> list[np.ndarray]:
    """Activations of every layer; the last is the softmax.  ``dropout(h)`` gives the mask
    (already scaled by 1 / (1 - p)) applied to each hidden layer's output while training."""
    h = (np.asarray(x, np.float32) - model.mean) / model.scale
    outputs = [h]
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        h = h @ w + b
        if i < len(model.weights) - 1:
            h = np.maximum(h, 0.0)
            if dropout is not None:
                h = h * dropout(h)
        outputs.append(h)
    z = outputs[-1] - outputs[-1].max(axis=1, keepdims=True)
    e = np.exp(z)
    outputs[-1] = e / e.sum(axis=1, keepdims=True)
    return outputs


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean.astype(np.float32), np.where(scale > 1e-8, scale, 1.0).astype(np.float32)


def split_validation(x: np.ndarray, y: np.ndarray, validate_on: Iterable[AnnotatedFeature] | None, seed: int,
                     ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(training rows, validation rows): ``validate_on`` if given, else a tenth held back (from ``seed``)."""
    if validate_on is not None:
        return (x, y), as_matrix(validate_on)
    held = np.random.default_rng(seed).random(len(y)) < HELD_BACK
    if held.all() or not held.any():
        held[:] = False
    return (x[~held], y[~held]), (x[held], y[held])


@dataclass(frozen=True)
class Validation:
    accuracy: float
    loss: float  # mean cross-entropy


def scored(model: ClassifierModel, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Validation | None:
    """Accuracy and mean cross-entropy over the chunks; None without rows.  A label the model has
    not seen counts as wrong, with the loss of a probability of 1e-12."""
    right, loss, total = 0, 0.0, 0
    index = {c: i for i, c in enumerate(model.classes)}
    for x, y in chunks:
        if not len(y):
            continue
        p = model.probabilities(x)
        known = np.array([label in index for label in y])
        columns = np.array([index.get(label, 0) for label in y])
        chosen = np.where(known, p[np.arange(len(y)), columns], 0.0)
        right += int((known & (p.argmax(axis=1) == columns)).sum())
        loss += float(-np.log(chosen + 1e-12).sum())
        total += len(y)
    return Validation(right / total, loss / total) if total else None


@dataclass
class TrainingProgress:
    """Where an epoch loop stands, as plain data: a checkpoint saves it and a resumed run starts from it."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -np.inf  # minus the validation loss (or the training loss without validation data)
    waited: int = 0  # epochs since the best
    rows_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def advance(self, score: float, tolerance: float = 0.0) -> None:
        """Record the epoch's score: a new best if it beats the best by more than ``tolerance``."""
        if score > self.best_score + tolerance or self.best_epoch == 0:
            self.best_score, self.best_epoch, self.waited = score, self.epoch, 0
        else:
            self.waited += 1

    @property
    def rows_per_second(self) -> float:
        return self.rows_seen / max(self.train_seconds, 1e-9)
