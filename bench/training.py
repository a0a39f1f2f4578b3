"""Training figures on FSDD: preprocessing once versus per tuning run, driver throughput, memory.

    .venv/bin/python bench/training.py [--data DIR] [--memory] [--json OUT]

1. Extracts FSDD's features once into a store (one process) and times it.
2. Fits five ``l2_penalty`` values (per example) of logistic regression on the stored features, and
   compares with extracting the features again for every value (as a pipeline without a store would).
3. Trains the MLP with the chunked driver (``cadence train``'s code) and its defaults over seeds
   0-4, at Create ML's default width (100) and at 256, and prints test accuracy and rows per second.
4. With ``--memory``: peak memory (max RSS) of ``cadence train`` in a fresh process on the plain
   store and on a store ten times larger (FSDD tiled with gain and time-shift variations).

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cadence.cluster.bench.features import fsdd_manifest, tile_corpus
from cadence.cluster.audio.features import extract_corpus
from cadence.cluster.audio.store import vectors
from cadence.cluster.audio.settings import TrainSettings
from cadence.cluster.audio.train import open_store, train
from cadence.pipelines.audio import AudioFeaturePrint
from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier, LogisticRegressionClassifier

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(5)
PENALTIES = (1e-4, 1e-3, 1e-2, 3e-2, 0.1)


def peak_train_memory(store: Path, work: Path) -> float:
    """Max RSS in MiB of ``cadence train`` run alone in a child process."""
    code = ("import resource, sys; from cadence.cluster.cli import main; code = main(sys.argv[1:]); "
            "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code, "train", "--store", str(store), "--epochs", "3",
                          "--model", str(work / "m.safetensors"), "--json"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return int(out.split("maxrss")[1].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--memory", action="store_true", help="also compare peak memory on a 10x store")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    recordings = Path(args.data) / "fsdd" / "recordings"
    if not recordings.is_dir():
        sys.exit(f"bench/training.py: {recordings} not found (give --data DIR)")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="cadence-train-bench-") as tmp:
        work = Path(tmp)
        extractor = AudioFeaturePrint(sample_rate=8000)
        manifest = fsdd_manifest(recordings, work / "fsdd.csv")
        summary = extract_corpus(manifest, work / "store", extractor, use_ray=False)
        figures["extract_seconds"] = round(summary.seconds, 2)
        store = open_store(work / "store")

        table = store.table(columns=["label", "vector", "split"])
        x = vectors(table)
        y = np.array(table.column("label").to_pylist())
        train_rows = np.array(table.column("split").to_pylist()) == "train"
        started = time.perf_counter()
        accuracies = {}
        for penalty in PENALTIES:
            model = LogisticRegressionClassifier(l2_penalty=penalty).fitted_arrays(x[train_rows], y[train_rows])
            accuracies[penalty] = round(float((model.predicted(x[~train_rows]) == y[~train_rows]).mean()), 4)
        tune = time.perf_counter() - started
        figures["tune_five_penalties_on_stored_features_seconds"] = round(tune, 2)
        figures["tune_five_penalties_extracting_each_time_seconds"] = round(tune + 5 * summary.seconds, 2)
        figures["time_saved_share"] = round(1 - tune / (tune + 5 * summary.seconds), 3)
        figures["logreg_test_accuracy_by_l2"] = accuracies

        for hidden in ((100,), (256,)):  # Create ML's default width, and a wider one
            results = [train(store, TrainSettings(FullyConnectedNetworkClassifier(random_seed=seed,
                                                                                  hidden_unit_counts=hidden)))
                       for seed in SEEDS]
            scores = [r.test_accuracy for r in results]
            figures[f"mlp_{hidden[0]}_test_accuracy_over_seeds"] = {
                "seeds": list(SEEDS), "each": [round(a, 4) for a in scores],
                "mean": round(float(np.mean(scores)), 4), "min": round(float(min(scores)), 4)}
        figures["mlp"] = results[0].metrics()  # 256 units, seed 0: the throughput figure
        figures["logreg_default"] = train(store, TrainSettings(LogisticRegressionClassifier())).metrics()
        if args.memory:
            big_manifest, _ = tile_corpus(recordings, work / "tiled", copies=10)
            extract_corpus(big_manifest, work / "big", extractor, use_ray=False)
            figures["train_peak_rss_mib"] = {"plain": round(peak_train_memory(work / "store", work)),
                                             "ten_times": round(peak_train_memory(work / "big", work))}
            figures["rows"] = {"plain": store.count_rows(), "ten_times": open_store(work / "big").count_rows()}
    for key, value in figures.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
