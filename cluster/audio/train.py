"""``cadence train``, ``evaluate`` and ``predict``: classifiers on a feature store, never re-extracting.

Training streams chunks of ``chunk_size`` rows from the Parquet store (memory follows the chunk,
not the corpus), in an order shuffled per epoch from the seed, one ``update`` per chunk; validates
every epoch; stops after the classifier's ``early_stop_iteration_count`` epochs without
improvement and keeps the best model;
checkpoints atomically; and resumes to the very model an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from cadence.pipelines import modelfile
from cadence.pipelines.audio import AudioFeaturePrint, clip_vector
from cadence.pipelines.classifier_models import Classification, ClassifierModel, TrainingProgress, scored
from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier, LogisticRegressionClassifier
from cadence.pipelines.errors import InputError
from cadence.pipelines.events import EventHandler
from cadence.pipelines.storage import Location

from cadence.cluster.audio.settings import STOPPING, TrainSettings
from cadence.cluster.audio.store import FeatureStore, vectors


CHECKPOINT = "checkpoint.safetensors"  # in --checkpoint-dir
SHUFFLE_CHUNKS = 4  # training draws each chunk from a buffer of this many (see _Rows.chunks)


class StoreError(InputError):
    """A feature store that cannot be trained or evaluated on."""


def open_store(path: str | os.PathLike | Location) -> FeatureStore:
    """A store folder (holding ``extractor.json``), or a root holding exactly one; a path or a URI."""
    p = Location.of(path)
    p.filesystem  # an unknown scheme is named with the store's URI
    if (p / "extractor.json").exists():
        candidates = [p]
    else:
        candidates = [q for q in p.folders() if (q / "extractor.json").exists()]
    if not candidates and not p.exists():
        problem = p.missing() if p.remote else "no such feature store"
        raise StoreError(p, problem.replace("no such file", "no such feature store"),
                         "make one with cadence features MANIFEST --store DIR")
    if not candidates:
        raise StoreError(p, "holds no feature store", "make one with cadence features MANIFEST --store DIR")
    if len(candidates) > 1:
        raise StoreError(p, f"holds stores of {len(candidates)} extractors: {', '.join(c.name for c in candidates)}",
                         "give the folder of one of them")
    spec = candidates[0] / "extractor.json"
    try:
        identity = json.loads(spec.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(spec, f"cannot be read as the store's extractor record ({e})",
                         "it is damaged: extract the files again into a new store") from e
    store = FeatureStore(candidates[0].parent, AudioFeaturePrint.from_identity(identity, str(spec)))
    if store.path != candidates[0]:
        raise StoreError(candidates[0], f"is named for another extractor than its {spec.name} records",
                         "give the store folder cadence features made, not a renamed copy")
    return store


@dataclass
class TrainResult:
    model: ClassifierModel
    epochs: int = 0
    best_epoch: int = 0
    validation_accuracy: float | None = None
    validation_loss: float | None = None
    test_accuracy: float | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    rows_per_second: float = 0.0

    def metrics(self) -> dict:
        chosen = self.model.params.get("chosen_l2_penalty", self.model.params.get("l2_penalty"))
        return {"classifier": self.model.kind, "l2_penalty": chosen, "epochs": self.epochs,
                "best_epoch": self.best_epoch,
                "validation_accuracy": None if self.validation_accuracy is None else round(self.validation_accuracy, 4),
                "test_accuracy": None if self.test_accuracy is None else round(self.test_accuracy, 4),
                "seconds": round(self.seconds, 2), "rows_per_second": round(self.rows_per_second)}


class _Rows:
    """The store's rows for training: train, validation (the ``val`` split, else every tenth train
    file by content hash) and test, read in chunks."""

    COLUMNS = ["content_hash", "label", "vector"]

    def __init__(self, store: FeatureStore, level: str):
        self.store, self.level = store, level
        self.has_val = self._any("val")
        if not self._any("train"):
            raise StoreError(store.path, "holds no training rows", "add files with split train (or no split) and "
                                                                   "run cadence features again")

    def _any(self, split: str) -> bool:
        """Whether the split holds a row (reading no further than the first batch that has one)."""
        return next(self.store.iter_batches(1 << 16, split, self.level, ["content_hash"]), None) is not None

    @staticmethod
    def _held(batch: pa.RecordBatch) -> np.ndarray:
        return np.array([int(h[:8], 16) % 10 == 0 for h in batch.column("content_hash").to_pylist()], bool)

    def chunks(self, name: str, chunk: int, order: np.random.Generator | None = None,
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vectors, labels) of at most ``chunk`` rows of ``name`` (train, val or test).

        With ``order``, shuffled through a buffer of ``SHUFFLE_CHUNKS`` chunks: parts are read in an
        order drawn from it, and each chunk is drawn at random from the buffer.  A part holds the
        files of a stretch of the manifest, often a label or two (manifests are often sorted by
        label), so chunks cut straight from parts would train the model on a few labels at a time
        and pull it towards them in turn; drawn from the buffer, each chunk mixes the rows of many
        parts.  Memory follows the buffer, not the store.
        """
        split = "val" if name == "val" and self.has_val else ("train" if name in ("train", "val") else name)
        keep = chunk * SHUFFLE_CHUNKS if order is not None else chunk
        buffered: list[tuple[np.ndarray, np.ndarray]] = []
        size = 0
        for batch in self.store.iter_batches(chunk, split, self.level, self.COLUMNS, order):
            if split == "train" and not self.has_val:
                held = self._held(batch)
                batch = batch.filter(pa.array(held if name == "val" else ~held))
            if not batch.num_rows:
                continue
            buffered.append((vectors(batch), np.array(batch.column("label").to_pylist())))
            size += batch.num_rows
            while size >= keep:
                x, y = self._shuffled(*self._joined(buffered), order)
                yield x[:chunk], y[:chunk]
                buffered, size = [(x[chunk:], y[chunk:])], len(y) - chunk
        if size:
            x, y = self._shuffled(*self._joined(buffered), order)
            for start in range(0, len(y), chunk):
                yield x[start:start + chunk], y[start:start + chunk]

    @staticmethod
    def _joined(buffered: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([b[0] for b in buffered]), np.concatenate([b[1] for b in buffered])

    @staticmethod
    def _shuffled(x: np.ndarray, y: np.ndarray, order: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        if order is None:
            return x, y
        p = order.permutation(len(y))
        return x[p], y[p]

    def labels(self, chunk: int) -> list[str]:
        """The training rows' labels (a pass over the label column only), checked: at least two."""
        labels: set[str] = set()
        for batch in self.store.iter_batches(chunk, "train", self.level, ["content_hash", "label"]):
            if not self.has_val:
                batch = batch.filter(pa.array(~self._held(batch)))
            labels.update(batch.column("label").to_pylist())
        if not labels:
            raise StoreError(self.store.path, "has no training rows left once every tenth file is held back for "
                                              "validation", "add files, or give some the split val")
        if len(labels) < 2:
            raise StoreError(self.store.path, f"holds training rows of one label only ({', '.join(labels)})",
                             "a classifier needs at least two labels")
        return sorted(labels)

    def matrix(self, name: str, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self.chunks(name, chunk))
        return self._joined(parts) if parts else (np.zeros((0, 0), np.float32), np.array([], str))


def _identity(settings: TrainSettings, store: FeatureStore) -> dict:
    """What a resumed run must share with the checkpointed one to reach the same model (as JSON reads it back)."""
    model = {k: v for k, v in settings.classifier.get_params().items() if k not in STOPPING}
    kept = {"classifier": settings.name, **model, "chunk_size": settings.chunk_size, "level": settings.level}
    return json.loads(json.dumps({"settings": kept, "store": store.path.name}))


def train(store: FeatureStore, settings: TrainSettings, event_handler: EventHandler | None = None) -> TrainResult:
    started = time.perf_counter()
    estimator = settings.classifier.check_params()
    rows = _Rows(store, settings.level)
    if isinstance(estimator, LogisticRegressionClassifier):
        result = _train_in_one_go(rows, estimator, settings)
    else:
        result = _train_in_chunks(rows, estimator, settings, event_handler)
    tested = scored(result.model, rows.chunks("test", settings.chunk_size))
    result.test_accuracy = None if tested is None else tested.accuracy
    result.seconds = time.perf_counter() - started
    return result


def _train_in_one_go(rows: _Rows, estimator: LogisticRegressionClassifier, settings: TrainSettings) -> TrainResult:
    """Logistic regression in one go on the training rows; its l2 penalty, when not given, chosen on
    the validation rows."""
    x, y = rows.matrix("train", settings.chunk_size)
    held = rows.matrix("val", settings.chunk_size)
    started = time.perf_counter()
    model = estimator.fitted_arrays(x, y, held if len(held[1]) else None)
    result = TrainResult(model, epochs=1, best_epoch=1)
    result.rows_per_second = len(y) / (time.perf_counter() - started)
    checked = scored(model, [held])
    if checked is not None:
        result.validation_accuracy, result.validation_loss = checked.accuracy, checked.loss
    return result


def _train_in_chunks(rows: _Rows, estimator: FullyConnectedNetworkClassifier, settings: TrainSettings,
                     event_handler: EventHandler | None) -> TrainResult:
    """The estimator's own epoch loop, fed chunks streamed from the store and checkpointed."""
    checkpoint = Location.of(settings.checkpoint_dir) / CHECKPOINT if settings.checkpoint_dir else None
    identity = _identity(settings, rows.store) if checkpoint else {}
    model = best = progress = None
    if settings.resume and checkpoint and checkpoint.exists():
        models, extra = modelfile.load(checkpoint)
        if extra.get("identity") != identity or "progress" not in extra:
            raise StoreError(checkpoint, "was written by a run with other settings, another store or an "
                                         "older cadence", "resume with the same settings, or start afresh "
                                                          "without --resume")
        model, best, progress = models["model"], models["best"], TrainingProgress(**extra["progress"])
    else:
        model = estimator.make_transformer(rows.labels(settings.chunk_size))  # no pass over the vectors

    def chunks(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return rows.chunks("train", settings.chunk_size, np.random.default_rng([estimator.random_seed, epoch]))

    def save_checkpoint(model: ClassifierModel, best: ClassifierModel, progress: TrainingProgress) -> None:
        last = progress.waited >= estimator.early_stop_iteration_count or progress.epoch >= estimator.maximum_iterations
        if checkpoint and (progress.epoch % settings.checkpoint_every == 0 or last):
            modelfile.save(checkpoint, {"model": model, "best": best},
                           {"identity": identity, "progress": asdict(progress)})

    best, progress = estimator.train(model, chunks, lambda m: scored(m, rows.chunks("val", settings.chunk_size)),
                                     progress, best, event_handler, save_checkpoint)
    record = progress.history[progress.best_epoch - 1] if progress.best_epoch else {}
    return TrainResult(best, progress.epoch, progress.best_epoch, record.get("validation_accuracy"),
                       record.get("validation_loss"), history=progress.history,
                       rows_per_second=progress.rows_per_second)


def save_model(path: str | os.PathLike, result: TrainResult, store: FeatureStore,
               settings: TrainSettings) -> Path | str:
    return modelfile.save(path, {"model": result.model}, {"extractor": store.extractor.identity(),
                                                          "level": settings.level, "metrics": result.metrics()})


def load_model(path: str | os.PathLike) -> tuple[ClassifierModel, AudioFeaturePrint, dict]:
    models, extra = modelfile.load(path)
    if "model" not in models or "extractor" not in extra:
        raise modelfile.ModelFileError(path, "is a checkpoint or another kind of model file, not a trained model",
                                       "give the file written by cadence train --model")
    return models["model"], AudioFeaturePrint.from_identity(extra["extractor"], path), extra


def plot_curve(history: list[dict], path: str | os.PathLike) -> None:
    _saved(curve_figure(history), path)


def curve_figure(history: list[dict]):
    """Training and validation loss by epoch (the validation loss is what stops training), with the
    validation accuracy on its own axis."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(7, 4))
    loss_axis = figure.subplots()
    loss_axis.plot(epochs, [h["loss"] for h in history], color="tab:blue", label="training loss")
    loss_axis.plot(epochs, [np.nan if h.get("validation_loss") is None else h["validation_loss"] for h in history],
                   color="tab:blue", linestyle="--", label="validation loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss", color="tab:blue")
    accuracy_axis = loss_axis.twinx()
    accuracy_axis.plot(epochs, [np.nan if h["validation_accuracy"] is None else h["validation_accuracy"]
                                for h in history], color="tab:orange", label="validation accuracy")
    accuracy_axis.set_ylabel("validation accuracy", color="tab:orange")
    lines = loss_axis.get_lines() + accuracy_axis.get_lines()
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="center right")
    figure.tight_layout()
    return figure


def evaluate(model: ClassifierModel, store: FeatureStore, split: str, level: str = "clip",
             chunk: int = 4096, extractor: AudioFeaturePrint | None = None) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on one split.  With the
    ``extractor`` the model was trained on, a store made by another one is refused: its features
    mean something else, and the accuracy would be noise."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    if extractor is not None and extractor.identity() != store.extractor.identity():
        raise StoreError(store.path, f"holds features of {store.extractor!r}, but the model was trained on "
                                     f"features of {extractor!r}",
                         "evaluate on a store extracted with the model's extractor (cadence features with "
                         "its settings), or train a model on this store")

    truth, predicted = [], []
    for batch in store.iter_batches(chunk, split, level, columns=["label", "vector"]):
        if not batch.num_rows:
            continue
        x = vectors(batch)
        truth += batch.column("label").to_pylist()
        predicted += model.predicted(x).tolist()
    if not truth:
        raise StoreError(store.path, f"holds no rows of split {split!r}", "choose another --split")
    unknown = sorted(set(truth) - set(model.classes))
    if unknown:
        raise StoreError(store.path, f"has labels the model was not trained on: {', '.join(unknown)}",
                         f"the model knows {', '.join(model.classes)}")
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=model.classes,
                                                                     zero_division=0)
    return {"split": split, "rows": len(truth), "accuracy": float(np.mean(np.array(truth) == np.array(predicted))),
            "classes": {c: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                            "support": int(s)} for c, p, r, f, s in zip(model.classes, precision, recall, f1, support)},
            "confusion_matrix": confusion_matrix(truth, predicted, labels=model.classes).tolist()}


def plot_confusion(report: dict, classes: list[str], path: str | os.PathLike) -> None:
    _saved(confusion_figure(report, classes), path)


def confusion_figure(report: dict, classes: list[str]):
    from matplotlib.figure import Figure

    matrix = np.array(report["confusion_matrix"])
    side = max(4.0, 1 + 0.5 * len(classes))  # room for the title with two classes too
    figure = Figure(figsize=(side, side))
    axis = figure.subplots()
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), v in np.ndenumerate(matrix):
        axis.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > matrix.max() / 2 else "black")
    axis.set_title(f"{report['split']}: accuracy {report['accuracy']:.3f}")
    figure.tight_layout()
    return figure


def _saved(figure, path: str | os.PathLike) -> None:
    """Write the figure as a PNG at ``path`` (a path or a URI), whole."""
    import io

    data = io.BytesIO()
    figure.savefig(data, dpi=100, format="png")
    Location.of(path).write_bytes(data.getvalue())


def predict_files(model: ClassifierModel, extractor: AudioFeaturePrint, paths: list[str],
                  on_result: Callable[[str, object], None], windows: bool = False) -> int:
    """Classify each file with the model's own extractor (its windows pooled, as in training), and
    with ``windows`` each window on its own too; returns how many failed.  ``on_result`` gets the
    path and a :class:`FilePrediction`, or the error."""
    from cadence.pipelines.errors import CadenceError

    failed = 0
    for path in paths:
        try:
            features = extractor.clip_features(path)
            per_window = [WindowPrediction(f.index, f.start_time, f.start_time + f.duration, model.applied(f))
                          for f in features] if windows else []
            on_result(path, FilePrediction(model.applied(clip_vector(features)), per_window))
        except CadenceError as e:
            failed += 1
            on_result(path, e)
    return failed


@dataclass
class WindowPrediction:
    index: int
    start_time: float
    end_time: float
    classification: Classification


@dataclass
class FilePrediction:
    classification: Classification  # the clip's, its windows pooled
    windows: list[WindowPrediction] = field(default_factory=list)

    def summary(self, path: str) -> dict:
        record = {"file": path, **_shown(self.classification)}
        if self.windows:
            record["windows"] = [{"index": w.index, "start_time": round(w.start_time, 3),
                                  "end_time": round(w.end_time, 3), **_shown(w.classification)}
                                 for w in self.windows]
        return record


def _shown(c: Classification) -> dict:
    return {"label": c.label, "probability": round(c.probability, 4),
            "probabilities": {k: round(v, 4) for k, v in c.probabilities.items()}}
