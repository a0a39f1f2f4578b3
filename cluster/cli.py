"""The ``cadence`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _quiet_native_logging() -> None:
    """Send native (C++) stderr to /dev/null; Python's own messages keep the real stderr.

    MediaPipe and TensorFlow Lite print start-up chatter from C++ threads straight to file
    descriptor 2, which no Python setting reaches.  ``--verbose`` keeps it.
    """
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(saved, "w", buffering=1)


def build_parser() -> argparse.ArgumentParser:
    from pipelines.pose import STRATEGIES

    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Temporal machine learning on streams: count exercise repetitions in videos and camera feeds.",
    )
    parser.add_argument("--verbose", action="store_true", help="keep MediaPipe's native log output on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    count = commands.add_parser(
        "count", help="count exercise repetitions in videos or live feeds",
        description="Count repetitions of the selected person in each video: poses (MediaPipe) -> one person "
                    "-> sliding windows -> a class-agnostic counter. Prints the running cumulative count.",
        epilog="Exit status: 0 when every source was counted, 2 when any source could not be read "
               "(the others are still counted), 130 on Ctrl-C (the counts so far are printed).")
    count.add_argument("sources", nargs="*", metavar="VIDEO",
                       help="video files; with --live also camera indexes (0) or stream URLs")
    count.add_argument("--feeds", metavar="FILE",
                       help="a text file with one source per line (relative paths from the file's folder)")
    count.add_argument("--window", type=int, default=90, help="poses per counting window (default 90)")
    count.add_argument("--stride", type=int, default=None,
                       help="poses between window starts (default: the window, or 15 with --live)")
    count.add_argument("--strategy", choices=STRATEGIES, default="maximum_bounding_box_area",
                       help="which person to follow when several are in view (default maximum_bounding_box_area)")
    count.add_argument("--live", action="store_true",
                       help="read cameras or stream URLs (or files paced at their frame rate) as they come; "
                            "frames the counter cannot keep up with are dropped and reported")
    count.add_argument("--annotate", metavar="OUT.mp4",
                       help="write the video with the selected skeleton and the running count drawn on it "
                            "(with several videos, one file each: OUT-NAME.mp4)")
    count.add_argument("--json", action="store_true",
                       help="print one JSON object per source at the end instead of the running counts")
    count.add_argument("--out", metavar="FILE.parquet",
                       help="write every count update (feed, frame_index, timestamp, count) as a Parquet table")
    count.add_argument("--runner", choices=("ray", "inline"), default=None,
                       help="ray (default): every feed at once through Ray actors with bounded queues; "
                            "inline: one source after another in this process (the default with --annotate)")
    count.add_argument("--address", metavar="ADDR", default=None,
                       help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start Ray locally)")
    count.add_argument("--pose-actors", type=int, default=None, metavar="N",
                       help="pose extraction actors shared by the feeds (default: one per CPU of the cluster)")
    count.set_defaults(run=_run_count)

    bench = commands.add_parser("bench", help="benchmarks that print figures",
                                description="Benchmarks that print figures (nothing is asserted).")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    repcount = benches.add_parser(
        "repcount", help="score the repetition counter on RepCount-format pose sequences",
        description="Run HumanBodyActionCounter as a stream (the same sliding windows and cumulative counts as "
                    "'cadence count') over every pose sequence listed in LABELS, and print MAE, OBO and the "
                    "per-video predictions. MAE = mean(|pred - gt| / max(gt, 1)); OBO = share with "
                    "|round(pred) - gt| <= 1.")
    repcount.add_argument("--poses", required=True, metavar="DIR", help="folder of NAME.npy arrays (T, 104)")
    repcount.add_argument("--labels", required=True, metavar="CSV", help="labels.csv with columns name,count")
    repcount.add_argument("--window", type=int, default=90, help="poses per window (default 90)")
    repcount.add_argument("--stride", type=int, default=90, help="poses between window starts (default 90)")
    repcount.add_argument("--json", metavar="OUT", help="also write {mae, obo, videos: [{name, gt, pred}]} to OUT")
    repcount.set_defaults(run=_run_bench_repcount)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _quiet_native_logging()
    return args.run(args)


def _run_count(args: argparse.Namespace) -> int:
    from .count import count_sources

    return count_sources(args)


def _run_bench_repcount(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from pipelines.errors import InputError
    from pipelines.repcount import read_labels, score

    try:
        sequences = read_labels(args.poses, args.labels)
    except InputError as e:
        print(f"cadence bench repcount: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with tqdm(total=len(sequences), unit="video", leave=False, file=sys.stderr, disable=None) as bar:
        result = score(sequences, args.window, args.stride, progress=lambda _: bar.update(1))
    for v in result.videos:
        print(f"{v['name']:>16}  gt {v['gt']:6.1f}  pred {v['pred']:7.2f}")
    print(f"window {args.window} stride {args.stride}: MAE {result.mae:.3f}  OBO {result.obo:.3f}  "
          f"({len(result.videos)} videos, {result.poses_per_second:,.0f} poses/s counted)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
