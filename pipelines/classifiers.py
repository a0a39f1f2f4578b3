"""Classifiers on feature vectors: logistic regression (fitted in one go) and an updatable fully
connected network (trained batch by batch with :meth:`FullyConnectedNetworkClassifier.update`).

Both give a :class:`ClassifierModel`, a transformer from a feature to a :class:`Classification`.
A feature is one vector, or a list of per-window :class:`~cadence.pipelines.audio.AudioFeature` (as
``AudioFeaturePrint`` yields), pooled by :func:`~cadence.pipelines.audio.clip_vector`.  Models save as arrays plus JSON in one
``.npz`` file that is loaded without pickle: a model file cannot run code (see :mod:`.modelfile`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import clip_vector
from .base import AnnotatedFeature, Estimator, Transformer
from .events import Event, EventHandler


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
        raise ValueError(f"expected a feature vector (1-D) or a list of windows, got shape {vector.shape}")
    return vector


def as_matrix(data: Iterable[AnnotatedFeature]) -> tuple[np.ndarray, np.ndarray]:
    rows = list(data)
    if not rows:
        raise ValueError("no training examples")
    return np.stack([as_vector(d.feature) for d in rows]), np.array([str(d.annotation) for d in rows])


def check_labels(owner: object, labels: Sequence[str]) -> list[str]:
    classes = sorted(set(map(str, labels)))
    if len(classes) < 2:
        raise ValueError(f"{type(owner).__name__}: needs examples of at least two labels, got {classes or 'none'}")
    return classes


class ClassifierModel(Transformer):
    """A trained classifier: standardise, then a stack of dense layers (none hidden: logistic
    regression), softmax.  ``weights``/``biases`` are per layer."""

    def __init__(self, kind: str, classes: list[str], mean: np.ndarray, scale: np.ndarray,
                 weights: list[np.ndarray], biases: list[np.ndarray], params: dict | None = None,
                 optimizer: Adam | None = None):
        self.kind, self.classes, self.mean, self.scale = kind, list(classes), mean, scale
        self.weights, self.biases, self.params = weights, biases, params or {}
        self.optimizer = optimizer  # an updatable model's training state

    def get_params(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes, "params": self.params}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, one row per row of ``x`` (columns in ``classes`` order)."""
        return _forward(self, np.atleast_2d(x))[-1]

    def predicted(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.classes)[self.probabilities(x).argmax(axis=1)]

    def applied(self, feature: Any) -> Classification:
        p = self.probabilities(as_vector(feature))[0]
        best = int(p.argmax())
        return Classification(self.classes[best], float(p[best]), dict(zip(self.classes, map(float, p))))

    def copy(self) -> ClassifierModel:
        optimizer = None if self.optimizer is None else Adam([m.copy() for m in self.optimizer.m],
                                                             [v.copy() for v in self.optimizer.v], self.optimizer.step)
        return ClassifierModel(self.kind, self.classes, self.mean.copy(), self.scale.copy(),
                               [w.copy() for w in self.weights], [b.copy() for b in self.biases], dict(self.params),
                               optimizer)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ClassifierModel) and self.kind == other.kind and self.classes == other.classes
                and all(np.array_equal(a, b) for a, b in zip(self.weights + self.biases, other.weights + other.biases))
                and np.array_equal(self.mean, other.mean) and np.array_equal(self.scale, other.scale))

    __hash__ = None  # type: ignore[assignment]


def _forward(model: ClassifierModel, x: np.ndarray) -> list[np.ndarray]:
    """Activations of every layer; the last is the softmax."""
    h = (np.asarray(x, np.float32) - model.mean) / model.scale
    outputs = [h]
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        h = h @ w + b
        if i < len(model.weights) - 1:
            h = np.maximum(h, 0.0)
        outputs.append(h)
    z = outputs[-1] - outputs[-1].max(axis=1, keepdims=True)
    e = np.exp(z)
    outputs[-1] = e / e.sum(axis=1, keepdims=True)
    return outputs


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean.astype(np.float32), np.where(scale > 1e-8, scale, 1.0).astype(np.float32)


