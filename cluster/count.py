"""``cadence count``: count repetitions in each source, report as it goes, keep going past bad inputs."""

from __future__ import annotations

import argparse
import json
import operator
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tqdm import tqdm

from pipelines.drawing import AnnotatedVideoWriter, draw_count, draw_pose
from pipelines.errors import CadenceError, InputError
from pipelines.repetitions import CountUpdate, RepetitionCounting
from pipelines.video import LiveStream, read_camera, read_video

from actors.stages import is_camera

from .cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED

COUNT_TABLE = pa.schema([("feed", pa.string()), ("frame_index", pa.int64()), ("timestamp", pa.float64()),
                         ("count", pa.float64())])


class CountTable:
    """``--out``: every count update as rows of a Parquet file, written as they come.

    Rows go to ``NAME.partial`` first and the file takes its name when closed, so a reader never
    sees a half-written table; an interrupted run still keeps the counts it had made.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._writer = pq.ParquetWriter(self._partial, COUNT_TABLE)

    def write_batch(self, counts: pa.RecordBatch) -> None:
        self._writer.write_batch(pa.RecordBatch.from_arrays(
            [counts.column(name) for name in COUNT_TABLE.names], schema=COUNT_TABLE))

    def write_update(self, update: CountUpdate) -> None:
        self._writer.write_batch(pa.RecordBatch.from_pylist(
            [{"feed": update.source, "frame_index": update.frame_index, "timestamp": update.timestamp,
              "count": update.count}], schema=COUNT_TABLE))

    def close(self) -> None:
        self._writer.close()
        self._partial.replace(self.path)


def _open(source: str, live: bool):
    """The frame stream of one source, and its frame rate."""
    if is_camera(source):
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
               running: dict[str, float], table: CountTable | None) -> dict:
    """Count one source; return its JSON summary.  ``running`` holds its latest count meanwhile."""
    frames, fps = _open(source, args.live)
    bar.reset(total=operator.length_hint(frames) or None)
    bar.set_description(Path(source).name if not is_camera(source) else source)

    def on_update(update: CountUpdate) -> None:
        running[source] = update.count
        if table is not None:
            table.write_update(update)
        bar.set_postfix(count=f"{update.count:.2f}")
        if not args.json:
            bar.write(f"{source}: frame {update.frame_index + 1} ({update.timestamp:.1f} s): count {update.count:.2f}")

    writer = None
    if args.annotate:
        writer = AnnotatedVideoWriter(annotation_path(args.annotate, source, args.several), fps)

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


def read_feeds(path: str) -> list[str]:
    """``--feeds FILE``: one source per line; blank lines and lines starting with ``#`` are skipped,
    and relative file paths are taken from the file's own folder."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
    except OSError as e:
        raise InputError(path, f"cannot read the feeds file ({e.strerror})", "give a text file, one source per line")
    sources = []
    for line in map(str.strip, lines):
        if not line or line.startswith("#"):
            continue
        sources.append(line if is_camera(line) or Path(line).is_absolute() else str(file.parent / line))
    if not sources:
        raise InputError(path, "lists no sources", "write one video, camera index or URL per line")
    return sources


def _report(summary: dict, args: argparse.Namespace, bar: tqdm) -> None:
    if "error" in summary:
        bar.write(f"cadence count: error: {summary['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary), flush=True)
    elif "error" not in summary:
        dropped = f", {summary['frames_dropped']} dropped" if summary.get("frames_dropped") else ""
        bar.write(f"{summary['source']}: {summary['count']:.2f} repetitions in {summary['frames']} frames{dropped} "
                  f"({summary['seconds']:.1f} s of video, {summary['frames_per_second']} frames/s)")


def _interrupted(counts: dict[str, float], args: argparse.Namespace, bar: tqdm) -> int:
    for source, count in counts.items():
        bar.write(f"cadence count: interrupted; {source}: {count:.2f} repetitions so far", file=sys.stderr)
        if args.json:
            print(json.dumps({"source": source, "count": round(count, 3), "interrupted": True}), flush=True)
    return EXIT_INTERRUPTED


def count_sources(args: argparse.Namespace) -> int:
    stride = args.stride if args.stride is not None else (15 if args.live else args.window)
    if args.window < 1 or stride < 1:
        print("cadence count: --window and --stride must be whole numbers >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        sources = list(args.sources) + (read_feeds(args.feeds) if args.feeds else [])
    except InputError as e:
        print(f"cadence count: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not sources:
        print("cadence count: give at least one VIDEO, or --feeds FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    runner = args.runner or ("inline" if args.annotate else "ray")
    if runner == "ray" and args.annotate:
        print("cadence count: --annotate draws frames in this process; use it with --runner inline", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.several = len(sources) > 1
    table = CountTable(args.out) if args.out else None
    try:
        run = _count_inline if runner == "inline" else _count_on_ray
        return run(sources, args, stride, table)
    finally:
        if table is not None:
            table.close()


def _count_inline(sources: list[str], args: argparse.Namespace, stride: int, table: CountTable | None) -> int:
    """One source after another in this process."""
    job = RepetitionCounting(window=args.window, stride=stride, strategy=args.strategy)
    failures = 0
    running: dict[str, float] = {}
    with tqdm(total=None, unit="frame", leave=False, file=sys.stderr, disable=None) as bar:
        for source in sources:
            try:
                summary = _count_one(source, args, job, bar, running, table)
            except CadenceError as e:
                failures += 1
                summary = {"source": source, "error": str(e)}
            except KeyboardInterrupt:
                return _interrupted({source: running.get(source, 0.0)}, args, bar)
            _report(summary, args, bar)
    return EXIT_BAD_INPUT if failures else 0


def _count_on_ray(sources: list[str], args: argparse.Namespace, stride: int, table: CountTable | None) -> int:
    """All sources at once through the actor pipeline, on a local Ray or the cluster at --address."""
    from .connect import connected
    from .pipeline import CountingPipeline, PipelineSettings, feed_names

    settings = PipelineSettings(RepetitionCounting(window=args.window, stride=stride, strategy=args.strategy),
                                live=args.live, pose_actors=args.pose_actors)
    feeds = feed_names(sources)

    def on_update(update: CountUpdate) -> None:
        bar.set_postfix(count=f"{update.count:.2f}")
        if not args.json:
            bar.write(f"{update.source}: frame {update.frame_index + 1} ({update.timestamp:.1f} s): "
                      f"count {update.count:.2f}")

    with tqdm(total=None, unit="frame", leave=False, file=sys.stderr, disable=None) as bar, \
            connected(args.address) as cluster:
        bar.set_description(f"{len(feeds)} feed(s) on {cluster['address']} Ray ({cluster['cpus']} CPUs)")
        pipeline = CountingPipeline(feeds, settings)
        try:
            pipeline.start()
            results = pipeline.run(on_update, table.write_batch if table else None,
                                   on_frames=lambda _, n: bar.update(n))
        except KeyboardInterrupt:
            return _interrupted({r.feed: r.count for r in pipeline.results}, args, bar)
        finally:
            pipeline.close()
        for result in results:
            _report(result.summary(), args, bar)
    return EXIT_BAD_INPUT if any(r.error is not None for r in results) else 0
