"""Classifiers on feature vectors: logistic regression and a fully connected network, both
updatable as in Create ML Components.

Both estimators give a :class:`ClassifierModel`: standardise the features, a stack of dense
layers (ReLU between, none hidden for logistic regression), softmax.  A feature is one vector,
or a list of per-window :class:`~cadence.pipelines.audio.AudioFeature` (as ``AudioFeaturePrint``
yields), pooled by :func:`~cadence.pipelines.audio.clip_vector`.

Updating, with no pass over the data first::

    model = estimator.make_transformer()          # classes may be given, or grow as labels come
    for chunk in chunks:
        estimator.update(model, chunk)            # minibatch Adam, in place; returns the mean loss

The standardisation is learned along the way: each update merges the chunk's feature means and
variances into running ones (Chan's parallel formula), then re-expresses the first layer so the
model computes exactly the same function on the new scale (``W' = diag(s1/s0) W``,
``b' = b + ((m1 - m0) / s0) W``).  A label never seen before adds an output (zero weights).

``l2_penalty`` is per example everywhere: the objective is the mean cross-entropy plus
``l2_penalty / 2`` times the squared weights (scikit-learn's ``C`` is ``1 / (l2_penalty * n)``).
Left as ``None``, :meth:`LogisticRegressionClassifier.fitted` chooses it on validation data: the
strongest penalty whose validation accuracy is within one standard error of the best (the
"one-standard-error rule"), since a model that is as good on the data at hand and simpler holds
up better on data unlike it (new speakers, new rooms).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .base import AnnotatedFeature, Estimator
from .classifier_models import (ClassifierModel, TrainingProgress, TrainingState, Validation, as_matrix,
                                check_labels, forward, scored, split_validation, standardisation)
from .errors import DataError
from .events import Event, EventHandler
from .params import Interval, Layers

UPDATE_L2_PENALTY = 1e-3  # per example, for minibatch updates when no l2_penalty is given
L2_CHOICES = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)  # per example: LogisticRegressionClassifier(l2_penalty=None) picks one


class _NetworkEstimator(Estimator):
    """What both classifiers share: a dense network (logistic regression is one with no hidden
    layer), updatable with minibatch Adam, and its epoch loop with early stopping."""

    kind = ""
    _parameter_constraints = {
        "learning_rate": [Interval(float, 0, None, "neither")], "batch_size": [Interval(int, 1)],
        "maximum_iterations": [Interval(int, 1)], "early_stop_iteration_count": [Interval(int, 1)],
        "early_stopping_tolerance": [Interval(float, 0)], "l2_penalty": [Interval(float, 0, None, "neither")],
        "random_seed": [Interval(int, 0)],
    }

    def _hidden(self) -> tuple[int, ...]:
        return ()

    def _dropout_probability(self) -> float:
        return 0.0

    def _update_penalty(self) -> float:
        return self.l2_penalty if self.l2_penalty is not None else UPDATE_L2_PENALTY

    # -- updating --------------------------------------------------------------------------------
    def make_transformer(self, classes: Sequence[str] | None = None) -> ClassifierModel:
        """A model ready for :meth:`update`, with no pass over any data: its weights are drawn
        (from ``random_seed``) at the first update, when the features' length is known; ``classes``
        may be given, and labels not among them are added as they are seen."""
        self.check_params()
        names = sorted(set(map(str, classes))) if classes is not None else []
        return ClassifierModel(self.kind, names, None, None, [], [], self.get_params(), TrainingState([], []))

    def update(self, model: ClassifierModel, x: np.ndarray | Sequence[AnnotatedFeature],
               labels: Sequence[str] | None = None) -> float:
        """One pass of minibatch Adam over this chunk (a feature matrix and its labels, or a list of
        :class:`AnnotatedFeature`), in place; returns the mean training loss.

        The minibatch order and dropout come from ``random_seed`` and the model's step count, so
        the same chunks in the same order give the same model, also across a checkpoint and resume.
        """
        if labels is None:
            x, labels = as_matrix(x)  # type: ignore[arg-type]
        if model.training is None:
            raise DataError(f"{type(self).__name__}: this model has no training state; make one with make_transformer")
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or len(x) != len(labels):
            raise DataError(f"{type(self).__name__}: update needs a matrix of feature rows and one label per row, "
                             f"got {x.shape} and {len(labels)} labels")
        if len(labels) == 0:
            return 0.0
        self._grow(model, [str(label) for label in labels], x.shape[1])
        _learn_standardisation(model, x)
        index = {c: i for i, c in enumerate(model.classes)}
        y = np.array([index[str(label)] for label in labels])
        order = np.random.default_rng([self.random_seed, model.training.step]).permutation(len(y))
        losses = [self._step(model, x[batch], y[batch])
                  for batch in (order[s:s + self.batch_size] for s in range(0, len(y), self.batch_size))]
        return float(np.mean(losses))

    def _grow(self, model: ClassifierModel, labels: list[str], dimension: int) -> None:
        """Draw the weights at the first update; add an output for each label not seen before."""
        state = model.training
        if model.mean is not None and dimension != len(model.mean):
            raise DataError(f"{type(self).__name__}: the model was updated with feature vectors of "
                             f"{len(model.mean)} values, these have {dimension}")
        new = sorted(set(labels) - set(model.classes))
        model.classes = model.classes + new
        if not model.weights:
            sizes = [dimension, *self._hidden(), len(model.classes)]
            rng = np.random.default_rng(self.random_seed)
            model.weights = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
                             for a, b in zip(sizes, sizes[1:])]
            model.biases = [np.zeros(b, np.float32) for b in sizes[1:]]
            model.mean, model.scale = np.zeros(dimension, np.float32), np.ones(dimension, np.float32)
            state.m = [np.zeros_like(a) for a in model.weights + model.biases]
            state.v = [np.zeros_like(a) for a in model.weights + model.biases]
            return
        if new:
            last = len(model.weights) - 1
            model.weights[last] = np.hstack([model.weights[last], np.zeros((model.weights[last].shape[0], len(new)),
                                                                            np.float32)])
            model.biases[last] = np.concatenate([model.biases[last], np.zeros(len(new), np.float32)])
            for moments in (state.m, state.v):
                moments[last] = np.hstack([moments[last], np.zeros((moments[last].shape[0], len(new)), np.float32)])
                bias = len(model.weights) + last
                moments[bias] = np.concatenate([moments[bias], np.zeros(len(new), np.float32)])

    def _step(self, model: ClassifierModel, x: np.ndarray, y: np.ndarray) -> float:
        state, p_drop = model.training, self._dropout_probability()
        dropout = None
        if p_drop > 0:
            rng = np.random.default_rng([self.random_seed, state.step, 1])
            dropout = lambda h: (rng.random(h.shape) >= p_drop).astype(np.float32) / (1 - p_drop)  # noqa: E731
        activations = forward(model, x, dropout)
        kept = np.float32(1.0 / (1 - p_drop))  # a kept unit's gradient is scaled as its output was
        p = activations[-1]
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        delta = p.copy()
        delta[np.arange(len(y)), y] -= 1.0
        delta /= len(y)
        grads_w, grads_b = [], []
        penalty = self._update_penalty()
        for layer in range(len(model.weights) - 1, -1, -1):
            grads_w.append(activations[layer].T @ delta + penalty * model.weights[layer])
            grads_b.append(delta.sum(axis=0))
            if layer:  # through the ReLU and the dropout mask: zero where either zeroed the unit
                delta = (delta @ model.weights[layer].T) * np.where(activations[layer] > 0, kept, np.float32(0))
        _adam(state, model.weights + model.biases, grads_w[::-1] + grads_b[::-1], self.learning_rate)
        return loss

    # -- the epoch loop --------------------------------------------------------------------------
    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None,
               validate_on: Iterable[AnnotatedFeature] | None = None) -> ClassifierModel:
        """Train in memory, stopping early on ``validate_on`` (Create ML's ``fitted(to:validateOn:)``);
        without it, a tenth of the examples (drawn from ``random_seed``) is held back for that."""
        x, y = as_matrix(data)
        (x, y), (xv, yv) = split_validation(x, y, validate_on, self.random_seed)
        model = self.make_transformer(check_labels(self, y))
        best, _ = self.train(model, lambda epoch: [(x, y)], lambda m: scored(m, [(xv, yv)]),
                             event_handler=event_handler)
        return best

    def train(self, model: ClassifierModel, chunks: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]],
              validate: Callable[[ClassifierModel], Validation | None], progress: TrainingProgress | None = None,
              best: ClassifierModel | None = None, event_handler: EventHandler | None = None,
              after_epoch: Callable[[ClassifierModel, ClassifierModel, TrainingProgress], None] | None = None,
              ) -> tuple[ClassifierModel, TrainingProgress]:
        """The epoch loop: :meth:`update` on each chunk of ``chunks(epoch)``, then ``validate``.

        Stops after ``maximum_iterations`` epochs, or once ``early_stop_iteration_count`` epochs
        in a row have not lowered the best validation loss (cross-entropy) by more than
        ``early_stopping_tolerance`` (the training loss stands in when ``validate`` has no data).
        The loss, not the accuracy, decides: on a few hundred validation examples the accuracy
        moves in steps and stalls on plateaus while the model is still getting better.
        Returns the best model and the progress.  Give the ``progress`` and ``best`` a checkpoint
        kept (``after_epoch`` is called after every epoch with the model, the best one and the
        progress) to resume where it stopped.
        """
        self.check_params()
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
            checked = validate(model)
            progress.epoch = epoch
            record = {"epoch": epoch, "loss": loss / max(rows, 1),
                      "validation_accuracy": None if checked is None else checked.accuracy,
                      "validation_loss": None if checked is None else checked.loss,
                      "seconds": time.perf_counter() - began}
            progress.advance(-(record["loss"] if checked is None else checked.loss), self.early_stopping_tolerance)
            if progress.waited == 0:
                best = model.copy()
            progress.history.append(record)
            if event_handler:
                event_handler(Event(type(self).__name__, epoch, self.maximum_iterations, record))
            if after_epoch:
                after_epoch(model, best, progress)
        return best, progress


def _learn_standardisation(model: ClassifierModel, x: np.ndarray) -> None:
    """Merge the chunk's feature statistics into the running ones and move the model to the new
    mean and scale without changing what it computes (see the module's docstring)."""
    state = model.training
    n, mean = len(x), x.mean(axis=0, dtype=np.float64)
    m2 = ((x - mean) ** 2).sum(axis=0, dtype=np.float64)
    if state.rows == 0:
        state.feature_mean, state.feature_m2 = mean, m2
    else:
        total = state.rows + n
        delta = mean - state.feature_mean
        state.feature_mean = state.feature_mean + delta * n / total
        state.feature_m2 = state.feature_m2 + m2 + delta ** 2 * state.rows * n / total
    state.rows += n
    std = np.sqrt(state.feature_m2 / state.rows)
    new_mean = state.feature_mean.astype(np.float32)
    new_scale = np.where(std > 1e-8, std, 1.0).astype(np.float32)
    ratio = new_scale / model.scale
    model.biases[0] = model.biases[0] + ((new_mean - model.mean) / model.scale) @ model.weights[0]
    model.weights[0] = model.weights[0] * ratio[:, None]
    state.m[0] = state.m[0] / ratio[:, None]  # the gradient of the rescaled weights scales by 1 / ratio
    state.v[0] = state.v[0] / (ratio ** 2)[:, None]
    model.mean, model.scale = new_mean, new_scale


def _adam(state: TrainingState, params: list[np.ndarray], grads: list[np.ndarray], rate: float,
          beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
    state.step += 1
    correction = np.sqrt(1 - beta2 ** state.step) / (1 - beta1 ** state.step)
    for p, g, m, v in zip(params, grads, state.m, state.v):
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        p -= (rate * correction * m / (np.sqrt(v) + eps)).astype(p.dtype)


class FullyConnectedNetworkClassifier(_NetworkEstimator):
    """A multilayer perceptron (ReLU hidden layers with dropout, softmax) trained with minibatch
    Adam, with Create ML's parameters and defaults; updatable (see the module's docstring).

    ``l2_penalty`` (per example) is cadence's addition.  Its epoch loop, :meth:`train`, serves
    both ``fitted`` (in memory) and ``cadence train`` (chunks streamed from a feature store).

    >>> import numpy as np
    >>> from cadence import AnnotatedFeature
    >>> rng = np.random.default_rng(0)
    >>> data = [AnnotatedFeature(rng.normal(label, 0.1, 4), str(label)) for label in (0, 1) * 20]
    >>> model = FullyConnectedNetworkClassifier(hidden_unit_counts=(8,)).fitted(data)
    >>> model.applied(np.ones(4)).label
    '1'
    """

    kind = "fully_connected_network"

    _parameter_constraints = {**_NetworkEstimator._parameter_constraints, "hidden_unit_counts": [Layers()],
                              "dropout_probability": [Interval(float, 0, 1, "left")]}

    def __init__(self, *, hidden_unit_counts: Sequence[int] = (100,), learning_rate: float = 0.001,
                 dropout_probability: float = 0.2, batch_size: int = 32, maximum_iterations: int = 200,
                 early_stop_iteration_count: int = 10, early_stopping_tolerance: float = 0.0,
                 l2_penalty: float = UPDATE_L2_PENALTY, random_seed: int = 0):
        self.hidden_unit_counts = tuple(hidden_unit_counts) if isinstance(hidden_unit_counts, Sequence) \
            else hidden_unit_counts
        self.learning_rate = learning_rate
        self.dropout_probability = dropout_probability
        self.batch_size = batch_size
        self.maximum_iterations = maximum_iterations
        self.early_stop_iteration_count = early_stop_iteration_count
        self.early_stopping_tolerance = early_stopping_tolerance
        self.l2_penalty = l2_penalty
        self.random_seed = random_seed

    def _hidden(self) -> tuple[int, ...]:
        return self.hidden_unit_counts

    def _dropout_probability(self) -> float:
        return self.dropout_probability


class LogisticRegressionClassifier(_NetworkEstimator):
    """Multinomial logistic regression.  ``fitted`` solves it in one go (scikit-learn's lbfgs) on
    standardised features, choosing ``l2_penalty`` on validation data when it is ``None`` (see the
    module's docstring); ``make_transformer``/``update`` train it by minibatch Adam instead, for data
    that comes in chunks (with ``l2_penalty`` None, 1e-3).

    >>> import numpy as np
    >>> from cadence import AnnotatedFeature
    >>> rng = np.random.default_rng(0)
    >>> data = [AnnotatedFeature(rng.normal(label, 0.1, 4), str(label)) for label in (0, 1) * 20]
    >>> LogisticRegressionClassifier(l2_penalty=0.01).fitted(data).applied(np.zeros(4)).label
    '0'
    """

    kind = "logistic_regression"

    _parameter_constraints = {**_NetworkEstimator._parameter_constraints,
                              "l2_penalty": [Interval(float, 0, None, "neither"), None]}

    def __init__(self, *, l2_penalty: float | None = None, maximum_iterations: int = 2000, learning_rate: float = 0.01,
                 batch_size: int = 32, early_stop_iteration_count: int = 10, early_stopping_tolerance: float = 0.0,
                 random_seed: int = 0):
        self.l2_penalty = l2_penalty
        self.maximum_iterations = maximum_iterations
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.early_stop_iteration_count = early_stop_iteration_count
        self.early_stopping_tolerance = early_stopping_tolerance
        self.random_seed = random_seed

    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None,
               validate_on: Iterable[AnnotatedFeature] | None = None) -> ClassifierModel:
        x, y = as_matrix(data)
        validation = None if validate_on is None else as_matrix(validate_on)
        return self.fitted_arrays(x, y, validation, event_handler)

    def fitted_arrays(self, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None = None,
                      event_handler: EventHandler | None = None) -> ClassifierModel:
        """Fit on ``x``, ``y``.  With ``l2_penalty`` None it is chosen on ``validation`` (else on a
        held-back tenth, after which the model is fitted again on every row)."""
        self.check_params()
        check_labels(self, y)
        l2, scores = self.l2_penalty, {}
        if l2 is None:
            l2, scores = self.choose_l2_penalty(x, y, validation)
        model = self._solve(x, y, l2)
        model.training = TrainingState.fitted_on(model, x)  # updatable, as the network's fitted models are
        model.params["chosen_l2_penalty"] = l2
        if scores:
            model.params["l2_validation_accuracy"] = {str(k): round(v, 4) for k, v in scores.items()}
        if event_handler:
            event_handler(Event(type(self).__name__, len(y), len(y), {**model.params, "l2_penalty": l2}))
        return model

    def choose_l2_penalty(self, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None = None,
                          ) -> tuple[float, dict[float, float]]:
        """The strongest of :data:`L2_CHOICES` within one standard error of the best validation
        accuracy, and every choice's accuracy."""
        if validation is None:
            (x, y), validation = split_validation(x, y, None, self.random_seed)
        xv, yv = validation
        if not len(yv):
            raise DataError(f"{self!r}: too few examples to hold some back for choosing l2_penalty; give one")
        scores = {l2: scored(self._solve(x, y, l2), [(xv, yv)]).accuracy for l2 in L2_CHOICES}
        best = max(scores.values())
        error = np.sqrt(best * (1 - best) / len(yv))
        return max(l2 for l2, score in scores.items() if score >= best - error), scores

    def _solve(self, x: np.ndarray, y: np.ndarray, l2: float) -> ClassifierModel:
        from sklearn.linear_model import LogisticRegression

        mean, scale = standardisation(x)
        fit = LogisticRegression(C=1.0 / (l2 * len(y)), max_iter=self.maximum_iterations)
        fit.fit((x - mean) / scale, y)
        weights, biases = fit.coef_.T.astype(np.float32), fit.intercept_.astype(np.float32)
        if len(fit.classes_) == 2:  # scikit-learn keeps one column for two classes
            weights, biases = np.hstack([-weights / 2, weights / 2]), np.array([-biases[0] / 2, biases[0] / 2], np.float32)
        return ClassifierModel(self.kind, [str(c) for c in fit.classes_], mean, scale, [weights], [biases],
                               self.get_params())