class LogisticRegressionClassifier(Estimator):
    """Multinomial logistic regression (scikit-learn's lbfgs), fitted in one go on standardised
    features.  ``l2_penalty`` is the weight of the squared-weights term (scikit-learn's 1/C)."""

    def __init__(self, l2_penalty: float = 1.0, maximum_iterations: int = 2000):
        self.l2_penalty = l2_penalty
        self.maximum_iterations = maximum_iterations

    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None) -> ClassifierModel:
        x, y = as_matrix(data)
        return self.fitted_arrays(x, y, event_handler)

    def fitted_arrays(self, x: np.ndarray, y: np.ndarray, event_handler: EventHandler | None = None) -> ClassifierModel:
        from sklearn.linear_model import LogisticRegression

        if self.l2_penalty <= 0:
            raise ValueError(f"{self!r}: l2_penalty must be > 0")
        classes = check_labels(self, y)
        mean, scale = standardisation(x)
        fit = LogisticRegression(C=1.0 / self.l2_penalty, max_iter=self.maximum_iterations)
        fit.fit((x - mean) / scale, y)
        weights, biases = fit.coef_.T.astype(np.float32), fit.intercept_.astype(np.float32)
        if len(classes) == 2:  # scikit-learn keeps one column for two classes
            weights, biases = np.hstack([-weights / 2, weights / 2]), np.array([-biases[0] / 2, biases[0] / 2], np.float32)
        if event_handler:
            event_handler(Event(type(self).__name__, len(y), len(y), {"iterations": int(fit.n_iter_.max())}))
        return ClassifierModel("logistic_regression", [str(c) for c in fit.classes_], mean, scale, [weights],
                               [biases], self.get_params())


