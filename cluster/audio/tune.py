"""``cadence tune``: a search over classifier settings as Ray Tune trials on stored features.

Every trial is one ``cadence train`` (the same :func:`~cadence.cluster.audio.train.train`, so the same
settings give the same model) on the features already in the store: nothing is extracted again.
Trials run in parallel, one CPU each, on every core of the local Ray or of a cluster: each node reads
the store by its URI (``s3://...``), or a local store at the same path where the nodes share a disk.
Each trial writes its model beside ``--model`` when that is a URI (every node can write there),
else in a folder of the driver's machine; a best model that landed on another machine's disk is
trained again here from its settings (training is deterministic).  The grid is the product of the
values given for each setting; the best trial is the one with the highest validation accuracy, ties going to the lower
validation loss.  Its model is written where ``--model`` says, with its settings and scores, and
every trial's figures come back as a table.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cadence.pipelines.errors import CadenceError
from cadence.pipelines.files import write_bytes_atomically
from cadence.pipelines.storage import Location

from cadence.cluster.audio.settings import DEFAULT_GRIDS, TrainSettings
from cadence.cluster.audio.train import open_store, save_model, train



@dataclass
class Trial:
    settings: dict  # the searched settings of this trial
    validation_accuracy: float | None = None
    validation_loss: float | None = None
    test_accuracy: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    model: str = ""  # the trial's model file
    error: str | None = None

    def rank(self) -> tuple:
        """Sorts the best first: highest validation accuracy, then lowest validation loss."""
        if self.error or self.validation_accuracy is None:
            return (1, 0.0, 0.0)
        return (0, -self.validation_accuracy, self.validation_loss if self.validation_loss is not None else 0.0)


@dataclass
class TuneResult:
    trials: list[Trial]
    best: Trial
    model: str
    seconds: float
    cpus: int = 0


def grid(base: TrainSettings, given: dict[str, list]) -> list[dict]:
    """Every combination of the values given (the settings not given keep the classifier's own), or
    of the default grid when none is given; each checked as the classifier checks its parameters,
    so a bad value is refused before any trial starts."""
    values = {k: v for k, v in given.items() if v} or dict(DEFAULT_GRIDS[base.name])
    names = sorted(values)
    configs = [dict(zip(names, combination)) for combination in itertools.product(*(values[n] for n in names))]
    for config in configs:
        base.with_params(**config)
    return configs


def run_trial(store_path: str, base: TrainSettings, out_dir: str, config: dict) -> dict:
    """One trial (in a Ray worker): train with the base settings and this trial's, save the model."""
    from threadpoolctl import threadpool_limits

    settings = base.with_params(**config)
    store = open_store(store_path)
    started = time.perf_counter()
    with threadpool_limits(1):  # one CPU per trial: BLAS threads would fight the other trials for the cores
        result = train(store, settings)
    name = "-".join(f"{k}={_setting(v)}" for k, v in sorted(config.items()))
    path = save_model(Location.of(out_dir) / f"{name}.safetensors", result, store, settings)
    return {"validation_accuracy": result.validation_accuracy, "validation_loss": result.validation_loss,
            "test_accuracy": result.test_accuracy, "epochs": result.epochs,
            "seconds": time.perf_counter() - started, "model": str(path)}


def tune(store_path: str | os.PathLike, base: TrainSettings, given: dict[str, list], model_path: str | os.PathLike,
         on_trial: Callable[[Trial], None] | None = None) -> TuneResult:
    """Run the grid as Ray Tune trials (Ray must be connected) and write the best model to ``model_path``."""
    import ray

    store = open_store(store_path)  # a bad store is refused before any trial starts
    configs = grid(base, given)
    base_settings = unsearched(base)
    work = Path(tempfile.mkdtemp(prefix="cadence-tune-"))
    models = _trial_models(model_path, work)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic output, which verbose=0 silences
    started = time.perf_counter()
    try:
        # trials run in folders of their own: a path must not be relative (a URI is read as it is)
        where = str(store.path) if store.path.remote else os.path.abspath(store.path)
        trials = _fit(where, base_settings, configs, str(models), work, on_trial)
        best = trials[0]
        if best.error:
            raise CadenceError(f"every trial failed; the first: {best.error}")
        _keep_best(best, where, base_settings, model_path)
        return TuneResult(trials, best, str(model_path), time.perf_counter() - started,
                          int(ray.cluster_resources().get("CPU", 0)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if models.remote:
            for model in models.files():
                model.delete()


def _trial_models(model_path: str | os.PathLike, work: Path) -> Location:
    """Where the trials write their models: beside a ``--model`` URI, where every node can write;
    else a folder of this machine's."""
    model = Location.of(model_path)
    if model.remote:
        return model.parent / f".{model.name}.trials-{uuid.uuid4().hex[:8]}"
    (work / "models").mkdir()
    return Location.of(work / "models")


def _fit(where: str, base: TrainSettings, configs: list[dict], models: str, work: Path,
         on_trial: Callable[[Trial], None] | None) -> list[Trial]:
    """Every trial's figures, best first."""
    from ray import tune as ray_tune

    def trial(config: dict) -> None:
        ray_tune.report(run_trial(where, base, models, config["settings"]))

    class Progress(ray_tune.Callback):  # each trial as it reports, in this process
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if on_trial:
                on_trial(_trial(trial.config["settings"], result, None))

    tuner = ray_tune.Tuner(
        ray_tune.with_resources(trial, {"cpu": 1}), param_space={"settings": ray_tune.grid_search(configs)},
        tune_config=ray_tune.TuneConfig(metric="validation_accuracy", mode="max", reuse_actors=True),
        run_config=ray_tune.RunConfig(name="cadence-tune", storage_path=str(work / "tune"), verbose=0,
                                      callbacks=[Progress()]))
    with contextlib.redirect_stdout(sys.stderr):  # Tune's own tables: standard output is for results
        outcomes = tuner.fit()
    trials = []
    for outcome in outcomes:
        error = None if outcome.error is None else str(outcome.error).splitlines()[-1]
        trials.append(_trial(outcome.config["settings"], outcome.metrics or {}, error))
        if error and on_trial:
            on_trial(trials[-1])
    return sorted(trials, key=Trial.rank)


def _keep_best(best: Trial, where: str, base: TrainSettings, model_path: str | os.PathLike) -> None:
    """The best trial's model written to ``model_path``: copied, or trained again here when the
    trial wrote it on another machine's disk."""
    found = Location.of(best.model)
    if found.exists():
        write_bytes_atomically(model_path, found.read_bytes())
        return
    store = open_store(where)
    settings = base.with_params(**best.settings)
    save_model(model_path, train(store, settings), store, settings)


def _trial(settings: dict, metrics: dict, error: str | None) -> Trial:
    return Trial(settings, metrics.get("validation_accuracy"), metrics.get("validation_loss"),
                 metrics.get("test_accuracy"), metrics.get("epochs", 0), metrics.get("seconds", 0.0),
                 metrics.get("model", ""), error)


def trial_table(result: TuneResult) -> str:
    """The trials, best first, as a plain-text table."""
    names = sorted({k for t in result.trials for k in t.settings})
    header = [*names, "val acc", "val loss", "test acc", "epochs", "seconds"]
    rows = []
    for t in result.trials:
        shown = [_setting(t.settings.get(n, "")) for n in names]
        if t.error:
            rows.append(shown + [f"failed: {t.error}", "", "", "", ""])
            continue
        rows.append(shown + [_figure(t.validation_accuracy), _figure(t.validation_loss), _figure(t.test_accuracy),
                             str(t.epochs), f"{t.seconds:.1f}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def unsearched(settings: TrainSettings) -> TrainSettings:
    """The settings every trial shares (a trial neither checkpoints nor resumes)."""
    return replace(settings, checkpoint_dir=None, resume=False)


def _setting(value: object) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
