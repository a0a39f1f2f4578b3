"""``cadence bench``: benchmarks that print figures (nothing asserted); ``--json`` prints them as
JSON, ``--out FILE.json`` also writes them to a file.  The code they run lives in
:mod:`cadence.cluster.bench`, which only this module imports."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cadence.pipelines.errors import InputError
from cadence.pipelines.repetitions import STRIDE_SECONDS

from cadence.cluster.audio.settings import CLASSIFIERS

from .options import (add_address, add_data, add_detect_every, add_figures, add_windows, counting_job, data_folder,
                      note, positive, rate, report)


def add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks that print figures",
                                description="Benchmarks that print figures (nothing is asserted).")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    for add in (_add_repcount, _add_pipeline, _add_chaos, _add_cluster, _add_serve, _add_tune, _add_features,
                _add_startup):
        add(benches)


def _add_repcount(benches: argparse._SubParsersAction) -> None:
    repcount = _benchmark(
        benches, "repcount", run_repcount, help="score the repetition counter on RepCount-format pose sequences",
        description="Run HumanBodyActionCounter as a stream (the same sliding windows and cumulative counts as "
                    "'cadence count') over every pose sequence listed in LABELS, and print MAE, OBO and the "
                    "per-video predictions. MAE = mean(|pred - gt| / max(gt, 1)); OBO = share with "
                    "|round(pred) - gt| <= 1; per-cycle MAE (with a cycle_boundaries column): at the end of each "
                    "labelled repetition, the repetitions counted by then against its number, divided as MAE; and "
                    "how many counts ever went down (none should).")
    repcount.add_argument("--poses", required=True, metavar="DIR", help="folder of NAME.npy arrays (T, 104)")
    repcount.add_argument("--labels", required=True, metavar="CSV",
                          help="labels.csv with columns name,count[,cycle_boundaries]")
    add_windows(repcount, f"{STRIDE_SECONDS:g}, as cadence count; 3 for the benchmark's usual setting")
    repcount.add_argument("--folds", type=positive, default=3, metavar="K",
                          help="also score the videos in K folds (sorted by name, every K-th in a fold) and print "
                               "each fold's MAE and OBO: the spread a held-out set of this size shows "
                               "(default %(default)s; 1: none)")
    add_figures(repcount)


def _add_pipeline(benches: argparse._SubParsersAction) -> None:
    pipeline = _benchmark(
        benches, "pipeline", run_pipeline, help="frames per second of the inline path and the Ray actor pipeline on the same frames",
        description="Play real clips (each feed all of them back to back, from another one on, for --seconds) "
                    "through the inline path (one feed after another in one process) and then through the actor "
                    "pipeline (all feeds at once), "
                    "and print frames per second of each, their ratio and peak memory; with --live, the "
                    "capture-to-count latency p50/p95 of the paced feeds.")
    add_playlists(pipeline, feeds=1, seconds=60)
    pipeline.add_argument("--live", action="store_true", help="pace the feeds at their frame rate, as cameras")
    add_windows(pipeline)
    pipeline.add_argument("--skip-inline", action="store_true", help="run the actor pipeline only")
    pipeline.add_argument("--compare-driver", action="store_true",
                          help="also run the node pipeline driven from this process (the design before feeds "
                               "lived on nodes: no node actor between), on the same feeds, and print both")
    add_detect_every(pipeline)
    _add_bench_options(pipeline, "videos/")


def _add_chaos(benches: argparse._SubParsersAction) -> None:
    chaos = _benchmark(
        benches, "chaos", run_chaos, help="the actor pipeline while random actors are killed: every count must equal the inline one",
        description="Play real clips through the actor pipeline on --feeds feeds while a random actor of any stage "
                    "(capture, pose extraction, counting) is killed every --every seconds (Ray restarts it and the "
                    "pipeline recovers its feeds), then count each feed inline, and print the kills by stage and "
                    "whether every feed's final count equals the inline one exactly. Exit status 1 if one does not.")
    add_playlists(chaos, feeds=8, seconds=15)
    chaos.add_argument("--every", type=float, default=2.0, help="seconds between kills (default %(default)s)")
    chaos.add_argument("--seed", type=int, default=0, help="which actors are killed (default %(default)s)")
    add_windows(chaos, "the window")
    _add_bench_options(chaos, "videos/")


def _add_cluster(benches: argparse._SubParsersAction) -> None:
    cluster = _benchmark(
        benches, "cluster", run_cluster,
        help="the counting job on a real multi-node Ray on this machine: placement, locality, node loss",
        description="Count --feeds playlists of real clips inline (the expected counts), then on a Ray of --nodes "
                    "nodes started on this machine (ray.cluster_utils.Cluster: each node its own raylet, object "
                    "store and workers, all on loopback; the driver on the head node), optionally removing the "
                    "worker node with the most feeds --kill-node-after seconds in. Prints (as JSON with --json; --out "
                    "also writes it to a file): "
                    "each node's feeds and frames/s, cross_node_bytes_per_frame, counts_equal_inline and "
                    "recovery_seconds (from the kill until every moved feed reads frames on its new node). "
                    "cross_node_bytes_per_frame is measured: every report a node hands the driver from another "
                    "node, and every feed order the driver hands another node, pickled as Ray pickles it, its bytes "
                    "summed over the frames counted. foreign_batches counts the frame and pose batches that reached "
                    "an actor on another node than the one that made them (each stage stamps its batches with its "
                    "node and the next one checks): 0 means no frame left its node.")
    cluster.add_argument("--nodes", type=positive, default=3, help="default %(default)s")
    cluster.add_argument("--cpus-per-node", type=positive, default=1, help="default %(default)s")
    add_playlists(cluster, feeds=6, seconds=20)
    cluster.add_argument("--kill-node-after", type=float, default=None, metavar="S",
                         help="remove the worker node with the most feeds S seconds into the run")
    add_windows(cluster)
    add_data(cluster, "videos/")
    add_figures(cluster)


def _add_serve(benches: argparse._SubParsersAction) -> None:
    serve = _benchmark(
        benches, "serve", run_serve, help="a soak of cadence serve: live loopback cameras for minutes; memory, stalls, drops, latency",
        description="Start cadence serve and --feeds stand-in cameras (real clips looped as MJPEG on loopback), add "
                    "the feeds one by one (timing each to its first count), then sample every 10 s for --minutes: "
                    "the memory (PSS) of the service and its Ray processes, and each feed's frames, drops, latency "
                    "p50/p95 and state. A feed stalls when it reads nothing between two samples while running.")
    serve.add_argument("--feeds", type=positive, default=4, help="live cameras at once (default %(default)s)")
    serve.add_argument("--minutes", type=float, default=10, help="default %(default)s")
    serve.add_argument("--rate", type=rate, default=None, metavar="R|all",
                       help="frames posed a second of each camera, as POST /feeds's rate (default: all)")
    _add_work(serve, "the service's store")
    _add_bench_options(serve, "videos/")


def _add_tune(benches: argparse._SubParsersAction) -> None:
    tune = _benchmark(
        benches, "tune", run_tune, help="cadence tune's trials in parallel against the same trials one after another",
        description="Extract FSDD's standard split into a temporary store, run the default grid of --classifier "
                    "as Ray Tune trials (cadence tune), then the same trials one after another in this process, "
                    "and print both times, the speed-up and whether both found the same best model.")
    tune.add_argument("--classifier", choices=tuple(CLASSIFIERS), default="mlp", help="default %(default)s")
    _add_bench_options(tune, "fsdd/recordings/")


def _add_features(benches: argparse._SubParsersAction) -> None:
    features = _benchmark(
        benches, "features", run_features, help="audio seconds per second of feature extraction: one process, librosa, Ray, incremental",
        description="Tile FSDD (gain and time-shift variations) into a temporary corpus of --hours, then print "
                    "audio seconds per second (x real time) of AudioFeaturePrint in one process and of librosa's "
                    "MFCC on the same files (if librosa is installed: pip install '.[bench]'), of the Ray job on "
                    "90% of the corpus, and the time of an incremental re-run after the last 10% is added.")
    features.add_argument("--hours", type=float, default=10, help="corpus length (default %(default)s)")
    features.add_argument("--sample-rate", type=int, default=8000,
                          help="feature sample rate (default %(default)s, FSDD's own)")
    _add_work(features, "the corpus and its store")
    features.add_argument("--store", metavar="URI", default=None,
                          help="also extract the 90%% on Ray into a fresh store under URI (s3://bucket/prefix, "
                               "removed after) and compare its files per second with the local folder's")
    _add_bench_options(features, "fsdd/recordings/")


def _add_startup(benches: argparse._SubParsersAction) -> None:
    startup = _benchmark(
        benches, "startup", run_startup, help="short jobs end to end: the default runner against Ray forced",
        description="Time, as a user runs them, cadence count on a one-second clip and cadence features on 12 "
                    "FSDD files, each with the default runner (Ray only when the work needs it) and with "
                    "--runner ray, --repeats times (medians), and how long cadence serve takes to answer /health.")
    startup.add_argument("--repeats", type=positive, default=3, help="runs of each command (default %(default)s)")
    add_data(startup, "videos/ and fsdd/recordings/")
    add_figures(startup)


def _benchmark(benches: argparse._SubParsersAction, name: str, run, help: str,
               description: str) -> argparse.ArgumentParser:
    parser = benches.add_parser(name, help=help, description=description)
    parser.set_defaults(run=run)
    return parser


def add_playlists(parser: argparse.ArgumentParser, feeds: int, seconds: float) -> None:
    """The benchmarks' feeds: each plays the shared clips back to back for so many seconds."""
    parser.add_argument("--feeds", type=positive, default=feeds, help="feeds at once (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=seconds,
                        help="seconds of video per feed (default %(default)s)")


