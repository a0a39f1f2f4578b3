"""``cadence features``: extract a corpus into a feature store once, on all cores, never twice.

A store (:mod:`cadence.cluster.audio.store`) is a folder of Parquet parts under
``ROOT/<extractor fingerprint>/``: features made by any
other extractor (another class, parameter or version) live elsewhere and are never mixed in.
Each part holds every row of a set of whole files and appears atomically (written under a hidden
name, then renamed), and its name is derived from the files it holds, so a part written twice (a
retried task) replaces itself.  A run that is killed leaves only whole parts; the next run skips
every file whose content hash is in them and extracts the rest.

The store, the manifest and the audio files may be URIs of object storage (``s3://...``): every
node reads its audio by URI, and writes nothing to its own disk.

Extraction runs as plain Ray tasks, one per shard of files, each handing its rows back to the
driver, which alone writes the store (one writer, holding the store's lock, on any filesystem):
each shard becomes exactly one part, written atomically under a name derived from its files, which
is what makes retries and re-runs idempotent; and the driver hashes and submits shards as it reads
the manifest, so work starts at once and at most two tasks per CPU wait (a bounded queue).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cadence.pipelines.audio import (HIGHEST_FEATURE_RATE, AudioFeaturePrint, audio_from_bytes, audio_info,
                                     clip_vector, feature_rate)
from cadence.pipelines.errors import CadenceError, InputError
from cadence.pipelines.storage import Location, is_uri

from cadence.cluster.audio.store import CLIP, ERRORS, FeatureStore, ManifestRow, feature_schema

def read_manifest(manifest: str | os.PathLike) -> list[ManifestRow]:
    """``path,label[,split]`` with a header; the manifest and its paths may be URIs, and relative
    paths resolve against the manifest's own folder (or bucket prefix)."""
    m = Location.of(manifest)
    try:
        text = m.read_text()
    except FileNotFoundError:
        raise InputError(m, m.missing(), "give a CSV file with path,label[,split]") from None
    except OSError as e:
        raise InputError(m, f"cannot be read ({e.strerror or e})", "give a CSV file with path,label[,split]") from e
    except UnicodeDecodeError as e:
        raise InputError(m, f"is not a readable CSV file ({e})") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = set(reader.fieldnames or [])
        if not {"path", "label"} <= fields:
            raise InputError(m, f"has columns {sorted(fields)}", "the header must be path,label[,split]")
        rows = [_manifest_row(m, reader, r) for r in reader]
    except csv.Error as e:
        raise InputError(m, f"is not a readable CSV file ({e})") from e
    if not rows:
        raise InputError(m, "lists no files", "add one line per audio file: path,label[,split]")
    return rows


def _manifest_row(manifest: Location, reader: csv.DictReader, r: dict) -> ManifestRow:
    if not (r["path"] or "").strip() or not (r["label"] or "").strip():
        lacking = "path" if not (r["path"] or "").strip() else "label"
        raise InputError(manifest, f"line {reader.line_num} has no {lacking}"
                                   f" ({','.join(str(v) for v in r.values() if v is not None)[:60]!r})",
                         "every line needs path,label[,split]; quote a field holding a comma")
    return ManifestRow(str(manifest.resolve(r["path"])), r["label"].strip(), (r.get("split") or "train").strip())


