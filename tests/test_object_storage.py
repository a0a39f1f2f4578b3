"""Corpora, stores and models in object storage: everything through ``s3://`` URIs against a real S3
API server on loopback (moto's standalone server, tests/s3server.py), as on a cluster without a
shared disk."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - pa.parquet
import pytest

from cadence.cluster.audio.features import extract_corpus
from cadence.cluster.audio.store import FeatureStore
from cadence.pipelines.errors import InputError
from cadence.pipelines.storage import Location

from .helpers import FSDD, cadence, corpus, free_port, names
from .s3server import moto_server, s3_server, upload

FSDD_FEATURES_RATE = 8000


@pytest.fixture(scope="module")
def bucket():
    with s3_server() as uri:
        yield uri


def test_a_location_reads_writes_and_lists_objects_and_names_what_is_wrong(bucket):
    folder = Location.of(f"{bucket}/a/b/")
    (folder / "one.txt").write_bytes(b"1")
    (folder / "two.parquet").write_parquet(pa.table({"x": [1, 2]}))
    (folder / "sub" / "three.txt").write_bytes(b"3")
    assert str(folder) == f"{bucket}/a/b" and folder.is_dir() and (folder / "one.txt").read_bytes() == b"1"
    assert [f.name for f in folder.files()] == ["one.txt", "two.parquet"]
    assert [f.name for f in folder.files(suffix=".parquet")] == ["two.parquet"]
    assert [f.name for f in folder.folders()] == ["sub"]
    assert (folder / "manifest.csv").resolve("sub/three.txt").read_bytes() == b"3" and not (folder / "none").exists()
    with pytest.raises(FileNotFoundError):
        (folder / "none").read_bytes()
    assert "bucket" in Location.of("s3://cadence-no-such-bucket/x").missing()
    with pytest.raises(InputError, match="zz://x/y: has a scheme zz:// no filesystem knows"):
        Location.of("zz://x/y").exists()


def test_the_store_lock_holds_on_object_storage_and_a_dead_runs_lock_is_taken_over(bucket, monkeypatch):
    from cadence.pipelines import locks

    lock = Location.of(f"{bucket}/locked/.lock")
    with locks.exclusive(lock, "test run"):
        with pytest.raises(locks.LockHeld, match=f"{bucket}/locked: is being written by another test run"):
            with locks.exclusive(lock, "test run"):
                pass
    with locks.exclusive(lock, "test run"):  # released on the way out
        pass
    lock.write_bytes(json.dumps({"host": "gone", "pid": 1, "time": time.time()}).encode())  # a run killed
    with pytest.raises(locks.LockHeld, match="process 1 on gone"):
        with locks.exclusive(lock, "test run"):
            pass
    monkeypatch.setattr(locks, "STALE", 0.0)  # ... long enough ago
    with locks.exclusive(lock, "test run"):
        pass
    assert not lock.exists()


def test_a_store_in_s3_holds_row_for_row_what_a_local_store_holds_and_extracts_only_new_files(bucket, tmp_path):
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    first, later = names(20), names(20, start=2)
    local_manifest = corpus(tmp_path / "audio", first + later, extra="missing.wav,1,train\n")
    remote = upload(tmp_path / "audio", f"{bucket}/corpus")  # the manifest's relative paths now name objects
    lines = local_manifest.read_text().splitlines()
    Location.of(f"{remote}/first.csv").write_bytes(("\n".join(lines[:21]) + "\n").encode())  # the first 20 only
    summary = extract_corpus(f"{remote}/first.csv", f"{bucket}/store", use_ray=False)
    assert (summary.extracted, summary.skipped, summary.failed) == (20, 0, 0)
    summary = extract_corpus(f"{remote}/manifest.csv", f"{bucket}/store", use_ray=False)
    assert (summary.extracted, summary.skipped, summary.failed) == (len(set(later) - set(first)), 20, 1)
    extract_corpus(local_manifest, tmp_path / "store", use_ray=False)

    from cadence.pipelines.audio import AudioFeaturePrint

    extractor = AudioFeaturePrint(sample_rate=FSDD_FEATURES_RATE)
    in_s3, on_disk = FeatureStore(f"{bucket}/store", extractor), FeatureStore(tmp_path / "store", extractor)
    columns = ["content_hash", "label", "split", "window_index", "start_time", "duration", "vector"]
    for level in ("clip", "window"):
        a = in_s3.table(columns, level=level).sort_by([("content_hash", "ascending"), ("window_index", "ascending")])
        b = on_disk.table(columns, level=level).sort_by([("content_hash", "ascending"), ("window_index", "ascending")])
        assert a.num_rows == b.num_rows > 0 and a.equals(b)
    errors = in_s3.errors().column("error").to_pylist()
    assert len(errors) == 1 and f"{remote}/missing.wav" in errors[0], errors
    assert not [p for p in os.listdir(tmp_path) if p.startswith("s3")]  # nothing written under a mangled URI


@pytest.mark.slow
def test_the_command_line_chain_runs_with_every_path_in_s3(bucket, tmp_path):
    corpus(tmp_path / "audio", names(100))
    corpus_uri = upload(tmp_path / "audio", f"{bucket}/chain/corpus")
    store, model, checkpoints = f"{bucket}/chain/store", f"{bucket}/chain/model.safetensors", f"{bucket}/chain/ckpt"
    first = cadence("features", f"{corpus_uri}/manifest.csv", "--store", store, "--inline", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1])["extracted"] == 100
    again = cadence("features", f"{corpus_uri}/manifest.csv", "--store", store, "--inline", "--json")
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == 100, again.stderr
    trained = cadence("train", "--store", store, "--epochs", "4", "--model", model, "--checkpoint-dir", checkpoints,
                      "--checkpoint-every", "2", "--json")
    assert trained.returncode == 0, trained.stderr
    assert Location.of(f"{checkpoints}/checkpoint.safetensors").exists()
    assert Location.of(f"{bucket}/chain/model-curve.png").read_bytes()[:4] == b"\x89PNG"
    resumed = cadence("train", "--store", store, "--epochs", "6", "--model", model, "--checkpoint-dir", checkpoints,
                      "--resume", "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout.splitlines()[-1])["epochs"] == 6, resumed.stderr
    evaluated = cadence("evaluate", "--model", model, "--store", store, "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["rows"] == 50, evaluated.stderr
    assert Location.of(f"{bucket}/chain/model-confusion-test.png").exists()
    predicted = cadence("predict", "--model", model, f"{corpus_uri}/{names(10)[3]}", "--json")
    assert predicted.returncode == 0 and json.loads(predicted.stdout)["label"] in "0123456789", predicted.stderr
    tuned = cadence("tune", "--store", store, "--classifier", "logreg", "--l2", "0.001", "0.1", "--model",
                    f"{bucket}/chain/best.safetensors", "--json")
    assert tuned.returncode == 0 and Location.of(f"{bucket}/chain/best.safetensors").exists(), tuned.stderr
    exported = cadence("export", "--model", model, "--out", f"{bucket}/chain/model.onnx")
    assert exported.returncode == 0 and Location.of(f"{bucket}/chain/model.onnx").read_bytes()[:2], exported.stderr
    assert not os.path.exists("s3:")  # a URI taken for a path would land there


@pytest.mark.slow
@pytest.mark.parametrize("command, named", [
    (("features", "s3://cadence-no-such-bucket/manifest.csv", "--store", "{bucket}/s"),
     "s3://cadence-no-such-bucket/manifest.csv: its bucket does not exist"),
    (("features", "{bucket}/chain/corpus/manifest.csv", "--store", "s3://cadence-no-such-bucket/s"),
     "s3://cadence-no-such-bucket/s: (--store) cannot be used: its bucket cadence-no-such-bucket does not exist"),
    (("train", "--store", "s3://cadence-no-such-bucket/s"), "s3://cadence-no-such-bucket/s: its bucket"),
    (("train", "--store", "{bucket}/nothing-here"), "{bucket}/nothing-here: no such feature store"),
    (("evaluate", "--model", "{bucket}/no-model.safetensors", "--store", "{bucket}/s"),
     "{bucket}/no-model.safetensors: no such model file"),
    (("export", "--model", "{bucket}/no-model.safetensors", "--out", "s3://cadence-no-such-bucket/m.onnx"),
     "s3://cadence-no-such-bucket/m.onnx: (--out) cannot be written: its bucket"),
    (("train", "--store", "zz://cadence/s"), "zz://cadence/s: has a scheme zz:// no filesystem knows"),
])
def test_bad_storage_input_is_named_with_exit_2_and_no_traceback(bucket, command, named):
    run = cadence(*[part.format(bucket=bucket) for part in command])
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert named.format(bucket=bucket) in run.stderr, run.stderr


@pytest.fixture(scope="module")
def worker_apart(bucket, tmp_path_factory):
    """A Ray of two nodes: the head (the driver's, no CPU for tasks) and a worker node of two CPUs
    started in a working directory of its own, so a task writing to a local or relative path
    writes where the driver never looks, as on a machine of its own.  Both see the S3 server."""
    from cadence.cluster.bench.cluster import add_local_node, local_cluster
    from cadence.cluster.runtime.connect import connected

    apart = tmp_path_factory.mktemp("worker-node")
    cluster = local_cluster({"num_cpus": 0})
    here = os.getcwd()
    try:
        os.chdir(apart)
        add_local_node(cluster, num_cpus=2)
    finally:
        os.chdir(here)
    cluster.wait_for_nodes()
    try:
        with connected(cluster.address):
            yield apart
    finally:
        cluster.shutdown()


@pytest.mark.ray
def test_extraction_on_another_node_writes_nothing_to_its_disk(worker_apart, bucket, tmp_path, monkeypatch):
    corpus(tmp_path / "audio", names(40))
    remote = upload(tmp_path / "audio", f"{bucket}/apart")
    monkeypatch.chdir(tmp_path)  # the driver's working directory; the store given relative to it
    local = extract_corpus("audio/manifest.csv", "store", files_per_task=10, use_ray=True)
    in_s3 = extract_corpus(f"{remote}/manifest.csv", f"{bucket}/apart-store", files_per_task=10, use_ray=True)
    assert (local.runner, local.extracted, in_s3.runner, in_s3.extracted) == ("ray", 40, "ray", 40)
    assert sorted(os.listdir(worker_apart)) == []  # the tasks ran there and wrote nothing there
    from cadence.pipelines.audio import AudioFeaturePrint

    extractor = AudioFeaturePrint(sample_rate=FSDD_FEATURES_RATE)
    assert len(FeatureStore(tmp_path / "store", extractor).path.files("part-")) == 4
    columns = ["content_hash", "window_index", "vector"]
    a = FeatureStore(f"{bucket}/apart-store", extractor).table(columns, level="window").sort_by(
        [("content_hash", "ascending"), ("window_index", "ascending")])
    b = FeatureStore(tmp_path / "store", extractor).table(columns, level="window").sort_by(
        [("content_hash", "ascending"), ("window_index", "ascending")])
    assert a.num_rows >= 40 and a.equals(b)


@pytest.mark.mediapipe
def test_count_writes_its_tables_to_s3(bucket):
    import pyarrow.parquet as pq

    from .helpers import video

    out = f"{bucket}/counts/run.parquet"
    run = cadence("count", str(video("squat_correct_016.mp4")), "--runner", "inline", "--out", out, "--json")
    assert run.returncode == 0, run.stderr
    counts = pq.read_table(out)
    repetitions = pq.read_table(f"{bucket}/counts/run-repetitions.parquet")
    assert counts.num_rows >= 1 and max(counts.column("count").to_pylist()) == json.loads(
        run.stdout.splitlines()[-1])["count"]
    clip = str(video("squat_correct_016.mp4"))
    assert repetitions.num_rows >= 1 and set(repetitions.column("feed").to_pylist()) == {clip}
    assert Location.of(f"{bucket}/counts").files() == [Location.of(f"{bucket}/counts/run-repetitions.parquet"),
                                                       Location.of(out)]  # the parts are gone
    refused = cadence("count", clip, "--runner", "inline", "--annotate", f"{bucket}/a.mp4")
    assert refused.returncode == 2 and "is a URI" in refused.stderr, refused.stderr


@pytest.mark.ray
def test_tune_reads_the_store_by_uri_on_another_node_and_keeps_the_best_model_in_s3(worker_apart, bucket, tmp_path):
    from cadence.cluster.audio.settings import TrainSettings
    from cadence.cluster.audio.tune import tune
    from cadence.pipelines.classifiers import LogisticRegressionClassifier

    corpus(tmp_path / "audio", names(100))
    remote = upload(tmp_path / "audio", f"{bucket}/tuned")
    extract_corpus(f"{remote}/manifest.csv", f"{bucket}/tuned-store", use_ray=False)
    model = f"{bucket}/tuned-models/best.safetensors"
    result = tune(f"{bucket}/tuned-store", TrainSettings(LogisticRegressionClassifier()),
                  {"l2_penalty": [0.001, 0.1]}, model)
    assert len(result.trials) == 2 and not any(t.error for t in result.trials)
    assert [f.name for f in Location.of(f"{bucket}/tuned-models").files()] == ["best.safetensors"]  # trials' gone
    assert sorted(os.listdir(worker_apart)) == []
    from cadence.cluster.audio.train import load_model

    trained, _, extra = load_model(model)
    assert extra["metrics"]["validation_accuracy"] == pytest.approx(result.best.validation_accuracy, abs=1e-4)


@pytest.fixture
def ray_job_server(tmp_path):
    """``ray start --head`` with its job server on loopback and token authentication on; yields
    the job server's address and the environment (the token) that submits to it."""
    import secrets
    import signal
    import subprocess
    import sys
    from pathlib import Path

    ray = str(Path(sys.executable).parent / "ray")
    dashboard = free_port()
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # as in an activated venv
    ports = [f"--{name}={free_port()}" for name in ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                     "metrics-export-port", "runtime-env-agent-port",
                                                     "ray-client-server-port")]  # none of another Ray's defaults
    head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", *ports,
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                             "--include-dashboard", "true", "--num-cpus", "2", "--disable-usage-stats"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        ready = [ray, "job", "submit", "--address", address, "--", "true"]  # answers once an agent takes jobs
        while subprocess.run(ready, env=env, capture_output=True, timeout=120).returncode:
            assert time.monotonic() < deadline and head.poll() is None, "the job server did not start"
            time.sleep(1)
        yield address, env
    finally:
        head.send_signal(signal.SIGTERM)  # --block: stops every process of this head
        head.wait(timeout=60)


