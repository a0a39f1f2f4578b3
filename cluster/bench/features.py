"""``cadence bench features``: audio seconds per second of feature extraction (one process,
librosa, Ray, incremental), and the FSDD corpora the audio benchmarks and tests are made of."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

def fsdd_manifest(recordings: Path, path: Path,
                  is_test: Callable[[str, int], bool] = lambda speaker, index: index < 5) -> Path:
    """A manifest of FSDD's recordings at ``path``: ``path,label,split``, ``is_test(speaker, index)``
    choosing the test files (default: the standard split, recordings 0-4).  Paths are absolute (a
    manifest's paths are read relative to its own folder)."""
    rows = ["path,label,split"]
    for wav in sorted(recordings.resolve().glob("*.wav")):
        digit, speaker, index = wav.stem.split("_")
        rows.append(f"{wav},{digit},{'test' if is_test(speaker, int(index)) else 'train'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def tile_corpus(source: Path, folder: Path, hours: float = 0.0, seed: int = 0, copies: int = 0) -> tuple[Path, float]:
    """Write FSDD copies with random gain (0.5-1.5x) and a time shift (0-200 ms of quiet noise in
    front) until the corpus lasts ``hours`` (or holds ``copies`` copies); returns the manifest and
    the audio seconds."""
    import numpy as np
    import soundfile as sf

    originals = sorted(source.glob("*.wav"))
    if not originals:
        raise FileNotFoundError(f"no .wav files in {source}")
    clips = [(p, *sf.read(str(p), dtype="float32")) for p in originals]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, seconds, copy = ["path,label,split"], 0.0, 0
    while seconds < hours * 3600 or copy < copies:
        for path, samples, rate in clips:
            shift = np.zeros(int(rng.uniform(0, 0.2) * rate), np.float32) + rng.normal(0, 1e-3, 1).astype(np.float32)
            audio = np.clip(np.concatenate([shift, samples * rng.uniform(0.5, 1.5)]), -1, 1)
            name = f"{path.stem}_t{copy}.wav"
            sf.write(str(folder / name), audio, rate, subtype="PCM_16")
            digit, _, index = path.stem.split("_")
            rows.append(f"{name},{digit},{'test' if int(index) < 5 else 'train'}")
            seconds += len(audio) / rate
        copy += 1
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, seconds


def librosa_seconds(paths: list[str]) -> float | None:
    """What users usually write: librosa.load at the file's rate, then librosa.feature.mfcc."""
    import warnings

    try:
        import librosa
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short clips: "n_fft is too large" for every file
        y, rate = librosa.load(paths[0], sr=None)
        librosa.feature.mfcc(y=y, sr=rate, n_mfcc=20)  # warm-up: numba compiles on the first call
        started = time.perf_counter()
        for path in paths:
            y, rate = librosa.load(path, sr=None)
            librosa.feature.mfcc(y=y, sr=rate, n_mfcc=20)
        return time.perf_counter() - started


def bench_features(data: Path, hours: float, sample_rate: int, address: str | None, work: Path,
                   store_uri: str | None = None) -> dict:
    import shutil

    from cadence.pipelines.audio import AudioFeaturePrint, clip_vector

    from cadence.cluster.runtime.connect import connected
    from cadence.cluster.audio.features import extract_corpus, read_manifest

    extractor = AudioFeaturePrint(sample_rate=sample_rate)
    manifest = work / "corpus" / "manifest.csv"
    if manifest.exists():  # a corpus tiled by an earlier run with --work
        audio_seconds = sum(_duration(r.path) for r in read_manifest(manifest))
    else:
        manifest, audio_seconds = tile_corpus(data / "fsdd" / "recordings", work / "corpus", hours)
    rows = read_manifest(manifest)
    cut = int(len(rows) * 0.9)
    lines = manifest.read_text().splitlines()
    first = work / "corpus" / "first.csv"
    first.write_text("\n".join(lines[: cut + 1]) + "\n")  # 90% now, the last 10% added later
    figures: dict = {"files": len(rows), "audio_hours": round(audio_seconds / 3600, 2), "sample_rate": sample_rate}

    sample = [r.path for r in rows[:: max(1, len(rows) // 3000)]]  # a fixed subset for the one-process figures
    sample_seconds = sum(_duration(p) for p in sample)
    clip_vector(extractor.clip_features(sample[0]))  # warm-up, as for librosa
    started = time.perf_counter()
    for path in sample:
        clip_vector(extractor.clip_features(path))
    one = time.perf_counter() - started
    figures["one_process_x_realtime"] = round(sample_seconds / one)
    rosa = librosa_seconds(sample)
    figures["librosa_mfcc_x_realtime"] = None if rosa is None else round(sample_seconds / rosa)
    if rosa:
        figures["one_process_vs_librosa"] = round(rosa / one, 2)

    store, inline_store = work / "store", work / "store-one-process"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(inline_store, ignore_errors=True)
    first_seconds = sum(_duration(r.path) for r in rows[:cut])
    alone = extract_corpus(first, inline_store, extractor, use_ray=False)  # the same job, in this process
    figures["one_process_full_run"] = alone.to_dict() | {"x_realtime": round(first_seconds / alone.seconds)}
    shutil.rmtree(inline_store, ignore_errors=True)
    with connected(address) as cluster:
        full = extract_corpus(first, store, extractor)
        figures["ray_cpus"] = cluster["cpus"]
        figures["ray_full_run"] = full.to_dict() | {"x_realtime": round(first_seconds / full.seconds)}
        figures["ray_vs_one_process"] = round(alone.seconds / full.seconds, 2)
        again = extract_corpus(manifest, store, extractor)
        figures["incremental_run"] = again.to_dict()
        figures["incremental_share_of_full"] = round(again.seconds / full.seconds, 3)
        figures |= _with_ray_data(first, work / "store-ray-data", extractor, full)
        if store_uri:
            figures |= _into_uri(first, store_uri, extractor, full)
    return figures


def _with_ray_data(manifest: Path, store_root: Path, extractor, tasks) -> dict:
    """The same extraction as ``tasks`` (plain Ray tasks) through Ray Data instead: read_binary_files
    streams the files' bytes, map_batches extracts shards of them, and the driver writes each
    shard's rows as a part.  Its time and files per second, against the tasks'."""
    import shutil

    import ray

    from cadence.cluster.audio.features import ExtractionSummary, extract_files, read_manifest
    from cadence.cluster.audio.store import ERRORS, FeatureStore

    rows = read_manifest(manifest)
    labelled = ray.put({r.path: (r.label, r.split) for r in rows})
    shutil.rmtree(store_root, ignore_errors=True)
    store = FeatureStore(store_root, extractor).create()
    summary, started = ExtractionSummary(runner="ray data"), time.perf_counter()

    def extract(batch: dict):
        import hashlib

        from cadence.cluster.audio.store import ManifestRow

        labels = ray.get(labelled)
        shard = [(ManifestRow(p, *labels[p]), hashlib.sha256(b).hexdigest())
                 for p, b in zip(batch["path"], batch["bytes"])]
        table, _ = extract_files(shard, extractor, contents=list(batch["bytes"]))  # the bench's files are all good
        return table

    size = min(1024, max(16, len(rows) // (8 * int(ray.cluster_resources().get("CPU", 1)))))
    data = ray.data.read_binary_files([r.path for r in rows], include_paths=True)
    for part in data.map_batches(extract, batch_size=size, batch_format="numpy").iter_batches(
            batch_size=None, batch_format="pyarrow"):
        store.write_part(part, ERRORS.empty_table())
        summary.extracted += len(set(part.column("content_hash").to_pylist()))
    summary.seconds = time.perf_counter() - started
    shutil.rmtree(store_root, ignore_errors=True)
    per_second = round(summary.extracted / summary.seconds, 1)
    return {"ray_data_full_run": summary.to_dict() | {"files_per_second": per_second},
            "ray_data_vs_tasks": round(tasks.seconds / summary.seconds, 2)}


def _into_uri(manifest: Path, store_uri: str, extractor, local) -> dict:
    """The Ray run of ``manifest`` again, into a fresh store under ``store_uri`` (removed after): its
    files per second against ``local``'s (the same run into a local folder)."""
    import uuid

    from cadence.pipelines.storage import Location, check_reachable

    from cadence.cluster.audio.features import extract_corpus

    check_reachable(store_uri, "--store")
    where = Location.of(store_uri) / f"cadence-bench-{uuid.uuid4().hex[:8]}"
    try:
        run = extract_corpus(manifest, where, extractor)
    finally:
        where.filesystem.delete_dir(where.fs_path)
    per_second = run.extracted / run.seconds
    return {"uri_full_run": run.to_dict() | {"files_per_second": round(per_second, 1)},
            "local_files_per_second": round(local.extracted / local.seconds, 1),
            "uri_vs_local_folder": round(per_second / (local.extracted / local.seconds), 2)}


def _duration(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate
