"""The ``cadence`` command line: a thin layer over the library.

Options take their defaults from the library's own settings (:class:`RepetitionCounting`,
:class:`AudioFeaturePrint`, :class:`TrainSettings`), so the two never disagree, and :func:`main`
reports what every command may meet the same way: a bad input is named with what to do and exits
2, Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cadence.pipelines.audio import AudioFeaturePrint
from cadence.pipelines.errors import CadenceError, InputError
from cadence.pipelines.files import check_folder_exists
from cadence.pipelines.pose import JOINT_GROUPS, STRATEGIES, joint_names
from cadence.pipelines.repetitions import STRIDE, RepetitionCounting

from cadence.cluster.audio.train import TrainSettings

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def default(owner: type, name: str) -> Any:
    """The default of a dataclass field or a constructor parameter."""
    if dataclasses.is_dataclass(owner):
        found = {f.name: f for f in dataclasses.fields(owner)}[name]
        return found.default_factory() if found.default is dataclasses.MISSING else found.default
    return inspect.signature(owner).parameters[name].default


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def _joints(text: str) -> tuple[str, ...]:
    try:
        return joint_names(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


def _add_windows(parser: argparse.ArgumentParser, stride_default: str) -> None:
    parser.add_argument("--window", type=positive, default=default(RepetitionCounting, "window"),
                        help="poses per counting window (default %(default)s)")
    parser.add_argument("--stride", type=positive, default=None,
                        help=f"poses between window starts (default: {stride_default})")


# -- cadence count --------------------------------------------------------------------------------
def _add_count(commands: argparse._SubParsersAction) -> None:
    count = commands.add_parser(
        "count", help="count exercise repetitions in videos or live feeds",
        description="Count repetitions of the selected person in each video: poses (MediaPipe) -> one person "
                    "-> sliding windows -> a class-agnostic counter. Prints the running cumulative count.",
        epilog="Exit status: 0 when every source was counted, 2 when any source could not be read "
               "(the others are still counted), 130 on Ctrl-C (the counts so far are printed).")
    count.add_argument("sources", nargs="*", metavar="VIDEO",
                       help="video files; with --live also camera indexes (0) or stream URLs")
    count.add_argument("--feeds", metavar="FILE",
                       help="a text file with one source per line (relative paths from the file's folder), each "
                            "optionally followed by label:KEY=VALUE words: the feed then runs on a Ray node started "
                            "with those labels (ray start --labels KEY=VALUE), e.g. a camera one site reaches")
    _add_windows(count, f"{STRIDE}, or the window if shorter")
    count.add_argument("--strategy", choices=STRATEGIES, default=default(RepetitionCounting, "strategy"),
                       help="which person to follow when several are in view (default %(default)s)")
    joints = count.add_mutually_exclusive_group()
    joints.add_argument("--joints", metavar="LIST", type=_joints,
                        help="count on these joints only: names or groups, comma-separated (groups: "
                             f"{', '.join(JOINT_GROUPS)}; e.g. --joints arms for front raises)")
    joints.add_argument("--ignore-joints", metavar="LIST", type=_joints,
                        help="leave these joints out of the count (e.g. --ignore-joints face)")
    count.add_argument("--per-person", action="store_true",
                       help="also track everyone in view and count each person on their own (a group workout); "
                            "the --strategy person's count stays the headline")
    _add_detect_every(count)
    count.add_argument("--live", action="store_true",
                       help="read cameras or stream URLs (or files paced at their frame rate) as they come; "
                            "frames the counter cannot keep up with are dropped and reported")
    count.add_argument("--annotate", metavar="OUT.mp4",
                       help="write the video with the selected skeleton and the running count drawn on it "
                            "(with several videos, one file each: OUT-NAME.mp4)")
    count.add_argument("--json", action="store_true",
                       help="print one JSON object per source at the end instead of the running counts "
                            "(with its counted repetitions: index, start and end frame and time, duration, "
                            "confidence)")
    count.add_argument("--out", metavar="FILE.parquet",
                       help="write every count update (feed, frame_index, timestamp, count, people) as a Parquet table, "
                            "and every counted repetition to FILE-repetitions.parquet beside it (rows are kept "
                            "in FILE.parquet.parts/ as they come, readable even after a kill, and joined at the end)")
    count.add_argument("--runner", choices=("ray", "inline"), default=None,
                       help="ray (default): every feed at once through Ray actors with bounded queues, each feed "
                            "read, posed and counted on one node of the cluster (the one with the most pose "
                            "capacity left), so its frames never cross the network; a node lost hands its feeds to "
                            "the others, files resuming exactly; "
                            "inline: one source after another in this process (the default with --annotate)")
    _add_address(count)
    count.add_argument("--pose-actors", type=positive, default=None, metavar="N",
                       help="pose extraction actors on each node, shared by its feeds (default: one per CPU of "
                            "the node)")
    count.set_defaults(run=_run_count)


def _add_detect_every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detect-every", type=positive, default=default(RepetitionCounting, "detection_interval"),
                        metavar="K", dest="detection_interval",
                        help="run the person detector on the first frame of every K and track the people found "
                             "in between, so a new person is found within K frames (default %(default)s; "
                             "1: the detector on every frame, about 1.4x slower on one person)")


def _run_count(args: argparse.Namespace) -> int:
    from cadence.cluster.counting.count import count_sources

    return 0 if count_sources(args) else EXIT_BAD_INPUT


# -- cadence serve --------------------------------------------------------------------------------
def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="a long-running counting service for many cameras, with an HTTP API and a live page",
        description="Count repetitions on feeds added and removed over HTTP while it runs (cameras, stream "
                    "URLs, files), on the same Ray actor pipeline as `cadence count`. Live sources that drop "
                    "are reopened with backoff; every count goes to a store, and a restart on the same store "
                    "brings back the feeds that were running. Open http://HOST:PORT/ for the live page and "
                    "/docs for the API.",
        epilog="Example: cadence serve --store counts/ & then curl -X POST localhost:8000/feeds "
               "-H 'Content-Type: application/json' -d '{\"source\": \"rtsp://camera/stream\"}'")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default %(default)s; any other needs a token)")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--store", metavar="DIR", default="cadence-serve",
                       help="folder of the store (counts.sqlite; created if missing; default %(default)s)")
    serve.add_argument("--token", default=os.environ.get("CADENCE_TOKEN"),
                       help="require this token on every request (default: $CADENCE_TOKEN)")
    _add_address(serve)
    serve.add_argument("--pose-actors", type=positive, default=None, metavar="N",
                       help="pose extraction actors on each node, shared by its feeds (default: one per CPU of "
                            "the node)")
    serve.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from cadence.cluster.serve.app import serve

    serve(args.host, args.port, args.store, args.address, args.token, args.pose_actors)
    return 0


# -- cadence features -----------------------------------------------------------------------------
def _add_features(commands: argparse._SubParsersAction) -> None:
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
    features.add_argument("--window-duration", type=float, default=default(AudioFeaturePrint, "window_duration"),
                          help="seconds per feature window, 0.5..15 (default %(default)s)")
    features.add_argument("--overlap-factor", type=float, default=default(AudioFeaturePrint, "overlap_factor"),
                          help="share of a window the next one overlaps, 0..<1 (default %(default)s)")
    features.add_argument("--sample-rate", type=int, default=None,
                          help="rate the audio is resampled to before features (default: the files' own rate, "
                               f"at most {default(AudioFeaturePrint, 'sample_rate')}; or the rate of the store "
                               "already in --store, so a re-run adds to it)")
    _add_address(features)
    features.add_argument("--inline", action="store_true", help="extract in this process, without Ray")
    features.add_argument("--json", action="store_true",
                          help="print {extracted, skipped, failed, seconds, store} as JSON")
    features.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> int:
    import contextlib

    from tqdm import tqdm

    from cadence.cluster.audio.features import FeatureStore, default_sample_rate, extract_corpus, read_manifest

    rows = read_manifest(args.manifest)
    rate = args.sample_rate
    if rate is None:
        rate, why = default_sample_rate(rows, args.store, args.window_duration, args.overlap_factor)
        print(f"cadence features: features at {rate} Hz, {why}; --sample-rate chooses another", file=sys.stderr)
    extractor = AudioFeaturePrint(window_duration=args.window_duration, overlap_factor=args.overlap_factor,
                                  sample_rate=rate)
    extractor.session()  # checks the parameters
    if args.inline:
        where = contextlib.nullcontext()
    else:
        from cadence.cluster.runtime.connect import connected

        where = connected(args.address)
    with where, tqdm(total=len(rows), unit="file", file=sys.stderr, disable=None, desc="features") as bar:
        try:
            started = time.time()
            summary = extract_corpus(rows, args.store, extractor, use_ray=not args.inline, progress=bar.update)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("every file extracted so far is kept, run again to finish") from None
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(f"{summary.extracted} extracted, {summary.skipped} skipped (already in the store), "
              f"{summary.failed} failed, in {summary.seconds:.1f} s -> {summary.store}")
    if summary.failed:
        _show_failures(FeatureStore(args.store, extractor), summary, started)
    return EXIT_BAD_INPUT if summary.failed else 0


def _show_failures(store, summary, since: float, shown: int = 20) -> None:
    """Each file that failed in this run, with its reason (the first ``shown``), then where they all are."""
    import pyarrow.compute as pc

    errors = store.errors()
    recent = errors.filter(pc.greater_equal(errors.column("time").cast("int64"), int(since))).to_pylist()
    for error in recent[:shown]:
        print(f"cadence features: {error['error']}", file=sys.stderr)
    more = f" ({len(recent) - shown} more)" if len(recent) > shown else ""
    print(f"cadence features: {summary.failed} file(s) failed{more}; every one is in the errors table of "
          f"{summary.store}", file=sys.stderr)


# -- cadence train, evaluate, predict -------------------------------------------------------------
def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train a classifier on a feature store (no re-extraction), with early stopping and checkpoints",
        description="Train a classifier on the clip rows of a feature store made by 'cadence features'. The MLP is "
                    "trained in minibatch loops over chunks streamed from the store (memory follows --chunk-size, "
                    "not the corpus), shuffled per epoch from --seed, validated every epoch on the 'val' split (or "
                    "every tenth train file), and stopped after --patience epochs without improvement, keeping "
                    "the best model. logreg is fitted in one go.")
    t = lambda name: default(TrainSettings, name)  # noqa: E731
    _add_store_and_classifier(train)
    train.add_argument("--l2", type=float, default=None, dest="l2_penalty",
                       help="L2 penalty per example (default: logreg chooses it on the validation rows, the "
                            "strongest within one standard error of the best, and says which; mlp takes 0.001)")
    train.add_argument("--epochs", type=positive, default=t("epochs"), help="most epochs (default %(default)s)")
    train.add_argument("--chunk-size", type=positive, default=t("chunk_size"),
                       help="rows read and updated at a time (default %(default)s)")
    train.add_argument("--patience", type=positive, default=t("patience"),
                       help="epochs without improvement before stopping (default %(default)s)")
    train.add_argument("--checkpoint-dir", metavar="D", help="write D/checkpoint.safetensors (atomically)")
    train.add_argument("--checkpoint-every", type=positive, default=t("checkpoint_every"), metavar="E",
                       help="epochs between checkpoints (default %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from D/checkpoint.safetensors")
    train.add_argument("--seed", type=int, default=t("seed"),
                       help="seeds initial weights and every shuffle (default %(default)s)")
    train.add_argument("--hidden", type=positive, nargs="+", default=list(t("hidden_unit_counts")), metavar="N",
                       help="mlp: units per hidden layer (default %(default)s; e.g. --hidden 256 or --hidden 128 64)")
    train.add_argument("--batch-size", type=positive, default=t("batch_size"),
                       help="mlp: rows per gradient step (default %(default)s)")
    train.add_argument("--learning-rate", type=float, default=t("learning_rate"),
                       help="mlp: Adam's step size (default %(default)s)")
    train.add_argument("--dropout", type=float, default=t("dropout_probability"), dest="dropout_probability",
                       help="mlp: share of hidden units dropped at each training step, 0..<1 (default %(default)s)")
    train.add_argument("--tolerance", type=float, default=t("early_stopping_tolerance"),
                       dest="early_stopping_tolerance",
                       help="mlp: how much an epoch must lower the best validation loss to count as better "
                            "(default %(default)s)")
    train.add_argument("--model", default="model.safetensors", metavar="OUT",
                       help="where to write the model, exactly this file, in safetensors with the extractor's "
                            "parameters and the labels as metadata (default %(default)s); the curve goes to "
                            "OUT-curve.png")
    train.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    train.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import open_store, plot_curve, save_model, train

    if args.learning_rate <= 0:
        raise InputError("--learning-rate", "must be > 0")
    if not 0 <= args.dropout_probability < 1:
        raise InputError("--dropout", "must be at least 0 and below 1")
    if args.l2_penalty is not None and args.l2_penalty <= 0:
        raise InputError("--l2", "must be > 0")
    check_folder_exists(args.model, "--model")
    settings = TrainSettings(classifier=args.classifier, l2_penalty=args.l2_penalty, epochs=args.epochs,
                             chunk_size=args.chunk_size, patience=args.patience, checkpoint_dir=args.checkpoint_dir,
                             checkpoint_every=args.checkpoint_every, resume=args.resume, seed=args.seed,
                             hidden_unit_counts=tuple(args.hidden), batch_size=args.batch_size,
                             learning_rate=args.learning_rate, dropout_probability=args.dropout_probability,
                             early_stopping_tolerance=args.early_stopping_tolerance)

    def on_epoch(event) -> None:
        m = event.metrics
        accuracy = "n/a" if m["validation_accuracy"] is None else f"{m['validation_accuracy']:.4f}"
        loss = "n/a" if m.get("validation_loss") is None else f"{m['validation_loss']:.4f}"
        print(f"epoch {event.item_count:3d}/{event.total_item_count}: loss {m['loss']:.4f}  "
              f"validation loss {loss}  validation accuracy {accuracy}  ({m['seconds']:.1f} s)", file=sys.stderr,
              flush=True)

    store = open_store(args.store)
    try:
        result = train(store, settings, on_epoch)
    except KeyboardInterrupt:
        hint = f"--resume continues from {args.checkpoint_dir}" if args.checkpoint_dir else ""
        raise KeyboardInterrupt(*([hint] if hint else [])) from None
    path = save_model(args.model, result, store, settings)
    chosen = result.model.params.get("l2_validation_accuracy")
    if chosen:
        print(f"l2 penalty {result.model.params['chosen_l2_penalty']} chosen on the validation rows (the strongest "
              f"within one standard error of the best; accuracy by l2: "
              f"{', '.join(f'{k} {v:.3f}' for k, v in chosen.items())})", file=sys.stderr)
    if result.history:
        plot_curve(result.history, Path(path).with_name(Path(path).stem + "-curve.png"))
    metrics = result.metrics() | {"model": str(path)}
    if args.json:
        print(json.dumps(metrics))
    else:
        shown = {k: "n/a" if metrics[k] is None else f"{metrics[k]:.4f}" for k in ("validation_accuracy", "test_accuracy")}
        print(f"{metrics['classifier']}: best epoch {metrics['best_epoch']} of {metrics['epochs']}, validation "
              f"accuracy {shown['validation_accuracy']}, test accuracy {shown['test_accuracy']} -> {path}")
    return 0


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="accuracy and per-class figures of a model on a store's split",
                                   description="Print accuracy and per-class precision/recall/F1 of MODEL on one "
                                               "split of a feature store, and write a confusion-matrix PNG.")
    evaluate.add_argument("--model", required=True, metavar="M")
    evaluate.add_argument("--store", required=True, metavar="DIR")
    evaluate.add_argument("--split", default="test", help="default %(default)s")
    evaluate.add_argument("--confusion", metavar="PNG", help="default: M-confusion-SPLIT.png")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import evaluate, load_model, open_store, plot_confusion

    model, extractor, extra = load_model(args.model)
    report = evaluate(model, open_store(args.store), args.split, extra.get("level", "clip"), extractor=extractor)
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


def _add_predict(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="label audio files with a trained model",
                                  description="Print the label and its probability for each audio file, "
                                              "extracting features with the model's own extractor.")
    predict.add_argument("--model", required=True, metavar="M")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--json", action="store_true", help="one JSON object per file")
    predict.add_argument("--windows", action="store_true",
                         help="also label each window on its own (window_duration long, overlapping as the "
                              "extractor's overlap_factor says), with its start and end time and probabilities")
    predict.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import load_model, predict_files

    model, extractor, _ = load_model(args.model)

    def show(path: str, result) -> None:
        if isinstance(result, Exception):
            print(f"cadence predict: error: {result}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": str(result)}))
            return
        if args.json:
            print(json.dumps(result.summary(path)))
            return
        print(f"{path}: {result.classification.label} ({result.classification.probability:.3f})")
        for w in result.windows:
            print(f"  {w.start_time:7.3f}-{w.end_time:7.3f} s: {w.classification.label} "
                  f"({w.classification.probability:.3f})")

    return EXIT_BAD_INPUT if predict_files(model, extractor, args.files, show, args.windows) else 0


def _add_tune(commands: argparse._SubParsersAction) -> None:
    from cadence.cluster.audio.tune import DEFAULT_GRIDS

    tune = commands.add_parser(
        "tune", help="search classifier settings as parallel Ray Tune trials on a feature store (no re-extraction)",
        description="Train one classifier per combination of the settings given, as Ray Tune trials on the "
                    "features already in the store (one CPU each, in parallel on every core of the local Ray or "
                    "of the cluster at --address, whose nodes must see the store at the same path), then write "
                    "the best (highest validation accuracy, then lowest validation loss) to --model and print a "
                    "table of every trial. Each trial is exactly a 'cadence train' with its settings. Default "
                    f"grids: logreg {DEFAULT_GRIDS['logreg']}; mlp {DEFAULT_GRIDS['mlp']}.")
    t = lambda name: default(TrainSettings, name)  # noqa: E731
    _add_store_and_classifier(tune)
    tune.add_argument("--l2", type=float, nargs="+", metavar="X", dest="l2_penalty",
                      help="L2 penalties per example to try")
    tune.add_argument("--hidden", type=_widths, nargs="+", metavar="N[xN...]", dest="hidden_unit_counts",
                      help="mlp: networks to try, each its units per hidden layer (e.g. --hidden 100 256 128x64)")
    tune.add_argument("--learning-rate", type=float, nargs="+", metavar="X", dest="learning_rate",
                      help="mlp: Adam step sizes to try")
    tune.add_argument("--dropout", type=float, nargs="+", metavar="P", dest="dropout_probability",
                      help="mlp: dropout probabilities to try")
    tune.add_argument("--epochs", type=positive, default=t("epochs"),
                      help="most epochs per trial (default %(default)s)")
    tune.add_argument("--patience", type=positive, default=t("patience"),
                      help="epochs without improvement before a trial stops (default %(default)s)")
    tune.add_argument("--seed", type=int, default=t("seed"), help="default %(default)s")
    tune.add_argument("--model", default="best.safetensors", metavar="OUT",
                      help="where the best trial's model goes (default %(default)s)")
    _add_address(tune)
    tune.add_argument("--json", action="store_true", help="print the trials and the best as JSON")
    tune.set_defaults(run=_run_tune)


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network: give units per layer, as 100 or 128x64") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every layer needs at least one unit")
    return widths


def _run_tune(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.audio.tune import trial_table, tune

    given = {k: getattr(args, k) for k in ("l2_penalty", "hidden_unit_counts", "learning_rate", "dropout_probability")}
    if args.classifier == "logreg" and any(given[k] for k in ("hidden_unit_counts", "learning_rate",
                                                              "dropout_probability")):
        raise InputError("--hidden/--learning-rate/--dropout", "apply to the mlp only",
                         "drop them, or --classifier mlp")
    base = TrainSettings(classifier=args.classifier, epochs=args.epochs, patience=args.patience, seed=args.seed)

    def on_trial(trial) -> None:
        shown = "failed" if trial.error else f"validation accuracy {trial.validation_accuracy:.4f}"
        print(f"trial {trial.settings}: {shown}", file=sys.stderr, flush=True)

    check_folder_exists(args.model, "--model")
    with connected(args.address) as cluster:
        print(f"cadence tune: trials on {cluster['cpus']} CPUs ({cluster['address']})", file=sys.stderr)
        result = tune(args.store, base, given, args.model, on_trial)
    if args.json:
        shown = lambda trial: {k: v for k, v in asdict(trial).items() if k != "model"}  # noqa: E731 (trial files are gone)
        print(json.dumps({"best": shown(result.best), "model": result.model, "seconds": round(result.seconds, 2),
                          "cpus": result.cpus, "trials": [shown(t) for t in result.trials]}, default=list))
        return 0
    print(trial_table(result))
    print(f"best: {result.best.settings}, validation accuracy {result.best.validation_accuracy:.4f} -> {result.model} "
          f"({len(result.trials)} trials in {result.seconds:.1f} s on {result.cpus} CPUs)")
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    from cadence.pipelines.export import FORMATS

    export = commands.add_parser(
        "export", help="write a trained model as ONNX (or Core ML) for use outside cadence",
        description="Write the classifier of a model file, its standardisation included, as an ONNX graph "
                    "(input 'features': AudioFeaturePrint clip vectors, N x D float32; outputs 'probabilities', "
                    "'class_index', 'label'), or as a Core ML classifier where coremltools is installed. The "
                    "extractor's parameters and the classes travel in the file's metadata ('cadence', JSON).")
    export.add_argument("--model", required=True, metavar="M", help="a model file from cadence train or tune")
    export.add_argument("--format", choices=FORMATS, default="onnx", help="default %(default)s")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write (exactly this path)")
    export.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from cadence.pipelines.export import export

    from cadence.cluster.audio.train import load_model

    check_folder_exists(args.out, "--out")
    model, extractor, extra = load_model(args.model)
    path = export(model, args.out, args.format,
                  {"extractor": extractor.identity(), "level": extra.get("level", "clip")})
    print(f"{args.format}: {model.kind} of {len(model.classes)} classes ({', '.join(model.classes[:10])}"
          f"{', ...' if len(model.classes) > 10 else ''}) on {len(model.mean)} features of {extractor!r} -> {path}")
    return 0


# -- cadence bench --------------------------------------------------------------------------------
def _add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks that print figures",
                                description="Benchmarks that print figures (nothing is asserted).")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    repcount = benches.add_parser(
        "repcount", help="score the repetition counter on RepCount-format pose sequences",
        description="Run HumanBodyActionCounter as a stream (the same sliding windows and cumulative counts as "
                    "'cadence count') over every pose sequence listed in LABELS, and print MAE, OBO and the "
                    "per-video predictions. MAE = mean(|pred - gt| / max(gt, 1)); OBO = share with "
                    "|round(pred) - gt| <= 1; per-cycle MAE (with a cycle_boundaries column): at the end of each "
                    "labelled repetition, the repetitions counted by then against its number, divided as MAE; and "
                    "how many counts ever went down (none should).")
    repcount.add_argument("--poses", required=True, metavar="DIR", help="folder of NAME.npy arrays (T, 104)")
    repcount.add_argument("--labels", required=True, metavar="CSV",
                          help="labels.csv with columns name,count[,cycle_boundaries]")
    _add_windows(repcount, f"{STRIDE}, as cadence count; 90 for the benchmark's usual setting")
    repcount.add_argument("--json", metavar="OUT", help="also write {mae, obo, videos: [{name, gt, pred}]} to OUT")
    repcount.set_defaults(run=_run_bench_repcount)

    pipeline = benches.add_parser(
        "pipeline", help="frames per second of the inline path and the Ray actor pipeline on the same frames",
        description="Play real clips (each feed all of them back to back, from another one on, for --seconds) "
                    "through the inline path (one feed after another in one process) and then through the actor "
                    "pipeline (all feeds at once), "
                    "and print frames per second of each, their ratio and peak memory; with --live, the "
                    "capture-to-count latency p50/p95 of the paced feeds.")
    _add_playlists(pipeline, feeds=1, seconds=60)
    pipeline.add_argument("--live", action="store_true", help="pace the feeds at their frame rate, as cameras")
    _add_windows(pipeline, f"{STRIDE}, or the window if shorter")
    pipeline.add_argument("--skip-inline", action="store_true", help="run the actor pipeline only")
    pipeline.add_argument("--compare-driver", action="store_true",
                          help="also run the node pipeline driven from this process (the design before feeds "
                               "lived on nodes: no node actor between), on the same feeds, and print both")
    _add_detect_every(pipeline)
    _add_bench_options(pipeline, "videos/")
    pipeline.set_defaults(run=_run_bench_pipeline)

    chaos = benches.add_parser(
        "chaos", help="the actor pipeline while random actors are killed: every count must equal the inline one",
        description="Play real clips through the actor pipeline on --feeds feeds while a random actor of any stage "
                    "(capture, pose extraction, counting) is killed every --every seconds (Ray restarts it and the "
                    "pipeline recovers its feeds), then count each feed inline, and print the kills by stage and "
                    "whether every feed's final count equals the inline one exactly. Exit status 1 if one does not.")
    _add_playlists(chaos, feeds=8, seconds=15)
    chaos.add_argument("--every", type=float, default=2.0, help="seconds between kills (default %(default)s)")
    chaos.add_argument("--seed", type=int, default=0, help="which actors are killed (default %(default)s)")
    _add_windows(chaos, "the window")
    _add_bench_options(chaos, "videos/")
    chaos.set_defaults(run=_run_bench_chaos)

    cluster = benches.add_parser(
        "cluster", help="the counting job on a real multi-node Ray on this machine: placement, locality, node loss",
        description="Count --feeds playlists of real clips inline (the expected counts), then on a Ray of --nodes "
                    "nodes started on this machine (ray.cluster_utils.Cluster: each node its own raylet, object "
                    "store and workers, all on loopback; the driver on the head node), optionally removing the "
                    "worker node with the most feeds --kill-node-after seconds in. Prints, and writes to --json: "
                    "each node's feeds and frames/s, cross_node_bytes_per_frame, counts_equal_inline and "
                    "recovery_seconds (from the kill until every moved feed reads frames on its new node). "
                    "cross_node_bytes_per_frame is measured: every report a node hands the driver from another "
                    "node, and every feed order the driver hands another node, pickled as Ray pickles it, its bytes "
                    "summed over the frames counted. foreign_batches counts the frame and pose batches that reached "
                    "an actor on another node than the one that made them (each stage stamps its batches with its "
                    "node and the next one checks): 0 means no frame left its node.")
    cluster.add_argument("--nodes", type=positive, default=3, help="default %(default)s")
    cluster.add_argument("--cpus-per-node", type=positive, default=1, help="default %(default)s")
    _add_playlists(cluster, feeds=6, seconds=20)
    cluster.add_argument("--kill-node-after", type=float, default=None, metavar="S",
                         help="remove the worker node with the most feeds S seconds into the run")
    _add_windows(cluster, f"{STRIDE}, or the window if shorter")
    cluster.add_argument("--data", metavar="DIR", default=os.environ.get("CADENCE_DATA"),
                         help="the data folder holding videos/ (default: $CADENCE_DATA)")
    cluster.add_argument("--json", metavar="OUT", help="also write the figures to OUT")
    cluster.set_defaults(run=_run_bench_cluster)

    serve = benches.add_parser(
        "serve", help="a soak of cadence serve: live loopback cameras for minutes; memory, stalls, drops, latency",
        description="Start cadence serve and --feeds stand-in cameras (real clips looped as MJPEG on loopback), add "
                    "the feeds one by one (timing each to its first count), then sample every 10 s for --minutes: "
                    "the memory (PSS) of the service and its Ray processes, and each feed's frames, drops, latency "
                    "p50/p95 and state. A feed stalls when it reads nothing between two samples while running.")
    serve.add_argument("--feeds", type=positive, default=4, help="live cameras at once (default %(default)s)")
    serve.add_argument("--minutes", type=float, default=10, help="default %(default)s")
    serve.add_argument("--work", metavar="DIR", default=None,
                       help="where the service's store goes (default: a temporary folder, removed)")
    _add_bench_options(serve, "videos/")
    serve.set_defaults(run=_run_bench_serve)

    tune = benches.add_parser(
        "tune", help="cadence tune's trials in parallel against the same trials one after another",
        description="Extract FSDD's standard split into a temporary store, run the default grid of --classifier "
                    "as Ray Tune trials (cadence tune), then the same trials one after another in this process, "
                    "and print both times, the speed-up and whether both found the same best model.")
    tune.add_argument("--classifier", choices=("logreg", "mlp"), default="mlp", help="default %(default)s")
    _add_bench_options(tune, "fsdd/recordings/")
    tune.set_defaults(run=_run_bench_tune)

    features = benches.add_parser(
        "features", help="audio seconds per second of feature extraction: one process, librosa, Ray, incremental",
        description="Tile FSDD (gain and time-shift variations) into a temporary corpus of --hours, then print "
                    "audio seconds per second (x real time) of AudioFeaturePrint in one process and of librosa's "
                    "MFCC on the same files (if librosa is installed: pip install '.[bench]'), of the Ray job on "
                    "90% of the corpus, and the time of an incremental re-run after the last 10% is added.")
    features.add_argument("--hours", type=float, default=10, help="corpus length (default %(default)s)")
    features.add_argument("--sample-rate", type=int, default=8000,
                          help="feature sample rate (default %(default)s, FSDD's own)")
    features.add_argument("--work", metavar="DIR", default=None,
                          help="where to write the corpus and store (default: a temporary folder, removed)")
    _add_bench_options(features, "fsdd/recordings/")
    features.set_defaults(run=_run_bench_features)


def _add_playlists(parser: argparse.ArgumentParser, feeds: int, seconds: float) -> None:
    """The benchmarks' feeds: each plays the shared clips back to back for so many seconds."""
    parser.add_argument("--feeds", type=positive, default=feeds, help="feeds at once (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=seconds,
                        help="seconds of video per feed (default %(default)s)")


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", metavar="ADDR", default=None,
                        help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start Ray locally)")


def _add_store_and_classifier(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="DIR", help="the feature store (or the folder holding it)")
    parser.add_argument("--classifier", choices=("logreg", "mlp"), default=default(TrainSettings, "classifier"),
                        help="default %(default)s")


def _add_bench_options(parser: argparse.ArgumentParser, holding: str) -> None:
    parser.add_argument("--data", metavar="DIR", default=os.environ.get("CADENCE_DATA"),
                        help=f"the data folder holding {holding} (default: $CADENCE_DATA)")
    parser.add_argument("--address", metavar="ADDR", default=None, help="a Ray cluster to run on")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")


def _data(args: argparse.Namespace, holding: str) -> Path:
    """--data (or $CADENCE_DATA), checked to hold what the benchmark reads."""
    if not args.data:
        raise InputError("--data", "is needed", f"give the folder holding {holding}, or set CADENCE_DATA")
    if not (Path(args.data) / holding).is_dir():
        raise InputError(args.data, f"holds no {holding}", "give --data the folder that does")
    return Path(args.data)


def _write_json(path: str | None, figures: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(figures, indent=1))


def _run_bench_repcount(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cadence.pipelines.repcount import read_labels, score

    sequences = read_labels(args.poses, args.labels)
    stride = RepetitionCounting(window=args.window, stride=args.stride).window_stride
    with tqdm(total=len(sequences), unit="video", leave=False, file=sys.stderr, disable=None) as bar:
        result = score(sequences, args.window, stride, progress=lambda _: bar.update(1))
    for v in result.videos:
        print(f"{v['name']:>16}  gt {v['gt']:6.1f}  pred {v['pred']:7.2f}")
    boundary = "n/a" if result.boundary_mae is None else f"{result.boundary_mae:.3f}"
    print(f"window {args.window} stride {stride}: MAE {result.mae:.3f}  OBO {result.obo:.3f}  per-cycle MAE "
          f"{boundary}  counts that went down: {result.decreases}  ({len(result.videos)} videos, "
          f"{result.poses_per_second:,.0f} poses/s counted)")
    _write_json(args.json, result.to_dict())
    return 0


def _run_bench_pipeline(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.benchmarks import playlists, run_actors, run_inline

    job = RepetitionCounting(window=args.window, stride=args.stride, live=args.live,
                             detection_interval=args.detection_interval)
    feeds = playlists(_data(args, "videos"), args.feeds, args.seconds)
    figures: dict = {"feeds": args.feeds, "seconds_per_feed": args.seconds, "live": args.live,
                     "window": job.window, "stride": job.window_stride, "detect_every": job.detection_interval}
    if not args.skip_inline and not args.live:
        figures["inline"] = run_inline(feeds, job)
        print(f"inline: {figures['inline']}", flush=True)
    figures["actors"] = run_actors(feeds, job, args.address)
    print(f"actors: {figures['actors']}", flush=True)
    if args.compare_driver:
        figures["driver"] = run_actors(feeds, job, args.address, in_driver=True)
        figures["actors_over_driver"] = round(figures["actors"]["frames_per_second"]
                                              / figures["driver"]["frames_per_second"], 3)
        print(f"driver: {figures['driver']}\nactors / driver: {figures['actors_over_driver']}x", flush=True)
    if "inline" in figures:
        figures["ratio"] = round(figures["actors"]["frames_per_second"] / figures["inline"]["frames_per_second"], 2)
        print(f"actors / inline: {figures['ratio']}x")
    _write_json(args.json, figures)
    return 0


def _run_bench_cluster(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.cluster import bench_cluster

    if args.nodes < 2 and args.kill_node_after is not None:
        raise InputError("--kill-node-after", "needs a worker node to remove", "give --nodes 2 or more")
    job = RepetitionCounting(window=args.window, stride=args.stride)
    figures = bench_cluster(_data(args, "videos"), args.nodes, args.feeds, args.seconds, args.kill_node_after,
                            args.cpus_per_node, job)
    for node in figures["nodes"]:
        print(f"{node['node']}: {node['feeds']} feeds, {node['frames_per_second']} frames/s")
    for key in ("cross_node_bytes_per_frame", "foreign_batches", "counts_equal_inline", "updates_repeated",
                "recovery_seconds", "loss_detected_seconds", "caught_up_seconds", "frames_per_second",
                "driver_cpu_ms_per_report"):
        print(f"{key}: {figures[key]}")
    _write_json(args.json, figures)
    return 0 if figures["counts_equal_inline"] else 1


def _run_bench_chaos(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.benchmarks import playlists, run_chaos

    job = RepetitionCounting(window=args.window, stride=args.stride)
    figures = run_chaos(playlists(_data(args, "videos"), args.feeds, args.seconds), job, args.address, args.every,
                        args.seed)
    for feed, counts in figures["counts"].items():
        print(f"{feed}: actors {counts['actors']:.3f}  inline {counts['inline']:.3f}"
              + (f"  error: {counts['error']}" if counts["error"] else ""))
    print(f"{figures['kills']} kills {figures['kills_by_stage']} in {figures['seconds']} s; every count exact: "
          f"{figures['every_count_exact']}")
    _write_json(args.json, figures)
    return 0 if figures["every_count_exact"] else 1


def _run_bench_serve(args: argparse.Namespace) -> int:
    import tempfile

    from cadence.cluster.bench.benchmarks import bench_serve

    def show(sample: dict) -> None:
        feeds = "  ".join(f"{f['name'][:14]} {f['state']} {f['frames']}f {f['frames_dropped']}d "
                          f"p95 {f['latency_p95']}" for f in sample["feeds"])
        print(f"{sample['seconds']:7.1f} s  {sample['pss_mib']:8.1f} MiB  {feeds}", flush=True)

    with tempfile.TemporaryDirectory(dir=args.work) as work:
        figures = bench_serve(_data(args, "videos"), args.feeds, args.minutes, Path(work), args.address,
                              on_sample=show)
    for key, value in figures.items():
        print(f"{key}: {value}")
    _write_json(args.json, figures)
    return 0


def _run_bench_features(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from cadence.cluster.bench.benchmarks import bench_features

    data = _data(args, "fsdd/recordings")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cadence-bench-"))
    try:
        figures = bench_features(data, args.hours, args.sample_rate, args.address, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    _write_json(args.json, figures)
    return 0


def _run_bench_tune(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from cadence.cluster.audio.tune import bench_tune

    data = _data(args, "fsdd/recordings")
    work = Path(tempfile.mkdtemp(prefix="cadence-bench-"))
    try:
        figures = bench_tune(data / "fsdd" / "recordings", args.classifier, args.address, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    _write_json(args.json, figures)
    return 0


# -- the command line -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Temporal machine learning on streams: count exercise repetitions in videos and camera feeds, "
                    "extract audio features of large corpora and train classifiers on them.")
    parser.add_argument("--verbose", action="store_true", help="keep MediaPipe's native log output on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_count, _add_serve, _add_features, _add_train, _add_tune, _add_evaluate, _add_predict, _add_export,
                _add_bench):
        add(commands)
    return parser


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, a service manager, a container stopping) stops as cleanly as Ctrl-C: what was
    done is kept and reported (`connected` keeps it when Ray starts)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("terminated (SIGTERM)")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _only_json_on_stdout() -> None:
    """With ``--json``, standard output carries the documented JSON lines and nothing else: file
    descriptor 1 is pointed at the real standard error, so what native libraries, Ray's processes
    (started after this) or anything else write there lands on stderr, and ``print`` writes to a
    private copy of the real stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    real = os.dup(1)
    os.dup2(sys.stderr.fileno(), 1)
    sys.stdout = os.fdopen(real, "w", buffering=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _quiet_native_logging()
    _stop_on_sigterm()
    if getattr(args, "json", None) is True:
        _only_json_on_stdout()
    name = " ".join(filter(None, ("cadence", args.command, getattr(args, "bench", None))))
    try:
        return args.run(args)
    except KeyboardInterrupt as e:
        print(f"{name}: interrupted" + (f"; {e}" if e.args else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CadenceError, ValueError) as e:  # bad input, named with what to do: no traceback
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
