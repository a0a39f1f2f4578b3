"""FSDD accuracy of AudioFeaturePrint + logistic regression: the standard split and leave-one-speaker-out.

    .venv/bin/python bench/fsdd_accuracy.py [--data DIR] [--sample-rate 8000] [--l2 100]

Standard split: recordings with index 0-4 are the test set. Leave-one-speaker-out: train on five
speakers, test on the sixth, mean over the six. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cadence.pipelines.audio import AudioFeaturePrint, clip_vector
from cadence.pipelines.classifiers import LogisticRegressionClassifier

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--l2", type=float, default=100.0, help="logistic regression's l2_penalty (default 100)")
    args = parser.parse_args()
    files = sorted((Path(args.data) / "fsdd" / "recordings").glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD recordings under {args.data}")
    extractor = AudioFeaturePrint(sample_rate=args.sample_rate)
    started = time.perf_counter()
    x = np.stack([clip_vector(extractor.clip_features(f)) for f in files])
    print(f"{len(files)} files extracted in {time.perf_counter() - started:.1f} s")
    parts = [f.stem.split("_") for f in files]
    y = np.array([p[0] for p in parts])
    speakers = np.array([p[1] for p in parts])
    test = np.array([int(p[2]) < 5 for p in parts])
    classifier = LogisticRegressionClassifier(l2_penalty=args.l2)
    model = classifier.fitted_arrays(x[~test], y[~test])
    print(f"standard split: test accuracy {(model.predicted(x[test]) == y[test]).mean():.4f}")
    scores = {}
    for speaker in sorted(set(speakers)):
        held = speakers == speaker
        model = classifier.fitted_arrays(x[~held], y[~held])
        scores[speaker] = float((model.predicted(x[held]) == y[held]).mean())
    print("leave one speaker out: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
          + f"; mean {np.mean(list(scores.values())):.4f}")


if __name__ == "__main__":
    main()
