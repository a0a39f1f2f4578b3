"""``cadence count``: count repetitions in each source, report as it goes, keep going past bad inputs."""

from __future__ import annotations

import argparse
import json
import operator
import sys
from pathlib import Path

from tqdm import tqdm

from pipelines.drawing import AnnotatedVideoWriter, draw_count, draw_pose
from pipelines.errors import CadenceError, InputError
from pipelines.repetitions import CountUpdate, RepetitionCounting
from pipelines.video import LiveStream, read_camera, read_video

from .cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED


def _is_camera(source: str) -> bool:
    return source.isdigit() or "://" in source


def _open(source: str, live: bool):
    """The frame stream of one source, and its frame rate."""
    if _is_camera(source):
        if not live:
            raise InputError(source, "looks like a camera or stream URL", "add --live to read it")
        stream = read_camera(source)
        return LiveStream(stream), stream.fps
    video = read_video(source)
    return (LiveStream(video, pace=True) if live else video), video.fps


def annotation_path(out: str, source: str, several: bool) -> Path:
    out_path = Path(out)
    if not several:
        return out_path
    return out_path.with_name(f"{out_path.stem}-{Path(source).stem}{out_path.suffix or '.mp4'}")


def _count_one(source: str, args: argparse.Namespace, job: RepetitionCounting, bar: tqdm,
               running: dict[str, float]) -> dict:
    """Count one source; return its JSON summary.  ``running`` holds its latest count meanwhile."""
    frames, fps = _open(source, args.live)
    bar.reset(total=operator.length_hint(frames) or None)
    bar.set_description(Path(source).name if not _is_camera(source) else source)

    def on_update(update: CountUpdate) -> None:
        running[source] = update.count
        bar.set_postfix(count=f"{update.count:.2f}")
        if not args.json:
            bar.write(f"{source}: frame {update.frame_index + 1} ({update.timestamp:.1f} s): count {update.count:.2f}")

    writer = None
    if args.annotate:
        writer = AnnotatedVideoWriter(annotation_path(args.annotate, source, len(args.sources) > 1), fps)

    def on_frame(frame, pose, count) -> None:
        bar.update(1)
        if writer is not None:
            image = frame.image.copy()
            if pose is not None:
                draw_pose(image, pose)
            draw_count(image, count)
            writer.write(image)

    try:
        result = job.run(frames, source=source, on_update=on_update, on_frame=on_frame)
    finally:
        if writer is not None:
            writer.close()
    summary = result.summary()
    if isinstance(frames, LiveStream):
        summary["frames_dropped"] = frames.dropped
    return summary


def count_sources(args: argparse.Namespace) -> int:
    stride = args.stride if args.stride is not None else (15 if args.live else args.window)
    if args.window < 1 or stride < 1:
        print("cadence count: --window and --stride must be whole numbers >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    job = RepetitionCounting(window=args.window, stride=stride, strategy=args.strategy)
    failures = 0
    running: dict[str, float] = {}
    with tqdm(total=None, unit="frame", leave=False, file=sys.stderr, disable=None) as bar:
        for source in args.sources:
            try:
                summary = _count_one(source, args, job, bar, running)
            except CadenceError as e:
                failures += 1
                bar.write(f"cadence count: error: {e}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"source": source, "error": str(e)}), flush=True)
                continue
            except KeyboardInterrupt:
                count = running.get(source, 0.0)
                bar.write(f"cadence count: interrupted; {source}: {count:.2f} repetitions so far", file=sys.stderr)
                if args.json:
                    print(json.dumps({"source": source, "count": round(count, 3), "interrupted": True}), flush=True)
                return EXIT_INTERRUPTED
            if args.json:
                print(json.dumps(summary), flush=True)
            else:
                bar.write(f"{source}: {summary['count']:.2f} repetitions in {summary['frames']} frames "
                          f"({summary['seconds']:.1f} s of video, {summary['frames_per_second']} frames/s)")
    return EXIT_BAD_INPUT if failures else 0
