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
        description="Temporal machine learning on streams: count exercise repetitions in videos and camera feeds, "
                    "extract audio features of large corpora and train classifiers on them.",
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

    features = commands.add_parser(
        "features", help="extract audio features of a corpus into a Parquet feature store, incrementally",
        description="Extract AudioFeaturePrint features of every file in MANIFEST into the store at DIR, on Ray "
                    "(all cores of this machine, or the cluster at --address). Files whose content is already "
                    "in the store are skipped, so a re-run extracts only new files; bad files are listed in "
                    "the store's errors table and never stop the job.",
        epilog="MANIFEST is a CSV file with a header path,label[,split]; paths are relative to its folder, split "
               "defaults to train. Exit status: 0 when every file was extracted or skipped, 2 when some failed "
               "or the manifest is unusable, 130 on Ctrl-C (what was extracted is kept).")
    features.add_argument("manifest", metavar="MANIFEST.csv")
    features.add_argument("--store", required=True, metavar="DIR", help="the feature store's folder")
    features.add_argument("--window-duration", type=float, default=0.975,
                          help="seconds per feature window, 0.5..15 (default 0.975)")
    features.add_argument("--overlap-factor", type=float, default=0.5,
                          help="share of a window the next one overlaps, 0..<1 (default 0.5)")
    features.add_argument("--sample-rate", type=int, default=16000,
                          help="rate the audio is resampled to before features (default 16000; 8000 suits "
                               "telephone-band speech such as FSDD)")
    features.add_argument("--address", metavar="ADDR", default=None,
                          help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start Ray locally)")
    features.add_argument("--inline", action="store_true", help="extract in this process, without Ray")
    features.add_argument("--json", action="store_true",
                          help="print {extracted, skipped, failed, seconds, store} as JSON")
    features.set_defaults(run=_run_features)

    train = commands.add_parser(
        "train", help="train a classifier on a feature store (no re-extraction), with early stopping and checkpoints",
        description="Train a classifier on the clip rows of a feature store made by 'cadence features'. The MLP is "
                    "trained in minibatch loops over chunks streamed from the store (memory follows --chunk-size, "
                    "not the corpus), shuffled per epoch from --seed, validated every epoch on the 'val' split (or "
                    "every tenth train file), and stopped after --patience epochs without improvement, keeping "
                    "the best model. logreg is fitted in one go.")
    train.add_argument("--store", required=True, metavar="DIR", help="the feature store (or the folder holding it)")
    train.add_argument("--classifier", choices=("logreg", "mlp"), default="mlp", help="default mlp")
    train.add_argument("--l2", type=float, default=None, dest="l2_penalty",
                       help="L2 penalty (default 1.0 for logreg, 0.001 for mlp)")
    train.add_argument("--epochs", type=int, default=100, help="most epochs (default 100)")
    train.add_argument("--chunk-size", type=int, default=1024, help="rows read and updated at a time (default 1024)")
    train.add_argument("--patience", type=int, default=10, help="epochs without improvement before stopping (10)")
    train.add_argument("--checkpoint-dir", metavar="D", help="write D/checkpoint.npz (atomically)")
    train.add_argument("--checkpoint-every", type=int, default=1, metavar="E", help="epochs between checkpoints (1)")
    train.add_argument("--resume", action="store_true", help="continue from D/checkpoint.npz")
    train.add_argument("--seed", type=int, default=0, help="seeds initial weights and every shuffle (default 0)")
    train.add_argument("--hidden", type=int, nargs="+", default=[100], metavar="N",
                       help="mlp: units per hidden layer (default 100; e.g. --hidden 256 or --hidden 128 64)")
    train.add_argument("--batch-size", type=int, default=32, help="mlp: rows per gradient step (default 32)")
    train.add_argument("--learning-rate", type=float, default=0.001, help="mlp: Adam's step size (default 0.001)")
    train.add_argument("--model", default="model.npz", metavar="OUT",
                       help="where to write the model (default model.npz); the curve goes to OUT-curve.png")
    train.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser("evaluate", help="accuracy and per-class figures of a model on a store's split",
                                   description="Print accuracy and per-class precision/recall/F1 of MODEL on one "
                                               "split of a feature store, and write a confusion-matrix PNG.")
    evaluate.add_argument("--model", required=True, metavar="M")
    evaluate.add_argument("--store", required=True, metavar="DIR")
    evaluate.add_argument("--split", default="test", help="default test")
    evaluate.add_argument("--confusion", metavar="PNG", help="default: M-confusion-SPLIT.png")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser("predict", help="label audio files with a trained model",
                                  description="Print the label and its probability for each audio file, "
                                              "extracting features with the model's own extractor.")
    predict.add_argument("--model", required=True, metavar="M")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--json", action="store_true", help="one JSON object per file")
    predict.set_defaults(run=_run_predict)

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

    pipeline = benches.add_parser(
        "pipeline", help="frames per second of the inline path and the Ray actor pipeline on the same frames",
        description="Play real clips (each feed its own, looped to --seconds) through the inline path (one feed "
                    "after another in one process) and then through the actor pipeline (all feeds at once), "
                    "and print frames per second of each, their ratio and peak memory; with --live, the "
                    "capture-to-count latency p50/p95 of the paced feeds.")
    pipeline.add_argument("--feeds", type=int, default=1, help="feeds at once (default 1)")
    pipeline.add_argument("--seconds", type=float, default=60, help="seconds of video per feed (default 60)")
    pipeline.add_argument("--live", action="store_true", help="pace the feeds at their frame rate, as cameras")
    pipeline.add_argument("--window", type=int, default=90, help="poses per window (default 90)")
    pipeline.add_argument("--stride", type=int, default=None, help="default: the window, or 15 with --live")
    pipeline.add_argument("--skip-inline", action="store_true", help="run the actor pipeline only")
    _add_bench_options(pipeline, "videos/")
    pipeline.set_defaults(run=_run_bench_pipeline)

    bench_features = benches.add_parser(
        "features", help="audio seconds per second of feature extraction: one process, librosa, Ray, incremental",
        description="Tile FSDD (gain and time-shift variations) into a temporary corpus of --hours, then print "
                    "audio seconds per second (x real time) of AudioFeaturePrint in one process and of librosa's "
                    "MFCC on the same files (if librosa is installed: pip install '.[bench]'), of the Ray job on "
                    "90% of the corpus, and the time of an incremental re-run after the last 10% is added.")
    bench_features.add_argument("--hours", type=float, default=10, help="corpus length (default 10)")
    bench_features.add_argument("--sample-rate", type=int, default=8000, help="feature sample rate (default 8000, "
                                                                              "FSDD's own)")
    bench_features.add_argument("--work", metavar="DIR", default=None, help="where to write the corpus and store "
                                                                            "(default: a temporary folder, removed)")
    _add_bench_options(bench_features, "fsdd/")
    bench_features.set_defaults(run=_run_bench_features)
    return parser