class FullyConnectedNetworkClassifier(Estimator):
    """A multilayer perceptron (ReLU hidden layers, softmax) trained with Adam, updatable:
    ``model = make_transformer(...)`` then ``model = update(model, features, labels)`` per chunk.

    Its epoch loop, :meth:`train`, with early stopping, serves both ``fitted`` (in memory, on a
    held-back tenth) and ``cadence train`` (chunks streamed from a feature store, checkpointed).
    """

    def __init__(self, hidden_unit_counts: Sequence[int] = (100,), batch_size: int = 32,
                 learning_rate: float = 0.001, l2_penalty: float = 1e-3, random_seed: int = 0,
                 early_stop_iteration_count: int = 10, maximum_iterations: int = 200):
        self.hidden_unit_counts = tuple(hidden_unit_counts)
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2_penalty = l2_penalty
        self.random_seed = random_seed
        self.early_stop_iteration_count = early_stop_iteration_count
        self.maximum_iterations = maximum_iterations

    def make_transformer(self, classes: Sequence[str], mean: np.ndarray, scale: np.ndarray) -> ClassifierModel:
        """A default-initialised model (He-initialised weights from ``random_seed``), ready for updates."""
        classes = check_labels(self, classes)
        sizes = [len(mean), *self.hidden_unit_counts, len(classes)]
        rng = np.random.default_rng(self.random_seed)
        weights = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
        biases = [np.zeros(b, np.float32) for b in sizes[1:]]
        return ClassifierModel("fully_connected_network", classes, np.asarray(mean, np.float32),
                               np.asarray(scale, np.float32), weights, biases, self.get_params(),
                               Adam.fresh(weights, biases))

    def update(self, model: ClassifierModel, x: np.ndarray | Sequence[AnnotatedFeature],
               labels: Sequence[str] | None = None) -> float:
        """One pass of minibatch Adam over this chunk (a feature matrix and its labels, or a list of
        :class:`AnnotatedFeature`), in place; returns the mean training loss.

        The minibatch order comes from ``random_seed`` and the model's step count, so the same
        chunks in the same order give the same model, also across a checkpoint and resume.
        """
        if labels is None:
            x, labels = as_matrix(x)  # type: ignore[arg-type]
        if model.optimizer is None:
            raise ValueError(f"{type(self).__name__}: this model has no training state; make one with make_transformer")
        index = {c: i for i, c in enumerate(model.classes)}
        try:
            y = np.array([index[str(label)] for label in labels])
        except KeyError as e:
            raise ValueError(f"{type(self).__name__}: label {e.args[0]!r} is not one of the model's classes "
                             f"{model.classes}") from None
        x = np.asarray(x, np.float32)
        opt = model.optimizer
        order = np.random.default_rng([self.random_seed, opt.step]).permutation(len(y))
        losses = []
        for start in range(0, len(y), self.batch_size):
            batch = order[start:start + self.batch_size]
            losses.append(self._step(model, opt, x[batch], y[batch]))
        return float(np.mean(losses)) if losses else 0.0

    def _step(self, model: ClassifierModel, opt: Adam, x: np.ndarray, y: np.ndarray) -> float:
        activations = _forward(model, x)
        p = activations[-1]
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        delta = p.copy()
        delta[np.arange(len(y)), y] -= 1.0
        delta /= len(y)
        grads_w, grads_b = [], []
        for layer in range(len(model.weights) - 1, -1, -1):
            grads_w.append(activations[layer].T @ delta + self.l2_penalty * model.weights[layer])
            grads_b.append(delta.sum(axis=0))
            if layer:
                delta = (delta @ model.weights[layer].T) * (activations[layer] > 0)
        opt.apply(model.weights + model.biases, grads_w[::-1] + grads_b[::-1], self.learning_rate)
        return loss

    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None) -> ClassifierModel:
        """Train in memory, holding back a tenth of the examples to stop early on (see :meth:`train`)."""
        x, y = as_matrix(data)
        held = np.random.default_rng(self.random_seed).random(len(y)) < 0.1
        if held.all() or not held.any():
            held[:] = False
        mean, scale = standardisation(x[~held])
        model = self.make_transformer(sorted(set(y)), mean, scale)

        def validate(m: ClassifierModel) -> float | None:
            return float((m.predicted(x[held]) == y[held]).mean()) if held.any() else None

        best, _ = self.train(model, lambda epoch: [(x[~held], y[~held])], validate, event_handler=event_handler)
        return best

    def train(self, model: ClassifierModel, chunks: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]],
              validate: Callable[[ClassifierModel], float | None], progress: TrainingProgress | None = None,
              best: ClassifierModel | None = None, event_handler: EventHandler | None = None,
              after_epoch: Callable[[ClassifierModel, ClassifierModel, TrainingProgress], None] | None = None,
              ) -> tuple[ClassifierModel, TrainingProgress]:
        """The epoch loop: :meth:`update` on each chunk of ``chunks(epoch)``, then ``validate``.

        Stops after ``maximum_iterations`` epochs, or once ``early_stop_iteration_count`` epochs
        in a row have not beaten the best validation accuracy (the training loss stands in when
        ``validate`` has no data).  Returns the best model and the progress.  Give the
        ``progress`` and ``best`` a checkpoint kept (``after_epoch`` is called after every epoch
        with the model, the best one and the progress) to resume where it stopped.
        """
        progress = progress or TrainingProgress()
        best = best or model.copy()
        while progress.epoch < self.maximum_iterations and progress.waited < self.early_stop_iteration_count:
            epoch, began = progress.epoch + 1, time.perf_counter()
            loss, rows = 0.0, 0
            for x, y in chunks(epoch):
                loss += self.update(model, x, y) * len(y)
                rows += len(y)
            progress.rows_seen += rows
            progress.train_seconds += time.perf_counter() - began
            accuracy = validate(model)
            score = accuracy if accuracy is not None else -loss / max(rows, 1)
            progress.epoch = epoch
            if score > progress.best_score:
                best, progress.best_score, progress.best_epoch, progress.waited = model.copy(), score, epoch, 0
            else:
                progress.waited += 1
            record = {"epoch": epoch, "loss": loss / max(rows, 1), "validation_accuracy": accuracy,
                      "seconds": time.perf_counter() - began}
            progress.history.append(record)
            if event_handler:
                event_handler(Event(type(self).__name__, epoch, self.maximum_iterations, record))
            if after_epoch:
                after_epoch(model, best, progress)
        return best, progress


@dataclass
class TrainingProgress:
    """Where an epoch loop stands, as plain data: a checkpoint saves it and a resumed run starts from it."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -np.inf  # validation accuracy (or minus the training loss without validation data)
    waited: int = 0  # epochs since the best
    rows_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_seen / max(self.train_seconds, 1e-9)


@dataclass
class Adam:  # noqa: D101
    """Adam's moments for every parameter array, and the step count."""

    m: list[np.ndarray]
    v: list[np.ndarray]
    step: int = 0

    @classmethod
    def fresh(cls, weights: list[np.ndarray], biases: list[np.ndarray]) -> Adam:
        return cls([np.zeros_like(a) for a in weights + biases], [np.zeros_like(a) for a in weights + biases])

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray], rate: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.step += 1
        correction = np.sqrt(1 - beta2 ** self.step) / (1 - beta1 ** self.step)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            p -= (rate * correction * m / (np.sqrt(v) + eps)).astype(p.dtype)
