"""Models out of cadence and back in: tuning as Ray Tune trials on stored features, ONNX and Core ML
export checked against cadence's own probabilities, per-window predictions, and the feature rate
that follows the files; on real FSDD recordings, through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cadence.cluster.audio.features import extract_corpus
from cadence.pipelines.classifiers import LogisticRegressionClassifier
from cadence.cluster.audio.settings import TrainSettings
from cadence.cluster.audio.train import load_model, open_store, train
from cadence.pipelines.audio import clip_vector

from .helpers import FSDD, cadence, corpus, names


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdd8k")
    manifest = corpus(folder / "audio", names(300))
    extract_corpus(manifest, folder / "store", use_ray=False)
    return open_store(folder / "store")


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    result = cadence("train", "--store", str(store.path), "--epochs", "15", "--model", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.ray
def test_tune_runs_trials_on_ray_and_its_best_model_is_what_train_gives(store, tmp_path):
    import os

    from .helpers import ROOT

    best = tmp_path / "best.safetensors"
    relative = os.path.relpath(store.path, ROOT)  # as a user types it: trials run in folders of their own
    result = cadence("tune", "--store", relative, "--classifier", "logreg", "--l2", "0.0001", "0.001", "0.01",
                     "0.1", "--model", str(best), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    trials = report["trials"]
    assert len(trials) == 4 and report["cpus"] >= 1 and all(t["error"] is None for t in trials)
    assert sorted(t["settings"]["l2_penalty"] for t in trials) == [0.0001, 0.001, 0.01, 0.1]
    ranked = sorted(trials, key=lambda t: (-t["validation_accuracy"], t["validation_loss"]))
    assert report["best"] == ranked[0]  # the highest validation accuracy, then the lowest validation loss
    chosen = report["best"]["settings"]["l2_penalty"]
    again = train(store, TrainSettings(LogisticRegressionClassifier(l2_penalty=chosen)))
    assert load_model(best)[0] == again.model  # exactly the model cadence train makes with those settings
    assert "trial {'l2_penalty'" in result.stderr  # each trial as it finishes


def test_tune_refuses_network_settings_for_logistic_regression(store, tmp_path):
    result = cadence("tune", "--store", str(store.path), "--classifier", "logreg", "--hidden", "64")
    assert result.returncode == 2 and "mlp only" in result.stderr and "Traceback" not in result.stderr


def test_onnx_export_gives_cadence_s_probabilities_on_real_clips(trained, tmp_path):
    import onnx
    import onnxruntime

    out = tmp_path / "digits.onnx"
    result = cadence("export", "--model", str(trained), "--format", "onnx", "--out", str(out))
    assert result.returncode == 0, result.stderr
    model, extractor, _ = load_model(trained)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}["cadence"])
    assert metadata["classes"] == model.classes and metadata["extractor"] == extractor.identity()
    clips = [FSDD / n for n in names(60, start=40)]  # recordings the model was not trained on
    x = np.stack([clip_vector(extractor.clip_features(c)) for c in clips])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities, index, labels = session.run(None, {"features": x})
    assert np.allclose(probabilities, model.probabilities(x), atol=1e-5)
    assert list(labels) == list(model.predicted(x)) and list(index) == [model.classes.index(v) for v in labels]


@pytest.mark.slow
def test_core_ml_export_holds_the_same_network(trained, tmp_path):
    coremltools = pytest.importorskip("coremltools")
    out = tmp_path / "digits.mlmodel"
    result = cadence("export", "--model", str(trained), "--format", "coreml", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Failed to load" not in result.stderr and "scikit-learn version" not in result.stderr  # coremltools' import chatter
    model, extractor, _ = load_model(trained)
    spec = coremltools.utils.load_spec(str(out))
    layers = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    x = np.stack([clip_vector(extractor.clip_features(FSDD / n)) for n in names(20, start=45)])
    # the network, read back from the Core ML file and run here (Core ML itself runs only on Apple systems)
    h = (x + np.array(layers["centre"].bias.bias.floatValue)) * np.array(layers["scale"].scale.scale.floatValue)
    for i in range(len(model.weights)):
        dense = layers[f"dense{i}"].innerProduct
        w = np.array(dense.weights.floatValue).reshape(dense.outputChannels, dense.inputChannels)
        h = h @ w.T + np.array(dense.bias.floatValue)
        h = np.maximum(h, 0) if i < len(model.weights) - 1 else h
    p = np.exp(h - h.max(axis=1, keepdims=True))
    assert np.allclose(p / p.sum(axis=1, keepdims=True), model.probabilities(x), atol=1e-5)
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == model.classes


def test_export_of_a_file_that_is_not_a_model_is_refused(tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    result = cadence("export", "--model", str(fake), "--out", str(tmp_path / "x.onnx"))
    assert result.returncode == 2 and "fake.safetensors" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_predict_gives_one_label_per_file_and_per_window_labels_when_asked(trained, tmp_path):
    import soundfile as sf

    a, b = FSDD / "3_theo_45.wav", FSDD / "7_george_46.wav"
    samples = np.concatenate([sf.read(a, dtype="float32")[0], np.zeros(4000, np.float32),
                              sf.read(b, dtype="float32")[0]])
    joined = tmp_path / "three-then-seven.wav"  # 1.5 s: several windows
    sf.write(joined, samples, 8000)
    result = cadence("predict", "--model", str(trained), str(a), str(joined), "--json")
    assert result.returncode == 0, result.stderr
    single, whole = (json.loads(line) for line in result.stdout.splitlines())
    assert single["label"] in "0123456789" and "windows" not in single and len(single["probabilities"]) == 10
    windowed = json.loads(cadence("predict", "--model", str(trained), str(joined), "--windows", "--json").stdout)
    windows = windowed["windows"]
    assert len(windows) >= 2 and windowed["label"] == whole["label"]  # the clip's label is the same either way
    assert windows[0]["start_time"] == 0 and all(w["end_time"] > w["start_time"] for w in windows)
    assert [w["start_time"] for w in windows] == sorted(w["start_time"] for w in windows)
    text = cadence("predict", "--model", str(trained), str(joined), "--windows")
    assert text.stdout.count(" s: ") == len(windows)


@pytest.mark.slow
def test_features_follow_the_files_rate_and_then_the_store_s(tmp_path):
    manifest = corpus(tmp_path / "audio", names(20))
    first = cadence("features", str(manifest), "--store", str(tmp_path / "store"), "--inline")
    assert first.returncode == 0, first.stderr
    assert "features at 8000 Hz, the files' own rate" in first.stderr
    (only,) = [p.parent for p in (tmp_path / "store").glob("*/extractor.json")]
    assert json.loads((only / "extractor.json").read_text())["params"]["sample_rate"] == 8000
    again = cadence("features", str(manifest), "--store", str(tmp_path / "store"), "--inline")
    assert "the rate of the store already in" in again.stderr and "20 skipped" in again.stdout
    chosen = cadence("features", str(manifest), "--store", str(tmp_path / "store"), "--inline", "--sample-rate",
                     "16000")
    assert chosen.returncode == 0 and "features at" not in chosen.stderr and "20 extracted" in chosen.stdout