def _add_work(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--work", metavar="DIR", default=None,
                        help=f"where {what} go (default: a temporary folder, removed)")


def _add_bench_options(parser: argparse.ArgumentParser, holding: str) -> None:
    add_data(parser, holding)
    add_address(parser)
    add_figures(parser)


def run_repcount(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cadence.pipelines.repcount import read_labels, score

    sequences = read_labels(args.poses, args.labels)
    job = counting_job(args)
    with tqdm(total=len(sequences), unit="video", leave=False, file=sys.stderr, disable=None) as bar:
        result = score(sequences, job, progress=lambda _: bar.update(1))
    folds = result.folds(args.folds) if args.folds > 1 else []

    def lines(_: dict) -> list[str]:
        boundary = "n/a" if result.boundary_mae is None else f"{result.boundary_mae:.3f}"
        rate = "every frame" if job.rate is None else f"rate {job.rate:g}"
        return [f"{v['name']:>16}  gt {v['gt']:6.1f}  pred {v['pred']:7.2f}" for v in result.videos] + [
            f"{rate}, window {job.window_seconds:g} s, stride {job.window_stride:g} s: MAE {result.mae:.3f}  "
            f"OBO {result.obo:.3f}  per-cycle MAE {boundary}  counts that went down: {result.decreases}  "
            f"({len(result.videos)} videos, {result.poses_per_second:,.0f} poses/s counted)"] + [
            f"  fold {i + 1} of {len(folds)} ({len(f.videos)} videos): MAE {f.mae:.3f}  OBO {f.obo:.3f}"
            for i, f in enumerate(folds)]

    figures = result.to_dict() | ({"folds": [{"mae": round(f.mae, 4), "obo": round(f.obo, 4),
                                              "videos": [v["name"] for v in f.videos]} for f in folds]}
                                  if folds else {})
    report(args, figures, lines)
    return 0


def run_pipeline(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.pipeline import playlists, run_actors, run_inline

    job = counting_job(args, live=args.live)
    feeds = playlists(data_folder(args, "videos"), args.feeds, args.seconds)
    figures: dict = {"feeds": args.feeds, "seconds_per_feed": args.seconds, "live": args.live,
                     "rate": "all" if job.rate is None else job.rate, "window_seconds": job.window_seconds,
                     "stride_seconds": job.window_stride, "detect_every_seconds": job.detection_seconds}
    if not args.skip_inline and not args.live:
        figures["inline"] = run_inline(feeds, job)
        note("bench pipeline", f"inline: {figures['inline']}")
    figures["actors"] = run_actors(feeds, job, args.address)
    note("bench pipeline", f"actors: {figures['actors']}")
    if args.compare_driver:
        figures["driver"] = run_actors(feeds, job, args.address, in_driver=True)
        figures["actors_over_driver"] = round(figures["actors"]["frames_per_second"]
                                              / figures["driver"]["frames_per_second"], 3)
    if "inline" in figures:
        figures["ratio"] = round(figures["actors"]["frames_per_second"] / figures["inline"]["frames_per_second"], 2)
    report(args, figures)
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.cluster import bench_cluster

    if args.nodes < 2 and args.kill_node_after is not None:
        raise InputError("--kill-node-after", "needs a worker node to remove", "give --nodes 2 or more")
    job = counting_job(args)
    figures = bench_cluster(data_folder(args, "videos"), args.nodes, args.feeds, args.seconds, args.kill_node_after,
                            args.cpus_per_node, job)

    def lines(figures: dict) -> list[str]:
        keys = ("cross_node_bytes_per_frame", "foreign_batches", "counts_equal_inline", "updates_repeated",
                "recovery_seconds", "loss_detected_seconds", "caught_up_seconds", "frames_per_second",
                "driver_cpu_ms_per_report")
        return [f"{n['node']}: {n['feeds']} feeds, {n['frames_per_second']} frames/s" for n in figures["nodes"]] + [
            f"{key}: {figures[key]}" for key in keys]

    report(args, figures, lines)
    return 0 if figures["counts_equal_inline"] else 1


def run_chaos(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.pipeline import playlists, run_chaos as chaos

    job = counting_job(args)
    figures = chaos(playlists(data_folder(args, "videos"), args.feeds, args.seconds), job, args.address, args.every,
                    args.seed)

    def lines(figures: dict) -> list[str]:
        return [f"{feed}: actors {c['actors']:.3f}  inline {c['inline']:.3f}" + (f"  error: {c['error']}" if c["error"]
                                                                                 else "")
                for feed, c in figures["counts"].items()] + [
            f"{figures['kills']} kills {figures['kills_by_stage']} in {figures['seconds']} s; every count exact: "
            f"{figures['every_count_exact']}"]

    report(args, figures, lines)
    return 0 if figures["every_count_exact"] else 1


def run_serve(args: argparse.Namespace) -> int:
    import tempfile

    from cadence.cluster.bench.serve import bench_serve

    def show(sample: dict) -> None:
        feeds = "  ".join(f"{f['name'][:14]} {f['state']} {f['frames']}f {f['frames_dropped']}d "
                          f"p95 {f['latency_p95']}" for f in sample["feeds"])
        note("bench serve", f"{sample['seconds']:7.1f} s  {sample['pss_mib']:8.1f} MiB  {feeds}")

    with tempfile.TemporaryDirectory(dir=args.work) as work:
        figures = bench_serve(data_folder(args, "videos"), args.feeds, args.minutes, Path(work), args.address,
                              on_sample=show, rate=args.rate)
    report(args, figures)
    return 0


def run_features(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.features import bench_features

    with _work_folder(args.work) as work:
        figures = bench_features(data_folder(args, "fsdd/recordings"), args.hours, args.sample_rate, args.address,
                                 work, args.store)
    report(args, figures)
    return 0


def run_startup(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.startup import bench_startup

    with _work_folder(None) as work:
        figures = bench_startup(data_folder(args, "videos"), work, args.repeats)
    report(args, figures)
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from cadence.cluster.bench.tune import bench_tune

    data = data_folder(args, "fsdd/recordings")
    with _work_folder(None) as work:
        figures = bench_tune(data / "fsdd" / "recordings", args.classifier, args.address, work)
    report(args, figures)
    return 0


@contextlib.contextmanager
def _work_folder(given: str | None) -> Iterator[Path]:
    """``given``, kept; or a temporary folder, removed afterwards."""
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as work:
        yield Path(work)