@pytest.mark.ray
@pytest.mark.slow
def test_training_submitted_as_a_ray_job_reads_and_writes_s3(ray_job_server, bucket, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    address, env = ray_job_server
    corpus(tmp_path / "audio", names(100))
    remote = upload(tmp_path / "audio", f"{bucket}/job")
    extract_corpus(f"{remote}/manifest.csv", f"{bucket}/job-store", use_ray=False)
    working = tmp_path / "job"  # what --working-dir uploads (README: the project's folder)
    working.mkdir()
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", address, "--working-dir",
              str(working), "--", "cadence", "train", "--store", f"{bucket}/job-store",
              "--classifier", "logreg", "--model", f"{bucket}/job-model.safetensors", "--json"]
    job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0 and "succeeded" in job.stdout + job.stderr, job.stdout[-2000:] + job.stderr[-2000:]
    from cadence.cluster.audio.train import load_model

    _, _, extra = load_model(f"{bucket}/job-model.safetensors")
    assert extra["metrics"]["classifier"] == "logistic_regression"
    refused = subprocess.run(submit, env=env | {"RAY_AUTH_TOKEN": "not-the-token"}, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()


@pytest.mark.slow
def test_permission_denied_and_a_store_of_another_version_are_named(bucket, tmp_path):
    import subprocess

    from .helpers import CADENCE, ROOT

    # a second S3 server that refuses every request: credentials it does not know
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        run = subprocess.run([*CADENCE, "train", "--store", "s3://guarded/store"], cwd=ROOT,
                             env=os.environ | {"AWS_ENDPOINT_URL": endpoint}, capture_output=True, text=True,
                             timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "s3://guarded/store" in run.stderr and "permission denied" in run.stderr and "AWS_PROFILE" in run.stderr
    newer = Location.of(f"{bucket}/newer/AudioFeaturePrint-0123456789abcdef/extractor.json")
    newer.write_bytes(json.dumps({"class": "AudioFeaturePrint", "params": {"window_duration": 0.975,
                                  "overlap_factor": 0.5, "sample_rate": 8000}, "fingerprint": "x"}).encode())
    run = cadence("train", "--store", f"{bucket}/newer")
    assert run.returncode == 2 and "holds features of another AudioFeaturePrint version" in run.stderr, run.stderr
    assert str(newer) in run.stderr


def test_a_copy_in_object_storage_is_stored_once_and_its_hashes_are_kept(bucket, tmp_path):
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    folder = Location.of(f"{bucket}/copies")
    one, other = names(10)[:2]
    (folder / "a.wav").write_bytes((FSDD / one).read_bytes())
    (folder / "copy-of-a.wav").write_bytes((FSDD / one).read_bytes())  # hashed only when a task reads it
    (folder / "b.wav").write_bytes((FSDD / other).read_bytes())
    (folder / "manifest.csv").write_bytes(b"path,label\na.wav,0\ncopy-of-a.wav,0\nb.wav,1\n")
    summary = extract_corpus(f"{folder}/manifest.csv", f"{bucket}/copies-store", use_ray=False)
    assert (summary.extracted, summary.skipped, summary.failed) == (2, 1, 0)
    from cadence.cluster.audio.train import open_store

    store = open_store(f"{bucket}/copies-store")
    hashes = store.table(["content_hash"]).column("content_hash").to_pylist()
    assert len(hashes) == len(set(hashes)) == 2
    cached = pa.parquet.read_table((store.path / "hashes.parquet").fs_path, filesystem=store.path.filesystem)
    assert sorted(cached.column("path").to_pylist()) == sorted(str(folder / n) for n in ("a.wav", "b.wav",
                                                                                         "copy-of-a.wav"))
    again = extract_corpus(f"{folder}/manifest.csv", f"{bucket}/copies-store", use_ray=False)
    assert (again.extracted, again.skipped) == (0, 3)
