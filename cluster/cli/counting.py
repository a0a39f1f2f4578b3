"""``cadence count`` and ``cadence serve``: repetitions in videos, cameras and stream URLs."""

from __future__ import annotations

import argparse
import os

from cadence.pipelines.pose import JOINT_GROUPS, STRATEGIES
from cadence.pipelines.repetitions import RepetitionCounting

from .options import (EXIT_BAD_INPUT, add_address, add_detect_every, add_json, add_pose_actors, add_windows,
                      counting_job, default, emit, joints)


def add_count(commands: argparse._SubParsersAction) -> None:
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
    add_windows(count)
    count.add_argument("--strategy", choices=STRATEGIES, default=default(RepetitionCounting, "strategy"),
                       help="which person to follow when several are in view (default %(default)s)")
    chosen = count.add_mutually_exclusive_group()
    chosen.add_argument("--joints", metavar="LIST", type=joints, dest="selected_joints",
                        help="count on these joints only: names or groups, comma-separated (groups: "
                             f"{', '.join(JOINT_GROUPS)}; e.g. --joints arms for front raises)")
    chosen.add_argument("--ignore-joints", metavar="LIST", type=joints, dest="ignored_joints",
                        help="leave these joints out of the count (e.g. --ignore-joints face)")
    count.add_argument("--per-person", action="store_true",
                       help="also track everyone in view and count each person on their own (a group workout); "
                            "the --strategy person's count stays the headline")
    add_detect_every(count)
    count.add_argument("--live", action="store_true",
                       help="read cameras or stream URLs (or files paced at their frame rate) as they come; "
                            "frames the counter cannot keep up with are dropped and reported")
    count.add_argument("--annotate", metavar="OUT.mp4",
                       help="write the video with the selected skeleton and the running count drawn on it "
                            "(with several videos, one file each: OUT-NAME.mp4)")
    add_json(count, "one object per source at the end instead of the running counts (with its counted "
                    "repetitions: index, start and end frame and time, duration, confidence, and the node it ran on)")
    count.add_argument("--out", metavar="FILE.parquet",
                       help="write every count update (feed, frame_index, timestamp, count, people) as a Parquet table, "
                            "and every counted repetition to FILE-repetitions.parquet beside it (rows are kept "
                            "in FILE.parquet.parts/ as they come, readable even after a kill, and joined at the end); "
                            "a path or a URI (s3://bucket/counts.parquet)")
    count.add_argument("--runner", choices=("ray", "inline"), default=None,
                       help="ray: every feed at once through Ray actors with bounded queues, each feed read, posed "
                            "and counted on one node of the cluster (the one with the most pose capacity left), so "
                            "its frames never cross the network; a node lost hands its feeds to the others, files "
                            "resuming exactly. inline: one source after another in this process. Default: ray when "
                            "the work needs it (several sources, --address or $RAY_ADDRESS, --feeds with labels, "
                            "--pose-actors), else inline (one source counts sooner than Ray starts; --annotate)")
    add_address(count)
    add_pose_actors(count)
    count.set_defaults(run=run_count)


def run_count(args: argparse.Namespace) -> int:
    from cadence.cluster.counting.count import count_sources

    job = counting_job(args, strategy=args.strategy, live=args.live, selected_joints=args.selected_joints,
                       ignored_joints=args.ignored_joints, per_person=args.per_person)
    return 0 if count_sources(args, job, emit) else EXIT_BAD_INPUT


def add_serve(commands: argparse._SubParsersAction) -> None:
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
    serve.add_argument("--port", type=int, default=8000,
                       help="port to listen on (default %(default)s; 0 picks a free one, printed at start)")
    serve.add_argument("--store", metavar="DIR", default="cadence-serve",
                       help="folder of the store (counts.sqlite; created if missing; default %(default)s)")
    serve.add_argument("--token", default=os.environ.get("CADENCE_TOKEN"),
                       help="require this token on every request (default: $CADENCE_TOKEN)")
    add_address(serve)
    add_pose_actors(serve)
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from cadence.cluster.serve.app import serve

    serve(args.host, args.port, args.store, args.address, args.token, args.pose_actors)
    return 0
