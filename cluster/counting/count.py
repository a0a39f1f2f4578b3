"""``cadence count``: count repetitions in each source, report as it goes, keep going past bad inputs.

Two runners of the same job (:class:`~cadence.pipelines.repetitions.RepetitionCounting`): ``ray``
(the default) counts every source at once through the actor pipeline, on a local Ray or a cluster;
``inline`` counts one source after another in this process and never imports Ray.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cadence.actors.schemas import REPETITION
from cadence.pipelines.drawing import write_annotated
from cadence.pipelines.errors import CadenceError, InputError
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.results import CountResult, CountUpdate
from cadence.pipelines.storage import Location, check_writable_folder, is_uri
from cadence.pipelines.video import is_camera, open_source, shown

COUNT_TABLE = pa.schema([("feed", pa.string()), ("frame_index", pa.int64()), ("timestamp", pa.float64()),
                         ("count", pa.float64()), ("people", pa.map_(pa.string(), pa.float64())),
                         ("pose_coverage", pa.float64()), ("reliability", pa.float64())])
# a repetition as the pipeline carries it (actors.schemas.REPETITION), with its feed and duration
REPETITION_TABLE = pa.schema([("feed", pa.string()), *(f for f in REPETITION if f.name != "confidence"),
                              ("duration", pa.float64()), REPETITION.field("confidence")])


class _PartialParquet:
    """Rows written as they come, each batch a whole Parquet file in ``NAME.parts/`` (every ``group``
    rows, or ``seconds`` after the first unwritten one), so a run killed outright still leaves every
    batch written readable; closing joins the parts into ``NAME`` and removes the folder.  ``path``
    may be a URI (``s3://...``): the parts are objects under ``NAME.parts/`` there."""

    def __init__(self, path: Location, schema: pa.Schema, group: int = 256, seconds: float = 2.0):
        self.path, self.schema, self.group, self.seconds = path, schema, group, seconds
        self.parts = path.parent / (path.name + ".parts")
        if self.parts.files("part-"):
            raise InputError(self.parts, "holds the rows of an earlier run that was killed",
                             f"read them (pyarrow.dataset.dataset('{self.parts}'), or DuckDB's "
                             f"read_parquet('{self.parts}/*.parquet')), then delete the folder")
        self.parts.make_folder()
        self._rows: list[dict] = []
        self._since = 0.0
        self._written = 0

    def write(self, rows: list[dict]) -> None:
        if rows and not self._rows:
            self._since = time.monotonic()
        self._rows += rows
        if len(self._rows) >= self.group or (self._rows and time.monotonic() - self._since >= self.seconds):
            self.flush()

    def flush(self) -> None:
        if self._rows:
            (self.parts / f"part-{self._written:06d}.parquet").write_parquet(
                pa.Table.from_pylist(self._rows, schema=self.schema))
            self._written += 1
            self._rows = []

    def close(self) -> None:
        self.flush()
        files = self.parts.files("part-", ".parquet")
        table = pa.concat_tables([pq.read_table(f.fs_path, schema=self.schema, filesystem=f.filesystem)
                                  for f in files]) if files else self.schema.empty_table()
        self.path.write_parquet(table)
        for f in files:
            f.delete()
        self.parts.delete_folder()


def _items(people: dict[str, float] | None) -> list[tuple[str, float]] | None:
    return None if people is None else list(people.items())


class CountTable:
    """``--out FILE``: every count update as rows of FILE (feed, frame_index, timestamp, count, with
    --per-person each person's count, and the feed's pose_coverage and reliability so far), and
    every counted repetition as rows of FILE-repetitions (feed, index, start and end frame and time,
    duration, confidence), written as they come."""

    def __init__(self, path: str | Path):
        self.path = Location.of(path)
        self.repetitions_path = self.path.beside(f"-repetitions{self.path.suffix or '.parquet'}")
        self._counts = _PartialParquet(self.path, COUNT_TABLE)
        self._repetitions = _PartialParquet(self.repetitions_path, REPETITION_TABLE)

    def write(self, updates: list[CountUpdate]) -> None:
        self._counts.write([{name: getattr(u, name) for name in COUNT_TABLE.names} | {"people": _items(u.people)}
                            for u in updates])
        self._repetitions.write([{"feed": r.feed, **r.to_dict()} for u in updates for r in u.repetitions])

    def close(self) -> None:
        self._counts.close()
        self._repetitions.close()


def read_feeds(path: str) -> list[tuple[str, dict[str, str]]]:
    """``--feeds FILE``: one source per line, each optionally followed by ``label:KEY=VALUE`` words
    (the Ray node labels its node must carry); blank lines and lines starting with ``#`` are
    skipped, and relative file paths are taken from the file's own folder."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
    except OSError as e:
        raise InputError(path, f"cannot read the feeds file ({e.strerror})", "give a text file, one source per line")
    feeds = []
    for number, line in enumerate(map(str.strip, lines), start=1):
        if not line or line.startswith("#"):
            continue
        source, labels = _labelled(line, f"{path}, line {number}")
        feeds.append((source if is_camera(source) or Path(source).is_absolute() else str(file.parent / source), labels))
    if not feeds:
        raise InputError(path, "lists no sources", "write one video, camera index or URL per line")
    return feeds


def _labelled(line: str, where: str) -> tuple[str, dict[str, str]]:
    """A feeds line's source and the node labels after it (``SOURCE label:site=gym label:floor=2``)."""
    source, labels = re.fullmatch(r"(.*?)((?:\s+label:\S*)*)", line).groups()
    found = {}
    for word in labels.split():
        key, equals, value = word[len("label:"):].partition("=")
        if not (key and equals and value):
            raise InputError(where, f"{word!r} is not a node label", "write label:KEY=VALUE, e.g. label:site=gym")
        found[key] = value
    return source, found


def annotation_path(out: str, source: str, several: bool) -> Path:
    out_path = Path(out)
    if not several:
        return out_path
    return out_path.with_name(f"{out_path.stem}-{Path(source).stem}{out_path.suffix or '.mp4'}")


class _Report:
    """What the user sees: a progress bar, running counts (or nothing but JSON), summaries."""

    def __init__(self, args: argparse.Namespace, bar: tqdm, emit: Callable[[str], None]):
        self.args, self.bar, self.emit = args, bar, emit

    def update(self, update: CountUpdate) -> None:
        self.bar.set_postfix(count=f"{update.count:.2f}")
        if not self.args.json:
            people = "".join(f", person {p} {c:.2f}" for p, c in (update.people or {}).items())
            self.bar.write(f"{update.feed}: frame {update.frame_index} ({update.timestamp:.1f} s): "
                           f"count {update.count:.2f}{people}")

    def result(self, result: CountResult) -> None:
        summary = result.summary()
        if "error" in summary:
            self.bar.write(f"cadence count: error: {summary['error']}", file=sys.stderr)
        for warning in summary.get("warnings", []):
            self.bar.write(f"cadence count: warning: {warning}", file=sys.stderr)
        if self.args.json:
            self.emit(json.dumps(summary))
        elif "error" not in summary:
            dropped = f", {summary['frames_dropped']} dropped" if summary["frames_dropped"] else ""
            self.bar.write(f"{summary['source']}: {summary['count']:.2f} repetitions in {summary['frames']} frames"
                           f"{dropped} ({summary['seconds']:.1f} s of video, {summary['frames_per_second']} frames/s)")

    def interrupted(self, counts: dict[str, float]) -> None:
        for source, count in counts.items():
            self.bar.write(f"cadence count: interrupted; {source}: {count:.2f} repetitions so far", file=sys.stderr)
            if self.args.json:
                self.emit(json.dumps({"source": source, "count": round(count, 3), "interrupted": True}))


def default_runner(sources: list[str], args: argparse.Namespace, labels: dict) -> str:
    """Ray when the work needs it: several sources (counted at once), a cluster (--address or
    $RAY_ADDRESS), feeds placed by node labels, or --pose-actors; else inline: one source on this
    machine counts sooner in this process than Ray starts (a 3 s clip: 5 s against 20 s on a busy
    2-core machine), and with --annotate, which draws in this process."""
    import os

    if args.annotate:
        return "inline"
    needs_ray = len(sources) > 1 or args.address or os.environ.get("RAY_ADDRESS") or labels or args.pose_actors
    return "ray" if needs_ray else "inline"


def count_sources(args: argparse.Namespace, job: RepetitionCounting, emit: Callable[[str], None] = print) -> bool:
    """Count every source of ``args`` with ``job``; True when each one was counted.  ``emit``
    writes each line of the documented output (with ``--json``, the JSON objects)."""
    listed = read_feeds(args.feeds) if args.feeds else []
    sources = list(args.sources) + [source for source, _ in listed]
    labels = {source: labels for source, labels in listed if labels}
    if not sources:
        raise InputError("VIDEO", "none given", "give at least one video file, camera or stream URL, or --feeds FILE")
    runner = args.runner or default_runner(sources, args, labels)
    if runner == "inline" and labels:
        raise InputError(args.feeds, "gives node labels, which place feeds on Ray nodes", "leave out --runner inline")
    if runner == "ray" and args.annotate:
        raise InputError("--annotate", "draws frames in this process", "use it with --runner inline")
    if args.annotate and args.live:
        raise InputError("--annotate", "reads each video twice", "leave out --live to annotate")
    if args.annotate and is_uri(args.annotate):
        raise InputError(args.annotate, "(--annotate) is a URI: the annotated video is written on this machine",
                         "give a local path, and copy the file where it should go")
    for option, path in (("--out", args.out), ("--annotate", args.annotate)):
        if path:
            check_writable_folder(path, option)
    table = CountTable(args.out) if args.out else None
    try:
        with tqdm(total=None, unit="frame", leave=False, file=sys.stderr, disable=None) as bar:
            run = _count_inline if runner == "inline" else _count_on_ray
            results = run(sources, job, args, _Report(args, bar, emit), table, labels)
    finally:
        if table is not None:
            table.close()
    return all(r.error is None for r in results)


def _count_inline(sources: list[str], job: RepetitionCounting, args: argparse.Namespace, report: _Report,
                  table: CountTable | None, labels: dict | None = None) -> list[CountResult]:
    """One source after another in this process."""
    results: list[CountResult] = []
    latest: dict[str, float] = {}

    def on_update(update: CountUpdate) -> None:
        latest[update.feed] = update.count
        if table is not None:
            table.write([update])
        report.update(update)

    for source in sources:
        annotate = annotation_path(args.annotate, source, len(sources) > 1) if args.annotate else None
        name = shown(source)  # what the output says: a URL without its password
        try:
            frames = open_source(source, args.live)
            report.bar.reset(total=operator.length_hint(frames) or None)
            report.bar.set_description(name if is_camera(source) else Path(source).name)
            result = _count_one(job, name, frames, report, on_update, annotate)
        except CadenceError as e:
            result = CountResult(name, name, error=e)
        except KeyboardInterrupt:
            report.interrupted({name: latest.get(name, 0.0)})
            raise
        report.result(result)
        results.append(result)
    return results


def _count_one(job: RepetitionCounting, source: str, frames, report: _Report,
               on_update: Callable[[CountUpdate], None], annotate: Path | None) -> CountResult:
    """One source; with ``annotate``, then a second pass writing its frames with the followed
    skeleton and the count stepping up where each repetition ended."""
    poses: dict = {}  # by frame index: with --rate, only the frames posed

    def on_frame(frame, pose, count) -> None:
        report.bar.update(1)
        if annotate:
            poses[frame.index] = pose

    result = job.run(frames, source=source, on_update=on_update, on_frame=on_frame)
    if annotate:
        write_annotated(annotate, open_source(source), poses, [r.end_frame for r in result.repetitions], frames.fps)
    return result


def _count_on_ray(sources: list[str], job: RepetitionCounting, args: argparse.Namespace, report: _Report,
                  table: CountTable | None, labels: dict[str, dict[str, str]]) -> list[CountResult]:
    """All sources at once through the actor pipeline, on a local Ray or the cluster at --address,
    each feed on one node (one carrying its labels, if it has any)."""
    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings, feed_names

    settings = PipelineSettings(job, pose_actors=args.pose_actors)
    feeds = feed_names(sources)
    with connected(args.address) as cluster:
        report.bar.set_description(f"{len(feeds)} feed(s) on {cluster['address']} Ray ({cluster['nodes']} "
                                   f"node(s), {cluster['cpus']} CPUs)")
        pipeline = CountingPipeline(feeds, settings, {name: labels[src] for name, src in feeds.items() if src in labels})
        try:
            pipeline.start()
            def on_update(update: CountUpdate) -> None:
                if table is not None:
                    table.write([update])
                report.update(update)

            results = pipeline.run(on_update, on_frames=lambda _, n: report.bar.update(n))
        except KeyboardInterrupt:
            report.interrupted({r.feed: r.count for r in pipeline.results})
            raise
        finally:
            pipeline.close()
    for result in results:
        report.result(result)
    return results
