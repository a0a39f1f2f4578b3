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
the manifest, so work starts at once and at most two tasks per CPU wait (a bounded queue).  A new
file in object storage is hashed by the task that reads it (one read, not two), and the driver
leaves out any whose content it has stored already.  The corpus's side (manifest, hashes, reading
ahead from object storage) is :mod:`cadence.cluster.audio.corpus`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cadence.pipelines.audio import AudioFeaturePrint, audio_from_bytes, clip_vector
from cadence.pipelines.errors import CadenceError, InputError

from cadence.cluster.audio.corpus import (  # noqa: F401 - read_manifest, default_sample_rate, content_hash: here too
    Durations, HashCache, content_hash, default_sample_rate, fetched, read_manifest)
from cadence.cluster.audio.store import CLIP, ERRORS, FeatureStore, ManifestRow, feature_schema


def extract_files(rows: Sequence[tuple[ManifestRow, str | None]], extractor: AudioFeaturePrint,
                  contents: Iterable[bytes | None | Exception] | None = None) -> tuple[pa.Table, pa.Table]:
    """Feature rows (every window, then the clip) of each file, and an error row per bad file.  Files
    in object storage are read ahead, a few at once (:func:`~.corpus.fetched`), unless ``contents``
    gives each file's bytes already read (as Ray Data reads them); a file without a hash (None) is
    hashed here, from the bytes it is read from."""
    schema = feature_schema(extractor.DIMENSION)
    out: dict[str, list] = {name: [] for name in schema.names}
    errors: dict[str, list] = {name: [] for name in ERRORS.names}
    contents = fetched(row.path for row, _ in rows) if contents is None else contents
    for (row, digest), data in zip(rows, contents):
        try:
            if isinstance(data, Exception):
                raise data
            if digest is None:
                digest = content_hash(row.path) if data is None else hashlib.sha256(data).hexdigest()
            source = row.path if data is None else audio_from_bytes(data, row.path, extractor.sample_rate)
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


def plan(manifest_rows: Sequence[ManifestRow], store: FeatureStore, cache: HashCache | None = None,
         skipped: Callable[[], None] = lambda: None,
         stored: set[str] | None = None) -> Iterator[tuple[ManifestRow, str | None]]:
    """The files still to extract, with their content hashes ("" when unreadable, None for a new file
    in object storage, hashed as it is extracted), as they are hashed (a generator: extraction starts
    before the whole corpus is read); ``skipped`` is called for each file whose content is already
    in the store (``stored``, read from it when not given) or listed twice."""
    done = set(store.hashes() if stored is None else stored)
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
        write = _Writer(store, cache, done, skip)
        todo = plan(rows, store, cache, skip, stored=write.written)
        if use_ray is None and _ray_connected():
            use_ray = True  # the caller joined a cluster for this
        elif use_ray is None:
            use_ray, todo = worth_ray(todo, ray_break_even(extractor.sample_rate, os.cpu_count() or 1),
                                      Durations(cache.stamps))
        summary.runner = "ray" if use_ray else "inline"
        try:
            _extract(todo, len(rows), use_ray, files_per_task, write)
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


def worth_ray(todo: Iterator[tuple[ManifestRow, str | None]], limit: float,
              durations: Callable[[str], float] | None = None) -> tuple[bool, Iterator]:
    """Whether the files still to extract hold more than ``limit`` seconds of audio (see
    :func:`ray_break_even`), looking only as far ahead as it takes to know (so a large corpus
    starts extracting at once); with the files still to extract, none lost."""
    import itertools

    from cadence.cluster.audio.corpus import Stamps

    durations = durations or Durations(Stamps())
    seen, seconds = [], 0.0
    for item in todo:
        seen.append(item)
        with contextlib.suppress(Exception):  # a bad file is reported when it is extracted
            seconds += durations(item[0].path)
        if seconds > limit:
            return True, itertools.chain(seen, todo)
    return False, iter(seen)


class _Writer:
    """The driver's side of extraction, the store's one writer: each shard's rows as a part, less any
    file whose content is stored already (a copy, found only once its task hashed it), and the
    hashes the tasks found kept in the cache."""

    def __init__(self, store: FeatureStore, cache: HashCache, done: Callable[[int, int, int], None],
                 skip: Callable[[], None]):
        self.store, self.cache, self.done, self.skip = store, cache, done, skip
        self.written = store.hashes()

    def __call__(self, rows: pa.Table, errors: pa.Table, files: int) -> None:
        paths, hashes = rows.column("path").to_pylist(), rows.column("content_hash").to_pylist()
        first: dict[str, str] = {}
        for path, digest in zip(paths, hashes):
            first.setdefault(digest, path)
        keep = [digest not in self.written and first[digest] == path for path, digest in zip(paths, hashes)]
        copies = len({path for path, kept in zip(paths, keep) if not kept})
        if copies:
            rows = rows.filter(pa.array(keep))
        for path, digest in set(zip(paths, hashes)):
            self.cache.learn(path, digest)
        self.written.update(hashes)
        self.store.write_part(rows, errors)
        for _ in range(copies):
            self.skip()
        self.done(rows.num_rows, errors.num_rows, files - copies)


def _extract(todo: Iterator, files: int, use_ray: bool, files_per_task: int | None, write: _Writer) -> None:
    """Extract the files of ``todo``: on Ray (the connected cluster, or a local one started for
    this), or in this process."""
    if not use_ray:
        for shard in _shards(todo, files_per_task or min(1024, max(16, files // 8))):
            table, errors = extract_files(shard, write.store.extractor)
            write(table, errors, len(shard))
        return
    from cadence.cluster.runtime.connect import connected

    with contextlib.nullcontext() if _ray_connected() else connected():
        size = files_per_task or min(1024, max(16, files // (8 * _cpus())))
        _extract_on_ray(_shards(todo, size), write)


def _ray_connected() -> bool:
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _extract_on_ray(shards: Iterator[list], write: _Writer) -> None:
    """Each shard extracted by a Ray task, which reads its audio by path or URI and hands the rows
    back: the driver alone writes the store, so nothing lands on a worker's disk and one writer
    holds the store's lock."""
    import ray

    @ray.remote(num_cpus=1, max_retries=3)
    def extract_shard(shard: list, extractor: AudioFeaturePrint) -> tuple[pa.Table, pa.Table, int]:
        rows, errors = extract_files(shard, extractor)
        return rows, errors, len(shard)

    def stored(ref) -> None:
        write(*ray.get(ref))

    limit = 2 * _cpus()  # tasks in flight: a bounded queue
    pending: list = []
    extractor = ray.put(write.store.extractor)
    for shard in shards:
        if len(pending) >= limit:
            ready, pending = ray.wait(pending, num_returns=1)
            stored(ready[0])
        pending.append(extract_shard.remote(shard, extractor))
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        stored(ready[0])
