"""FSDD accuracy with cadence's defaults: the standard split and leave-one-speaker-out.

    .venv/bin/python bench/fsdd_accuracy.py [--data DIR] [--seeds 0 1 2 3 4] [--classifier mlp logreg]

Runs what `cadence features MANIFEST --store DIR` and `cadence train --store DIR` run, with their
default options (the feature rate chosen from the files, the classifier's defaults), on one
manifest per split: the standard split (recordings 0-4 are the test set) and six leave-one-speaker-
out manifests (train on five speakers, test on the sixth). Prints the test accuracy of each, the
mean over the six speakers and its spread, per seed. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from cadence.cluster.bench.features import fsdd_manifest
from cadence.cluster.audio.features import extract_corpus, read_manifest
from cadence.cluster.audio.settings import CLASSIFIERS, TrainSettings
from cadence.cluster.audio.train import open_store, train

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def store_for(path: Path, folder: Path):
    """The store `cadence features` makes with its defaults."""
    extract_corpus(read_manifest(path), folder, use_ray=False)
    return open_store(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--classifier", nargs="+", default=["mlp", "logreg"], choices=("mlp", "logreg"))
    args = parser.parse_args()
    recordings = Path(args.data) / "fsdd" / "recordings"
    if not recordings.is_dir():
        raise SystemExit(f"no FSDD recordings under {args.data}")
    with tempfile.TemporaryDirectory(prefix="cadence-fsdd-") as tmp:
        work = Path(tmp)
        splits = {"standard": lambda speaker, index: index < 5}
        splits |= {s: (lambda held: lambda speaker, index: speaker == held)(s) for s in SPEAKERS}
        stores = {name: store_for(fsdd_manifest(recordings, work / f"{name}.csv", test), work / name)
                  for name, test in splits.items()}
        for classifier in args.classifier:
            for seed in args.seeds:
                scores = {name: train(store, TrainSettings(CLASSIFIERS[classifier](random_seed=seed))).test_accuracy
                          for name, store in stores.items()}
                held = [scores[s] for s in SPEAKERS]
                print(f"{classifier} seed {seed}: standard split {scores['standard']:.4f}; leave one speaker out "
                      + ", ".join(f"{s} {scores[s]:.3f}" for s in SPEAKERS)
                      + f"; mean {np.mean(held):.4f} (min {min(held):.3f}, max {max(held):.3f})", flush=True)


if __name__ == "__main__":
    main()
