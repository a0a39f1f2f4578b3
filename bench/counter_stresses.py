"""The counter's stresses (``tests/test_counter_stress.py``), sequence by sequence: where a rise comes from.

    .venv/bin/python bench/counter_stresses.py [--stress set_up_moves] [--rate 15 all] [--draws 1] [--worst 8]

Counts every RepCount dev sequence as it is and changed by a stress of the test module (or
one defined here: ``set_up_moves_jitter_kept``, ``set_up_move_before``, ``set_up_move_after``,
``lost_at_the_bottom``), as the counting job streams it (3 s windows every 3 s,
posed at ``--rate``), on every core. Prints, per rate, the MAE and OBO of both, each fold's MAE (the
sequences sorted by name, every third in a fold, as ``cadence bench repcount --folds 3``), the rise
of the MAE the test bounds, and the sequences whose error rose most. Figures only; nothing is
asserted. Run from the repository's root (it imports the test module's stresses).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cadence import Pose  # noqa: E402
from cadence.pipelines.repcount import Score, mean_absolute_error, off_by_one_accuracy, read_labels  # noqa: E402
from tests import test_counter_stress as stresses  # noqa: E402
from tests.helpers import REPCOUNT  # noqa: E402


def set_up_moves_jitter_kept(poses, rng, cycles=(), smooth=9):
    """As the test's ``set_up_moves``, but only the body's motion is slowed: the first labelled
    repetition's 0.3 s moving average is played at 40 % of its speed and 60 % of its range, and
    what the average left out (the pose model's jitter from frame to frame) is put back at the frame
    rate, as a pose model jitters on a body that moves slowly."""
    if not cycles:
        return poses
    start, end = cycles[0]
    rep = [p for p in poses[start:end + 1] if p is not None]
    if len(rep) < 3:
        return poses
    keypoints = np.array([p.keypoints for p in rep])
    average = uniform_filter1d(keypoints, size=min(smooth, len(rep)), axis=0, mode="nearest")
    jitter = keypoints[:, :, :2] - average[:, :, :2]
    slow = [p.keypoints for p in stresses.retimed([Pose(k) for k in average], 0.4)]
    mean = np.mean(slow, axis=0)
    move = [Pose(np.concatenate([mean[:, :2] + 0.6 * (k[:, :2] - mean[:, :2]) + jitter[i % len(rep)],
                                 keypoints[i % len(rep), :, 2:]], axis=1)) for i, k in enumerate(slow)]
    still = [rep[0]] * 30
    return move + still + poses + still + move


def set_up_move_before(poses, rng, cycles=()):
    """The test's ``set_up_moves``, the move before the set only."""
    changed = stresses.set_up_moves(poses, rng, cycles)
    return changed[:len(changed) - (len(changed) - len(poses)) // 2]


def set_up_move_after(poses, rng, cycles=()):
    """The test's ``set_up_moves``, the move after the set only."""
    changed = stresses.set_up_moves(poses, rng, cycles)
    return changed[(len(changed) - len(poses)) // 2:]


def lost_at_the_bottom(poses, rng, cycles=(), share=1 / 3):
    """No person found over the middle ``share`` of every labelled repetition (its bottom, or its top:
    where RepCount's cycles turn), as when a body in poor light merges with a dark floor."""
    out = list(poses)
    for start, end in cycles:
        middle, half = (start + end) / 2, share * (end - start) / 2
        for i in range(int(middle - half), min(len(out), int(middle + half) + 1)):
            out[i] = None
    return out


HERE = {f.__name__: f for f in (set_up_moves_jitter_kept, set_up_move_before, set_up_move_after, lost_at_the_bottom)}


def stress_named(name: str):
    return HERE[name] if name in HERE else getattr(stresses, name)


def changed_count(args) -> float:
    index, name, seed, rate = args
    poses, _, cycles = stresses.dev_set()[index]
    poses = list(poses)
    if name != "none":
        poses = stress_named(name)(poses, np.random.default_rng(seed), cycles)
    return stresses.count(poses, rate)


def folds(counts, truths, names, rate, k=3) -> list[float]:
    """Each fold's MAE, the folds as ``cadence bench repcount --folds`` makes them."""
    videos = [{"name": name, "pred": c, "gt": t} for name, c, t in zip(names, counts, truths)]
    return [round(fold.mae, 3) for fold in Score(3.0, 3.0, rate, videos, 0.0).folds(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stress", default="set_up_moves",
                        help="a stress of tests/test_counter_stress.py (set_up_moves, shuffled_piece, jittered, "
                             "dropped, hidden_at_the_bottom, silhouette, panned_and_zoomed) or one defined here: "
                             "set_up_moves_jitter_kept, set_up_move_before, set_up_move_after, lost_at_the_bottom")
    parser.add_argument("--rate", nargs="+", default=["15", "all"], help="poses a second (all: every frame)")
    parser.add_argument("--draws", type=int, default=1, help="random draws of the stress (seeds 0, 1, ...)")
    parser.add_argument("--worst", type=int, default=8, help="sequences listed, those whose error rose most")
    args = parser.parse_args()
    stress_named(args.stress)  # an unknown name fails here, before any counting
    names = [s.path.stem for s in read_labels(REPCOUNT / "poses", REPCOUNT / "labels.csv")]
    truths = [truth for _, truth, _ in stresses.dev_set()]
    with ProcessPoolExecutor() as pool:
        for rate in [None if r == "all" else float(r) for r in args.rate]:
            jobs = [(i, "none", 0, rate) for i in range(len(names))]
            jobs += [(i, args.stress, seed, rate) for seed in range(args.draws) for i in range(len(names))]
            counted = list(pool.map(changed_count, jobs, chunksize=2))
            plain, draws = counted[:len(names)], np.reshape(counted[len(names):], (args.draws, len(names)))
            changed = list(draws.mean(axis=0))
            before, after = mean_absolute_error(plain, truths), np.mean([mean_absolute_error(d, truths) for d in draws])
            print(f"rate {'all' if rate is None else rate}: MAE {before:.4f} -> {after:.4f} (rise {after - before:+.4f});"
                  f" OBO {off_by_one_accuracy(plain, truths):.3f} -> {off_by_one_accuracy(changed, truths):.3f};"
                  f" folds {folds(plain, truths, names, rate)} -> {folds(changed, truths, names, rate)}")
            rises = [(abs(b - t) - abs(a - t)) / max(t, 1) for a, b, t in zip(plain, changed, truths)]
            for i in sorted(range(len(names)), key=lambda i: -rises[i])[:args.worst]:
                print(f"  {names[i]:<12} {plain[i]:6.2f} -> {changed[i]:6.2f} of {truths[i]:3.0f}"
                      f"  error {rises[i]:+.3f} (the MAE {rises[i] / len(names):+.4f})")


if __name__ == "__main__":
    main()
