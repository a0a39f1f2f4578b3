"""``cadence bench tune``: ``cadence tune``'s trials in parallel against the same trials in turn."""

from __future__ import annotations

import time
from pathlib import Path

from cadence.pipelines.modelfile import load

from cadence.cluster.audio.features import extract_corpus
from cadence.cluster.audio.settings import CLASSIFIERS, TrainSettings
from cadence.cluster.audio.tune import Trial, grid, run_trial, tune, unsearched
from cadence.cluster.bench.features import fsdd_manifest
from cadence.cluster.runtime.connect import connected


def bench_tune(fsdd: Path, classifier: str, address: str | None, work: Path) -> dict:
    """The default grid on FSDD's standard split, as Ray Tune trials and then the same trials one
    after another in this process; times, and whether both find the same best model."""
    summary = extract_corpus(fsdd_manifest(fsdd, work / "fsdd.csv"), work / "store", use_ray=False)
    base = TrainSettings(CLASSIFIERS[classifier]())
    with connected(address) as cluster:
        parallel = tune(summary.store, base, {}, work / "best-tune.safetensors")
    (work / "sequential").mkdir()
    started = time.perf_counter()
    sequential = [Trial(config, **run_trial(summary.store, unsearched(base), str(work / "sequential"), config))
                  for config in grid(base, {})]
    seconds = time.perf_counter() - started
    best = sorted(sequential, key=Trial.rank)[0]
    same = load(best.model)[0]["model"] == load(parallel.model)[0]["model"]
    return {"classifier": classifier, "trials": len(parallel.trials), "cpus": cluster["cpus"],
            "tune_seconds": round(parallel.seconds, 1), "sequential_seconds": round(seconds, 1),
            "speedup": round(seconds / parallel.seconds, 2), "best": parallel.best.settings,
            "best_validation_accuracy": parallel.best.validation_accuracy,
            "best_test_accuracy": parallel.best.test_accuracy, "same_best_model": same}
