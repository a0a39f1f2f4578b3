"""``cadence features``, ``evaluate``, ``predict`` and ``export``: audio corpora and trained models."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from cadence.pipelines.audio import HIGHEST_FEATURE_RATE, AudioFeaturePrint
from cadence.pipelines.storage import Location, check_reachable, check_writable_folder

from .options import emit, EXIT_BAD_INPUT, add_address, add_json, default, note


def add_features(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser(
        "features", help="extract audio features of a corpus into a Parquet feature store, incrementally",
        description="Extract AudioFeaturePrint features of every file in MANIFEST into the store at DIR, on Ray "
                    "(all cores of this machine, or the cluster at --address) when the work is worth starting "
                    "it, else in this process (see --runner). Files whose content is already "
                    "in the store are skipped, so a re-run extracts only new files; bad files are listed in "
                    "the store's errors table and never stop the job.",
        epilog="MANIFEST is a CSV file with a header path,label[,split]; paths are relative to its folder, split "
               "defaults to train. The manifest, its files and the store may be URIs (s3://, gs://, abfs://, "
               "hdfs://), credentials from the filesystem's usual places (AWS_ENDPOINT_URL for MinIO and the like). Exit status: 0 when every file was extracted or skipped, 2 when some failed "
               "or the manifest is unusable, 130 on Ctrl-C (what was extracted is kept).")
    features.add_argument("manifest", metavar="MANIFEST.csv")
    features.add_argument("--store", required=True, metavar="DIR",
                          help="the feature store's folder, or a URI (s3://bucket/features: every node reads it)")
    features.add_argument("--window-duration", type=float, default=default(AudioFeaturePrint, "window_duration"),
                          help="seconds per feature window, 0.5..15 (default %(default)s)")
    features.add_argument("--overlap-factor", type=float, default=default(AudioFeaturePrint, "overlap_factor"),
                          help="share of a window the next one overlaps, 0..<1 (default %(default)s)")
    features.add_argument("--sample-rate", type=int, default=None,
                          help="rate the audio is resampled to before features (default: the files' own rate, "
                               f"at most {HIGHEST_FEATURE_RATE}, as in the Python API; or the rate of the store "
                               "already in --store, so a re-run adds to it)")
    add_address(features)
    features.add_argument("--runner", choices=("ray", "inline"), default=None,
                          help="ray: Ray tasks on every CPU of this machine or the cluster; inline: this process. "
                               "Default: ray with --address (or $RAY_ADDRESS), or when the new files hold enough "
                               "audio to win back Ray's start (about 4 hours of 8 kHz audio on 2 CPUs, 2 on 16; "
                               "a few minutes of audio extract in a second or two); else inline")
    features.add_argument("--inline", dest="runner", action="store_const", const="inline",
                          help="the same as --runner inline")
    add_json(features, "{extracted, skipped, failed, seconds, store}")
    features.set_defaults(run=run_features)


def run_features(args: argparse.Namespace) -> int:
    import contextlib

    from tqdm import tqdm

    from cadence.cluster.audio.features import default_sample_rate, extract_corpus, read_manifest
    from cadence.cluster.audio.store import FeatureStore

    check_reachable(args.store, "--store")
    rows = read_manifest(args.manifest)
    rate = args.sample_rate
    if rate is None:
        rate, why = default_sample_rate(rows, args.store, args.window_duration, args.overlap_factor)
        note("features", f"features at {rate} Hz, {why}; --sample-rate chooses another")
    extractor = AudioFeaturePrint(window_duration=args.window_duration, overlap_factor=args.overlap_factor,
                                  sample_rate=rate).check_params()
    use_ray = {"ray": True, "inline": False}.get(args.runner)
    if use_ray is not False and (args.address or os.environ.get("RAY_ADDRESS")):
        from cadence.cluster.runtime.connect import connected

        where = connected(args.address)
    else:
        where = contextlib.nullcontext()  # a local Ray, if the work needs it, starts in extract_corpus
    with where, tqdm(total=len(rows), unit="file", file=sys.stderr, disable=None, desc="features") as bar:
        try:
            started = time.time()
            summary = extract_corpus(rows, args.store, extractor, use_ray=use_ray, progress=bar.update)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("every file extracted so far is kept, run again to finish") from None
    if args.json:
        emit(json.dumps(summary.to_dict()))
    else:
        where = "on Ray" if summary.runner == "ray" else "in this process"
        print(f"{summary.extracted} extracted, {summary.skipped} skipped (already in the store), "
              f"{summary.failed} failed, in {summary.seconds:.1f} s {where} -> {summary.store}")
    if summary.failed:
        show_failures(FeatureStore(args.store, extractor), summary, started)
    return EXIT_BAD_INPUT if summary.failed else 0


def show_failures(store, summary, since: float, shown: int = 20) -> None:
    """Each file that failed in this run, with its reason (the first ``shown``), then where they all are."""
    import pyarrow.compute as pc

    errors = store.errors()
    recent = errors.filter(pc.greater_equal(errors.column("time").cast("int64"), int(since))).to_pylist()
    for error in recent[:shown]:
        note("features", error["error"])
    more = f" ({len(recent) - shown} more)" if len(recent) > shown else ""
    note("features", f"{summary.failed} file(s) failed{more}; every one is in the errors table of {summary.store}")


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="accuracy and per-class figures of a model on a store's split",
                                   description="Print accuracy and per-class precision/recall/F1 of MODEL on one "
                                               "split of a feature store, and write a confusion-matrix PNG.")
    evaluate.add_argument("--model", required=True, metavar="M")
    evaluate.add_argument("--store", required=True, metavar="DIR", help="the feature store: a folder or a URI")
    evaluate.add_argument("--split", default="test", help="default %(default)s")
    evaluate.add_argument("--confusion", metavar="PNG", help="default: M-confusion-SPLIT.png")
    add_json(evaluate, "the report")
    evaluate.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import evaluate, load_model, open_store, plot_confusion

    model, extractor, extra = load_model(args.model)
    report = evaluate(model, open_store(args.store), args.split, extra.get("level", "clip"), extractor=extractor)
    picture = args.confusion or str(Location.of(args.model).beside(f"-confusion-{args.split}.png"))
    plot_confusion(report, model.classes, picture)
    if args.json:
        emit(json.dumps(report | {"confusion_png": picture}))
        return 0
    print(f"{args.split}: accuracy {report['accuracy']:.4f} over {report['rows']} files")
    print(f"{'label':>12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for label, c in report["classes"].items():
        print(f"{label:>12} {c['precision']:9.3f} {c['recall']:7.3f} {c['f1']:7.3f} {c['support']:8d}")
    print(f"confusion matrix: {picture}")
    return 0


def add_predict(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="label audio files with a trained model",
                                  description="Print the label and its probability for each audio file, "
                                              "extracting features with the model's own extractor.")
    predict.add_argument("--model", required=True, metavar="M")
    predict.add_argument("files", nargs="+", metavar="FILE", help="audio files: paths or URIs (s3://...)")
    add_json(predict, "one object per file")
    predict.add_argument("--windows", action="store_true",
                         help="also label each window on its own (window_duration long, overlapping as the "
                              "extractor's overlap_factor says), with its start and end time and probabilities")
    predict.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import load_model, predict_files

    model, extractor, _ = load_model(args.model)

    def show(path: str, result) -> None:
        if isinstance(result, Exception):
            note("predict", f"error: {result}")
            if args.json:
                emit(json.dumps({"file": path, "error": str(result)}))
            return
        if args.json:
            emit(json.dumps(result.summary(path)))
            return
        print(f"{path}: {result.classification.label} ({result.classification.probability:.3f})")
        for w in result.windows:
            print(f"  {w.start_time:7.3f}-{w.end_time:7.3f} s: {w.classification.label} "
                  f"({w.classification.probability:.3f})")

    return EXIT_BAD_INPUT if predict_files(model, extractor, args.files, show, args.windows) else 0


def add_export(commands: argparse._SubParsersAction) -> None:
    from cadence.pipelines.export import FORMATS

    export = commands.add_parser(
        "export", help="write a trained model as ONNX (or Core ML) for use outside cadence",
        description="Write the classifier of a model file, its standardisation included, as an ONNX graph "
                    "(input 'features': AudioFeaturePrint clip vectors, N x D float32; outputs 'probabilities', "
                    "'class_index', 'label'), or as a Core ML classifier where coremltools is installed. The "
                    "extractor's parameters and the classes travel in the file's metadata ('cadence', JSON).")
    export.add_argument("--model", required=True, metavar="M", help="a model file from cadence train or tune")
    export.add_argument("--format", choices=FORMATS, default="onnx", help="default %(default)s")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write (exactly this path or URI)")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from cadence.pipelines.export import export

    from cadence.cluster.audio.train import load_model

    check_writable_folder(args.out, "--out")
    model, extractor, extra = load_model(args.model)
    path = export(model, args.out, args.format,
                  {"extractor": extractor.identity(), "level": extra.get("level", "clip")})
    print(f"{args.format}: {model.kind} of {len(model.classes)} classes ({', '.join(model.classes[:10])}"
          f"{', ...' if len(model.classes) > 10 else ''}) on {len(model.mean)} features of {extractor!r} -> {path}")
    return 0