def _add_bench_options(parser: argparse.ArgumentParser, holding: str) -> None:
    parser.add_argument("--data", metavar="DIR", default=None,
                        help=f"the data folder with {holding} (default: ../shared/data beside the project)")
    parser.add_argument("--address", metavar="ADDR", default=None, help="a Ray cluster to run on")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _quiet_native_logging()
    return args.run(args)


def _run_count(args: argparse.Namespace) -> int:
    from .count import count_sources

    return count_sources(args)


def _run_features(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from tqdm import tqdm

    from pipelines.audio import AudioFeaturePrint
    from pipelines.errors import InputError

    from .connect import connected
    from .features import extract_corpus, read_manifest

    extractor = AudioFeaturePrint(window_duration=args.window_duration, overlap_factor=args.overlap_factor,
                                  sample_rate=args.sample_rate)
    try:
        extractor.session()  # checks the parameters
        rows = read_manifest(args.manifest)
    except (InputError, ValueError) as e:
        print(f"cadence features: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    where = contextlib.nullcontext() if args.inline else connected(args.address)
    with where, tqdm(total=len(rows), unit="file", file=sys.stderr, disable=None, desc="features") as bar:
        try:
            summary = extract_corpus(rows, args.store, extractor, use_ray=not args.inline,
                                     progress=bar.update)
        except KeyboardInterrupt:
            print("cadence features: interrupted; every file extracted so far is kept, run again to finish",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(f"{summary.extracted} extracted, {summary.skipped} skipped (already in the store), "
              f"{summary.failed} failed, in {summary.seconds:.1f} s -> {summary.store}")
    if summary.failed:
        print(f"cadence features: {summary.failed} file(s) failed; see the errors table in {summary.store}",
              file=sys.stderr)
    return EXIT_BAD_INPUT if summary.failed else 0


def _run_train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipelines.errors import InputError

    from .train import TrainSettings, open_store, plot_curve, save_model, train

    settings = TrainSettings(classifier=args.classifier, l2_penalty=args.l2_penalty, epochs=args.epochs,
                             chunk_size=args.chunk_size, patience=args.patience, checkpoint_dir=args.checkpoint_dir,
                             checkpoint_every=args.checkpoint_every, resume=args.resume, seed=args.seed,
                             hidden_unit_counts=tuple(args.hidden), batch_size=args.batch_size,
                             learning_rate=args.learning_rate)
    if min(args.epochs, args.chunk_size, args.patience, args.checkpoint_every, args.batch_size, *args.hidden) < 1:
        print("cadence train: --epochs, --chunk-size, --patience, --checkpoint-every, --batch-size and --hidden "
              "must be >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.learning_rate <= 0:
        print("cadence train: --learning-rate must be > 0", file=sys.stderr)
        return EXIT_BAD_INPUT

    def on_epoch(event) -> None:
        m = event.metrics
        print(f"epoch {event.item_count:3d}/{event.total_item_count}: loss {m['loss']:.4f}  "
              f"validation accuracy {m['validation_accuracy']:.4f}  ({m['seconds']:.1f} s)", file=sys.stderr, flush=True)

    try:
        store = open_store(args.store)
        result = train(store, settings, on_epoch)
    except (InputError, ValueError) as e:
        print(f"cadence train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cadence train: interrupted" + (f"; --resume continues from {args.checkpoint_dir}"
                                              if args.checkpoint_dir else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    path = save_model(args.model, result, store, settings)
    if result.history:
        plot_curve(result.history, Path(path).with_name(Path(path).stem + "-curve.png"))
    metrics = result.metrics() | {"model": str(path)}
    if args.json:
        print(json.dumps(metrics))
    else:
        test = f", test accuracy {metrics['test_accuracy']:.4f}" if metrics["test_accuracy"] is not None else ""
        print(f"{metrics['classifier']}: best epoch {metrics['best_epoch']} of {metrics['epochs']}, validation "
              f"accuracy {metrics['validation_accuracy']:.4f}{test} -> {path}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipelines.errors import InputError

    from .train import evaluate, load_model, open_store, plot_confusion

    try:
        model, _, extra = load_model(args.model)
        report = evaluate(model, open_store(args.store), args.split, extra.get("level", "clip"))
    except (InputError, ValueError) as e:
        print(f"cadence evaluate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    picture = args.confusion or str(Path(args.model).with_name(f"{Path(args.model).stem}-confusion-{args.split}.png"))
    plot_confusion(report, model.classes, picture)
    if args.json:
        print(json.dumps(report | {"confusion_png": picture}))
        return 0
    print(f"{args.split}: accuracy {report['accuracy']:.4f} over {report['rows']} files")
    print(f"{'label':>12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for label, c in report["classes"].items():
        print(f"{label:>12} {c['precision']:9.3f} {c['recall']:7.3f} {c['f1']:7.3f} {c['support']:8d}")
    print(f"confusion matrix: {picture}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    import json

    from pipelines.errors import InputError

    from .train import load_model, predict_files

    try:
        model, extractor, _ = load_model(args.model)
    except InputError as e:
        print(f"cadence predict: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    def show(path: str, result) -> None:
        if isinstance(result, Exception):
            print(f"cadence predict: error: {result}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": str(result)}))
        elif args.json:
            print(json.dumps({"file": path, "label": result.label, "probability": round(result.probability, 4)}))
        else:
            print(f"{path}: {result.label} ({result.probability:.3f})")

    return EXIT_BAD_INPUT if predict_files(model, extractor, args.files, show) else 0


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


def _data_folder(args: argparse.Namespace):
    """--data, or the shared data folder beside the project."""
    from pathlib import Path

    return Path(args.data) if args.data else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _run_bench_pipeline(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .benchmarks import playlists, run_actors, run_inline

    data = _data_folder(args)
    stride = args.stride or (15 if args.live else args.window)
    try:
        feeds = playlists(data, args.feeds, args.seconds)
    except FileNotFoundError as e:
        print(f"cadence bench pipeline: error: {e} (give --data DIR)", file=sys.stderr)
        return EXIT_BAD_INPUT
    figures: dict = {"feeds": args.feeds, "seconds_per_feed": args.seconds, "live": args.live,
                     "window": args.window, "stride": stride}
    if not args.skip_inline and not args.live:
        figures["inline"] = run_inline(feeds, args.window, stride)
        print(f"inline: {figures['inline']}", flush=True)
    figures["actors"] = run_actors(feeds, args.window, stride, args.live, args.address)
    print(f"actors: {figures['actors']}")
    if "inline" in figures:
        figures["ratio"] = round(figures["actors"]["frames_per_second"] / figures["inline"]["frames_per_second"], 2)
        print(f"actors / inline: {figures['ratio']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


def _run_bench_features(args: argparse.Namespace) -> int:
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from .benchmarks import bench_features

    data = _data_folder(args)
    if not (data / "fsdd" / "recordings").is_dir():
        print(f"cadence bench features: error: {data / 'fsdd' / 'recordings'} not found (give --data DIR)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cadence-bench-"))
    try:
        figures = bench_features(data, args.hours, args.sample_rate, args.address, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