def default_sample_rate(rows: Sequence[ManifestRow], root: str | os.PathLike, window_duration: float,
                        overlap_factor: float, looked_at: int = 1000) -> tuple[int, str]:
    """The rate to extract at when none is given, and why.

    A store already under ``root`` for these windows keeps its rate (so a re-run adds to it).
    Otherwise the rate follows the files as in the Python API (:func:`feature_rate`: the highest,
    at most 16 kHz), read from the headers of ``looked_at`` files spread over the manifest.
    """
    kept = []
    for folder in Location.of(root).folders():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            params = json.loads((folder / "extractor.json").read_text())["params"]
            if params["window_duration"] == window_duration and params["overlap_factor"] == overlap_factor:
                kept.append(int(params["sample_rate"]))
    if len(set(kept)) == 1:
        return kept[0], f"the rate of the store already in {root}"
    step = max(1, len(rows) // looked_at)
    rates = []
    for row in rows[::step]:
        with contextlib.suppress(Exception):  # a bad file is reported when it is extracted
            rates.append(int(audio_info(row.path).samplerate))
    rate = feature_rate(rates)
    if not rates:
        return rate, "the default (no file's rate could be read)"
    if max(rates) > rate:
        return rate, f"the most features use (files at up to {max(rates)} Hz)"
    return rate, f"the files' own rate ({HIGHEST_FEATURE_RATE} Hz is the most features use; resampling up adds nothing)"


def content_hash(path: str) -> str:
    """SHA-256 of the file's bytes (a path or a URI, read in chunks)."""
    digest = hashlib.sha256()
    where = Location.of(path)
    with (where.filesystem.open_input_stream(where.fs_path) if where.remote else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: str) -> tuple[int, int]:
    """(size, modification time) of a file, a path or a URI; OSError when there is none."""
    if not is_uri(path):
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    stamp = Location.of(path).stamp()
    if stamp is None:
        raise FileNotFoundError(path)
    return stamp


def extract_files(rows: Sequence[tuple[ManifestRow, str]], extractor: AudioFeaturePrint,
                  contents: Sequence[bytes] | None = None) -> tuple[pa.Table, pa.Table]:
    """Feature rows (every window, then the clip) of each file, and an error row per bad file; with
    ``contents``, each file's bytes, already read (as Ray Data reads them)."""
    schema = feature_schema(extractor.DIMENSION)
    out: dict[str, list] = {name: [] for name in schema.names}
    errors: dict[str, list] = {name: [] for name in ERRORS.names}
    for k, (row, digest) in enumerate(rows):
        try:
            source = row.path if contents is None else audio_from_bytes(contents[k], row.path, extractor.sample_rate)
            features = extractor.clip_features(source)
            if not features:
                raise InputError(row.path, "gave no audio window")
            clip = (CLIP, 0.0, sum(f.duration for f in features), clip_vector(features))
        except Exception as e:  # noqa: BLE001 - whatever one file raises costs that file alone
            message = str(e) if isinstance(e, CadenceError) else f"{row.path}: {type(e).__name__}: {e}"
            for name, value in zip(ERRORS.names, (row.path, digest or None, message, int(time.time()))):
                errors[name].append(value)
            continue
        for index, start, duration, vector in [(f.index, f.start_time, f.duration, f.vector) for f in features] + [clip]:
            for name, value in zip(schema.names, (row.path, digest, row.label, row.split, index, start, duration,
                                                  vector)):
                out[name].append(value)
    vectors = np.stack(out.pop("vector")) if out["path"] else np.zeros((0, extractor.DIMENSION), np.float32)
    arrays = [pa.array(out[name], schema.field(name).type) for name in schema.names[:-1]]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), extractor.DIMENSION))
    return pa.Table.from_arrays(arrays, schema=schema), pa.Table.from_pydict(errors, schema=ERRORS)


@dataclass
class ExtractionSummary:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    store: str = ""
    runner: str = "inline"  # or "ray"

    def to_dict(self) -> dict:
        return {"extracted": self.extracted, "skipped": self.skipped, "failed": self.failed,
                "seconds": round(self.seconds, 3), "store": self.store, "runner": self.runner}


