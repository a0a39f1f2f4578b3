"""The feature store and ``cadence features``: incremental, bad files in the errors table, kill-safe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cadence.cluster.audio.features import content_hash, extract_corpus, read_manifest
from cadence.cluster.audio.store import FeatureStore
from cadence.pipelines.audio import AudioFeaturePrint
from cadence.pipelines.errors import InputError

from .helpers import CADENCE, FSDD, ROOT, corpus, names

FSDD_FEATURES = AudioFeaturePrint(sample_rate=8000)  # what extraction makes of FSDD by default: its own rate

def stored_hashes(store: FeatureStore) -> list[str]:
    return store.table(columns=["content_hash"]).column("content_hash").to_pylist()


def test_rerun_extracts_nothing_and_new_files_only_are_extracted(tmp_path):
    first = names(40)
    manifest = corpus(tmp_path / "audio", first)
    summary = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (summary.extracted, summary.skipped, summary.failed) == (40, 0, 0)
    again = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (again.extracted, again.skipped) == (0, 40)
    manifest = corpus(tmp_path / "audio", first + names(20, start=4))
    more = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (more.extracted, more.skipped) == (20, 40)
    store = FeatureStore(tmp_path / "store", FSDD_FEATURES)
    hashes = stored_hashes(store)
    assert len(hashes) == len(set(hashes)) == 60  # one clip row per file, each file once
    assert store.count_rows(level="window") >= 60 and set(store.table(columns=["split"]).column("split").to_pylist()) \
        == {"train", "test"}


@pytest.mark.slow
def test_a_corrupt_part_is_named_with_its_repair_and_a_corrupt_hash_cache_is_rebuilt(tmp_path):
    manifest = corpus(tmp_path / "audio", names(20))
    extract_corpus(manifest, tmp_path / "store", files_per_task=10, use_ray=False)
    store = FeatureStore(tmp_path / "store", FSDD_FEATURES)
    parts = sorted(store.path.local().glob("part-*.parquet"))
    assert len(parts) == 2
    parts[0].write_bytes(parts[0].read_bytes()[:300])  # cut short, as a full disk would leave it
    command = [*CADENCE, "features", str(manifest), "--store", str(tmp_path / "store"), "--inline", "--json"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert parts[0].name in run.stderr and "delete it" in run.stderr
    parts[0].unlink()
    (store.path.local() / "hashes.parquet").write_bytes(b"not parquet")
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "hashes.parquet" in run.stderr, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert (summary["extracted"], summary["skipped"]) == (10, 10)  # only the lost part's files again
    assert len(set(stored_hashes(FeatureStore(tmp_path / "store", FSDD_FEATURES)))) == 20


def test_ray_starts_only_when_the_audio_to_extract_is_worth_its_start(tmp_path):
    from cadence.cluster.audio.features import plan, ray_break_even, worth_ray

    assert ray_break_even(8000, 1) == float("inf")  # one CPU: Ray never pays
    assert ray_break_even(8000, 2) > ray_break_even(8000, 16) > ray_break_even(16000, 16) > 0
    manifest = corpus(tmp_path / "audio", names(20))  # about 9 s of speech
    store = FeatureStore(tmp_path / "store", FSDD_FEATURES).create()
    everything = list(plan(read_manifest(manifest), store))
    busy, todo = worth_ray(iter(everything), limit=2.0)
    assert busy and list(todo) == everything  # decided after a few files, none lost, in order
    idle, todo = worth_ray(iter(everything), limit=ray_break_even(8000, 2))
    assert not idle and list(todo) == everything
    run = subprocess.run([*CADENCE, "features", str(manifest), "--store", str(tmp_path / "store"), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["runner"] == "inline" and summary["extracted"] == 20  # no Ray started for seconds of audio


def test_the_store_follows_edits_to_the_manifest_without_extracting_again(tmp_path):
    manifest = corpus(tmp_path / "audio", names(10))
    extract_corpus(manifest, tmp_path / "store", use_ray=False)
    lines = manifest.read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    relabelled, (moved, _, old_split), removed = rows[0][0], rows[1], rows[-1][0]
    new_split = "train" if old_split == "test" else "test"
    edited = []
    for path, label, split in rows:
        if path == removed:
            continue
        edited.append(f"{path},{'nine' if path == relabelled else label},{new_split if path == moved else split}")
    manifest.write_text("\n".join([header, *edited]) + "\n")
    again = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (again.extracted, again.skipped) == (0, 9)
    store = FeatureStore(tmp_path / "store", FSDD_FEATURES)
    by_path = {Path(p).name: (label, split) for p, label, split in zip(
        *store.table(columns=["path", "label", "split"]).to_pydict().values())}
    assert len(by_path) == 9 and removed not in by_path
    assert by_path[relabelled][0] == "nine" and by_path[moved][1] == new_split
    assert moved not in {Path(p).name for p in store.table(["path"], split=old_split).column("path").to_pylist()}
    assert store.count_rows("train") + store.count_rows("test") == 9
    labels = [b.column("label").to_pylist() for b in store.iter_batches(4, "test", columns=["label", "vector"])]
    assert sum(len(x) for x in labels) == store.count_rows("test")


def test_audio_with_nan_or_infinite_samples_is_a_bad_file_and_the_rest_is_extracted(tmp_path):
    import soundfile as sf

    manifest = corpus(tmp_path / "audio", names(10)[:2])
    rng = np.random.default_rng(0)
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf), ("all-nan.wav", None)):
        samples = rng.normal(0, 0.1, 8000).astype(np.float32)
        samples[4000:4100] = value if value is not None else np.nan
        if value is None:
            samples[:] = np.nan
        sf.write(tmp_path / "audio" / name, samples, 8000, subtype="FLOAT")
    manifest.write_text(manifest.read_text() + "nan.wav,x,train\ninf.wav,x,train\nall-nan.wav,x,train\n")
    summary = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (summary.extracted, summary.failed) == (2, 3)
    errors = FeatureStore(tmp_path / "store", FSDD_FEATURES).errors().to_pydict()
    assert sorted(Path(p).name for p in errors["path"]) == ["all-nan.wav", "inf.wav", "nan.wav"]
    assert all("NaN or infinite" in e for e in errors["error"])


@pytest.mark.slow
def test_two_runs_on_one_store_at_once_store_each_file_once(tmp_path):
    import shutil as sh

    manifest = corpus(tmp_path / "audio", names(300))
    store_dir = tmp_path / "store"
    command = [*CADENCE, "features", str(manifest), "--store", str(store_dir), "--inline", "--json"]
    with FeatureStore(store_dir, FSDD_FEATURES).writing():  # a run is writing it now
        refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "being written by another cadence features run" in refused.stderr
    assert f"process {os.getpid()}" in refused.stderr
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # two at once: one writes, the other is refused or finds it all done
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) in ([0, 0], [0, 2]), results
    store = FeatureStore(store_dir, FSDD_FEATURES)
    assert len(stored_hashes(store)) == len(set(stored_hashes(store))) == 300
    part = min(store.path.local().glob("part-*.parquet"))  # a part stored twice, as racing runs used to leave it
    sh.copy(part, part.with_name("part-copy.parquet"))
    store = FeatureStore(store_dir, FSDD_FEATURES)
    assert len(stored_hashes(store)) == len(set(stored_hashes(store))) == 300 == store.count_rows()


def test_another_extractor_never_reuses_the_features(tmp_path):
    manifest = corpus(tmp_path / "audio", names(10))
    extract_corpus(manifest, tmp_path / "store", use_ray=False)
    other = extract_corpus(manifest, tmp_path / "store", AudioFeaturePrint(window_duration=2.0), use_ray=False)
    assert other.extracted == 10 and other.store != str(FeatureStore(tmp_path / "store", FSDD_FEATURES).path)


def test_bad_files_go_to_the_errors_table_and_the_rest_is_extracted(tmp_path):
    good = names(10)
    audio = tmp_path / "audio"
    manifest = corpus(audio, good, extra="corrupt.wav,0,train\nnotes.wav,1,train\nempty.wav,2,train\n"
                                         "missing.wav,3,train\n")
    wav = bytearray((FSDD / good[0]).read_bytes())
    wav[20:36] = bytes(16)  # a WAV whose format chunk is zeroed out
    (audio / "corrupt.wav").write_bytes(bytes(wav))
    (audio / "notes.wav").write_text("not audio, just text")
    (audio / "empty.wav").touch()
    summary = extract_corpus(manifest, tmp_path / "store", use_ray=False)
    assert (summary.extracted, summary.failed) == (10, 4)
    errors = FeatureStore(tmp_path / "store", FSDD_FEATURES).errors().to_pylist()
    by_file = {Path(e["path"]).name: e["error"] for e in errors}
    assert "no such file" in by_file["missing.wav"] and "empty" in by_file["empty.wav"]
    assert "not audio" in by_file["notes.wav"] and "not audio" in by_file["corrupt.wav"]
    assert len(errors) == 4


def test_a_manifest_without_the_columns_is_refused(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("file,class\na.wav,1\n")
    with pytest.raises(InputError, match="path,label"):
        read_manifest(bad)


@pytest.mark.ray
def test_a_run_killed_midway_then_rerun_stores_each_file_once(tmp_path):
    from cadence.cluster.bench.features import tile_corpus

    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    manifest, _ = tile_corpus(FSDD, tmp_path / "audio", copies=3)  # 9,000 distinct files: seconds of work
    total = len(read_manifest(manifest))
    store_dir = tmp_path / "store"
    command = [*CADENCE, "features", str(manifest), "--store", str(store_dir), "--json", "--runner", "ray"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    store = FeatureStore(store_dir, AudioFeaturePrint(sample_rate=8000))  # FSDD's own rate, which the command takes
    deadline = time.time() + 120
    while time.time() < deadline and not list(store.path.local().glob("part-*.parquet")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and every Ray process it started, mid-write or not
    process.wait()
    partial = len(stored_hashes(store))
    assert 0 < partial < total, "the kill should land mid-run"
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    # what the first run stored (parts its orphaned workers finished too) is not extracted again
    assert summary["skipped"] >= partial and summary["skipped"] + summary["extracted"] == total
    hashes = stored_hashes(store)
    assert len(hashes) == len(set(hashes)) == total
    assert set(hashes) == {content_hash(r.path) for r in read_manifest(manifest)}


@pytest.mark.ray
def test_extraction_on_a_two_node_cluster(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from cadence.cluster.runtime.connect import connected

    manifest = corpus(tmp_path / "audio", names(60))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        with connected(cluster.address) as where:
            assert where["nodes"] == 2
            summary = extract_corpus(manifest, tmp_path / "store", files_per_task=10)
        assert (summary.extracted, summary.failed) == (60, 0)
        assert len(set(stored_hashes(FeatureStore(tmp_path / "store", FSDD_FEATURES)))) == 60
    finally:
        cluster.shutdown()
    assert not ray.is_initialized()
    shutil.rmtree(tmp_path / "store")