class HashCache:
    """Content hashes by (path, size, modification time), kept in the store, so a re-run reads only
    new or changed files instead of hashing the whole corpus again."""

    SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                        ("content_hash", pa.string())])

    def __init__(self, store: FeatureStore):
        self.file = store.path / "hashes.parquet"
        self.known: dict[tuple, str] = {}
        if self.file.exists():
            try:
                t = pq.read_table(self.file.fs_path, schema=self.SCHEMA, filesystem=self.file.filesystem).to_pydict()
            except (pa.ArrowInvalid, OSError) as e:  # only a cache: hash the files again, and write it anew
                warnings.warn(f"{self.file}: unreadable ({e}); the files are hashed again and it is rewritten",
                              stacklevel=2)
                return
            self.known = {(p, s, m): h for p, s, m, h in zip(t["path"], t["size"], t["mtime_ns"], t["content_hash"])}

    def digest(self, path: str) -> str:
        """The file's content hash; "" when it cannot be read (extraction then names the problem)."""
        try:
            key = (path, *_stamp(path))
            if key not in self.known:
                self.known[key] = content_hash(path)
            return self.known[key]
        except (OSError, InputError):
            return ""

    def save(self) -> None:
        keys = list(self.known)
        table = pa.table({"path": [k[0] for k in keys], "size": [k[1] for k in keys],
                          "mtime_ns": [k[2] for k in keys], "content_hash": list(self.known.values())},
                         schema=self.SCHEMA)
        self.file.write_parquet(table)


def plan(manifest_rows: Sequence[ManifestRow], store: FeatureStore, cache: HashCache | None = None,
         skipped: Callable[[], None] = lambda: None) -> Iterator[tuple[ManifestRow, str]]:
    """The files still to extract, with their content hashes ("" when unreadable), as they are hashed
    (a generator: extraction starts before the whole corpus is read); ``skipped`` is called for each
    file whose content is already in the store or listed twice."""
    done = store.hashes()
    cache = cache or HashCache(store)
    for row in manifest_rows:
        digest = cache.digest(row.path)
        if digest and digest in done:
            skipped()
            continue
        if digest:
            done.add(digest)
        yield row, digest


def _shards(todo: Iterator, size: int) -> Iterator[list]:
    shard: list = []
    for item in todo:
        shard.append(item)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


def extract_corpus(manifest: str | os.PathLike | Sequence[ManifestRow], store_root: str | os.PathLike,
                   extractor: AudioFeaturePrint | None = None, files_per_task: int | None = None,
                   use_ray: bool | None = None, progress: Callable[[int], None] | None = None) -> ExtractionSummary:
    """Extract every file of the manifest (a path, or its rows already read) not yet in the store:
    on Ray (the connected cluster, else a local one) with ``use_ray=True``, in this process with
    False, and by default on Ray only when the new files hold enough audio to win back its start
    (:func:`worth_ray`).  ``files_per_task`` defaults to an eighth of the files per CPU (16 to
    1024): few, large parts, and still a task queue to balance."""
    started = time.perf_counter()
    rows = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    extractor = extractor or AudioFeaturePrint()
    if extractor.sample_rate is None:  # the rule of the Python API, over the whole corpus
        rate, _ = default_sample_rate(rows, store_root, extractor.window_duration, extractor.overlap_factor)
        extractor = AudioFeaturePrint(**{**extractor.get_params(), "sample_rate": rate})
    store = FeatureStore(store_root, extractor).create()
    summary = ExtractionSummary(store=str(store.path))

    def skip() -> None:
        summary.skipped += 1
        if progress:
            progress(1)

    def done(rows: int, failed: int, files: int) -> None:
        summary.extracted += files - failed
        summary.failed += failed
        if progress:
            progress(files)

    with store.writing():
        cache = HashCache(store)
        todo = plan(rows, store, cache, skip)
        if use_ray is None and _ray_connected():
            use_ray = True  # the caller joined a cluster for this
        elif use_ray is None:
            use_ray, todo = worth_ray(todo, ray_break_even(extractor.sample_rate, os.cpu_count() or 1))
        summary.runner = "ray" if use_ray else "inline"
        try:
            _extract(todo, store, len(rows), use_ray, files_per_task, done)
        finally:
            cache.save()
        store.write_labels([(row, cache.digest(row.path)) for row in rows])  # the labels follow this manifest
    summary.seconds = time.perf_counter() - started
    return summary


# Ray pays off once the audio to extract is long enough to win back its start.  Measured on 2 CPUs:
# `cadence features` on 12 files took 5.2 s on a local Ray against 0.8 s in this process (`cadence
# bench startup`); one process extracts 1,200 times real time at 8 kHz, and Ray on 2 CPUs 1.77 times
# one process (`cadence bench features`), so N CPUs reach about 0.88 x N of it.
RAY_START_SECONDS, ONE_PROCESS_SPEED, RAY_EFFICIENCY = 5.0, 1200.0, 0.88


def ray_break_even(sample_rate: int, cpus: int) -> float:
    """Seconds of audio above which extracting on a local Ray of ``cpus`` CPUs ends sooner than
    in this process, start-up included (infinite on one CPU)."""
    gain = 1 - 1 / (RAY_EFFICIENCY * cpus)  # the share of the one-process time Ray saves
    if gain <= 0:
        return float("inf")
    return RAY_START_SECONDS / gain * ONE_PROCESS_SPEED * 8000 / sample_rate


def worth_ray(todo: Iterator[tuple[ManifestRow, str]], limit: float) -> tuple[bool, Iterator]:
    """Whether the files still to extract hold more than ``limit`` seconds of audio (see
    :func:`ray_break_even`), looking only as far ahead as it takes to know (so a large corpus
    starts extracting at once); with the files still to extract, none lost."""
    import itertools

    seen, seconds = [], 0.0
    for item in todo:
        seen.append(item)
        with contextlib.suppress(Exception):  # a bad file is reported when it is extracted
            info = audio_info(item[0].path)
            seconds += info.frames / info.samplerate
        if seconds > limit:
            return True, itertools.chain(seen, todo)
    return False, iter(seen)


def _extract(todo: Iterator, store: FeatureStore, files: int, use_ray: bool, files_per_task: int | None,
             done: Callable[[int, int, int], None]) -> None:
    """Extract the files of ``todo``: on Ray (the connected cluster, or a local one started for
    this), or in this process."""
    if not use_ray:
        for shard in _shards(todo, files_per_task or min(1024, max(16, files // 8))):
            table, errors = extract_files(shard, store.extractor)
            store.write_part(table, errors)
            done(table.num_rows, errors.num_rows, len(shard))
        return
    from cadence.cluster.runtime.connect import connected

    with contextlib.nullcontext() if _ray_connected() else connected():
        size = files_per_task or min(1024, max(16, files // (8 * _cpus())))
        _extract_on_ray(_shards(todo, size), store, done)


def _ray_connected() -> bool:
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _extract_on_ray(shards: Iterator[list], store: FeatureStore, done: Callable[[int, int, int], None]) -> None:
    """Each shard extracted by a Ray task, which reads its audio by path or URI and hands the rows
    back: the driver alone writes the store, so nothing lands on a worker's disk and one writer
    holds the store's lock."""
    import ray

    @ray.remote(num_cpus=1, max_retries=3)
    def extract_shard(shard: list, extractor: AudioFeaturePrint) -> tuple[pa.Table, pa.Table, int]:
        rows, errors = extract_files(shard, extractor)
        return rows, errors, len(shard)

    def stored(ref) -> None:
        rows, errors, files = ray.get(ref)
        store.write_part(rows, errors)
        done(rows.num_rows, errors.num_rows, files)

    limit = 2 * _cpus()  # tasks in flight: a bounded queue
    pending: list = []
    extractor = ray.put(store.extractor)
    for shard in shards:
        if len(pending) >= limit:
            ready, pending = ray.wait(pending, num_returns=1)
            stored(ready[0])
        pending.append(extract_shard.remote(shard, extractor))
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        stored(ready[0])
