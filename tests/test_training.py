"""Classifiers, safe model files and the training driver, on real FSDD features."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import json

import numpy as np
import pytest

from cadence.cluster.audio.features import extract_corpus
from cadence.cluster.audio.settings import TrainSettings
from cadence.cluster.audio.train import StoreError, evaluate, open_store, save_model, train
from cadence.pipelines import AnnotatedFeature
from cadence.pipelines.audio import AudioFeaturePrint, clip_vector, read_audio
from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier, LogisticRegressionClassifier
from cadence.pipelines.errors import ParameterError
from cadence.pipelines.modelfile import ModelFileError, load, save

from .helpers import CADENCE, FSDD, ROOT, corpus, names

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdd")
    manifest = corpus(folder / "audio", names(300))  # 30 per digit, 5 speakers each
    extract_corpus(manifest, folder / "store", use_ray=False)
    return open_store(folder / "store")


def small(checkpoint_dir=None, resume=False, **network) -> TrainSettings:
    mlp = {"maximum_iterations": 40, "early_stop_iteration_count": 3, "random_seed": 1} | network
    return TrainSettings(FullyConnectedNetworkClassifier(**mlp), chunk_size=64, checkpoint_dir=checkpoint_dir,
                         resume=resume)


def logreg() -> TrainSettings:
    return TrainSettings(LogisticRegressionClassifier(random_seed=1), chunk_size=64)


def test_early_stopping_stops_and_keeps_the_best(store):
    result = train(store, small(maximum_iterations=200))
    assert result.epochs < 200 and result.epochs == result.best_epoch + 3
    assert result.validation_accuracy == max(h["validation_accuracy"] for h in result.history)
    assert result.test_accuracy is not None and result.test_accuracy > 0.8


def test_resume_reaches_the_model_of_an_uninterrupted_run(store, tmp_path):
    whole = train(store, small(maximum_iterations=6, early_stop_iteration_count=100))
    train(store, small(maximum_iterations=3, early_stop_iteration_count=100, checkpoint_dir=str(tmp_path)))
    resumed = train(store, small(maximum_iterations=6, early_stop_iteration_count=100, checkpoint_dir=str(tmp_path),
                                 resume=True))
    assert resumed.epochs == 6 and resumed.model == whole.model
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_resume_with_other_settings_is_refused(store, tmp_path):
    train(store, small(maximum_iterations=1, checkpoint_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="other settings"):
        train(store, small(maximum_iterations=2, random_seed=7, checkpoint_dir=str(tmp_path), resume=True))


WRITER = """
import sys, numpy as np
from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier
from cadence.pipelines.modelfile import save
estimator = FullyConnectedNetworkClassifier(hidden_unit_counts=(2000, 2000))
model = estimator.make_transformer()
estimator.update(model, np.zeros((2, 500), np.float32), ["a", "b"])
print("ready", flush=True)
while True:
    save(sys.argv[1], {"model": model, "best": model}, {"state": {"epoch": 2}})
"""


def tiny_model():
    estimator = FullyConnectedNetworkClassifier(hidden_unit_counts=(4,))
    model = estimator.make_transformer()
    estimator.update(model, np.arange(6, dtype=np.float32).reshape(2, 3), ["a", "b"])
    return model


def test_a_checkpoint_killed_mid_write_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save(path, {"model": tiny_model(), "best": tiny_model()}, {"state": {"epoch": 1}})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE)
    assert writer.stdout.readline().startswith(b"ready")
    time.sleep(1.3)  # several writes of ~100 MB each: the kill lands in one of them
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    models, extra = load(path)
    assert extra["state"]["epoch"] in (1, 2) and set(models) == {"model", "best"}


def test_a_model_file_is_safetensors_that_any_reader_reads(tmp_path):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    model = tiny_model()
    path = save(tmp_path / "tiny.safetensors", {"model": model}, {"labels": ["a", "b"]})
    tensors = load_file(path)  # the ecosystem's own reader
    assert np.array_equal(tensors["model/w0"], model.weights[0]) and np.array_equal(tensors["model/mean"], model.mean)
    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["cadence"])
    assert header["models"]["model"]["classes"] == ["a", "b"] and header["extra"] == {"labels": ["a", "b"]}
    again = load(path)[0]["model"]
    assert again == model and again.training.step == model.training.step
    assert np.array_equal(again.training.feature_m2, model.training.feature_m2)


def test_corrupt_or_foreign_model_files_are_refused(tmp_path):
    from safetensors.numpy import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(2000))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weights": np.zeros(3, np.float32)}, foreign)  # safetensors, but not cadence's
    old = tmp_path / "old.npz"
    np.savez(old, header=np.array("{}"))
    for path in (garbage, foreign, old, tmp_path / "missing.safetensors"):
        with pytest.raises(ModelFileError, match=path.name):
            load(path)
    with pytest.raises(ModelFileError, match="older cadence"):
        load(old)


def _edited(path, target, change) -> None:
    """Copy a safetensors file to ``target`` with its header (the JSON after the first 8 bytes) changed."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    change(header)
    raw = json.dumps(header).encode()
    target.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])


def test_model_files_declaring_huge_tensors_are_refused_before_reading(store, tmp_path):
    result = train(store, logreg())
    path = save_model(tmp_path / "digits.safetensors", result, store, logreg())
    huge = tmp_path / "huge.safetensors"  # its weights declare 4 TB
    _edited(path, huge, lambda h: h["model/w0"].update(shape=[10**6, 10**6]))
    with pytest.raises(ModelFileError, match="declares a tensor model/w0 of 4,000,000,000,000 bytes"):
        load(huge)
    padded = tmp_path / "padded.safetensors"  # a model, and beside it a tensor of 7 TiB it does not use
    _edited(path, padded, lambda h: h.update(junk={"dtype": "F32", "shape": [7 << 38], "data_offsets": [0, 7 << 40]}))
    with pytest.raises(ModelFileError, match="junk"):
        load(padded)
    assert load(path)[0]["model"] == result.model


def test_a_saved_model_predicts_the_same_and_the_cli_uses_its_extractor(store, tmp_path):
    result = train(store, logreg())
    path = save_model(tmp_path / "digits.safetensors", result, store, logreg())
    model = load(path)[0]["model"]
    assert model == result.model
    wav = FSDD / "3_theo_2.wav"
    run = subprocess.run([*CADENCE, "predict", "--model", str(path), str(wav),
                          str(tmp_path / "nothing.wav")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "nothing.wav: no such file" in run.stderr
    label = run.stdout.split(": ")[1].split()[0]
    extractor = AudioFeaturePrint()
    expected = result.model.applied(clip_vector(list(extractor.applied(read_audio(wav)))))
    assert label == expected.label


def test_a_model_is_not_evaluated_on_features_of_another_extractor(store, tmp_path):
    result = train(store, logreg())
    path = save_model(tmp_path / "digits.safetensors", result, store, logreg())
    other = extract_corpus(corpus(tmp_path / "audio", names(20)), tmp_path / "store16k",
                           AudioFeaturePrint(sample_rate=16000), use_ray=False)
    run = subprocess.run([*CADENCE, "evaluate", "--model", str(path), "--store", other.store],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "sample_rate=8000" in run.stderr and "sample_rate=16000" in run.stderr
    assert "accuracy" not in run.stdout


def test_a_model_file_naming_an_unknown_extractor_parameter_is_refused(store, tmp_path):
    result = train(store, logreg())
    identity = store.extractor.identity()
    identity["params"]["hop_length"] = 256
    path = save(tmp_path / "edited.safetensors", {"model": result.model}, {"extractor": identity, "level": "clip"})
    run = subprocess.run([*CADENCE, "predict", "--model", str(path), str(FSDD / "3_theo_2.wav")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "edited.safetensors" in run.stderr and "hop_length" in run.stderr


def test_stores_that_cannot_be_trained_on_give_clear_errors(tmp_path, store):
    with pytest.raises(StoreError, match="holds no feature store"):
        open_store(tmp_path)
    empty = tmp_path / "empty"  # every file of its manifest failed: a store with no rows
    empty.mkdir()
    (empty / "m.csv").write_text("path,label\nnothing.wav,1\n")
    extract_corpus(empty / "m.csv", tmp_path / "empty-store", use_ray=False)
    with pytest.raises(StoreError, match="no training rows"):
        train(open_store(tmp_path / "empty-store"), small())
    one = corpus(tmp_path / "one", [n for n in names(500) if n.startswith("4_")])
    extract_corpus(one, tmp_path / "one-store", use_ray=False)
    with pytest.raises(StoreError, match="one label only"):
        train(open_store(tmp_path / "one-store"), small())
    tests_only = corpus(tmp_path / "t", names(20))  # indexes 0, 1: all test
    extract_corpus(tests_only, tmp_path / "t-store", use_ray=False)
    with pytest.raises(StoreError, match="no training rows"):
        train(open_store(tmp_path / "t-store"), small())
    # a model that knows 0..3 evaluated on a store with other digits
    partial = corpus(tmp_path / "p", [n for n in names(100) if n[0] in "0123"])
    extract_corpus(partial, tmp_path / "p-store", use_ray=False)
    narrow = train(open_store(tmp_path / "p-store"), logreg()).model
    with pytest.raises(StoreError, match="labels the model was not trained on: 4, 5"):
        evaluate(narrow, store, "test")


def test_tuning_appends_a_new_classifier_to_the_same_features(store):
    names_ = names(100)
    data = [AnnotatedFeature(read_audio(FSDD / n), n[0]) for n in names_]
    task = AudioFeaturePrint().appending(LogisticRegressionClassifier())
    features = task.preprocessed(data)  # extracted once
    assert len(features) == 100 and hasattr(features[0].feature[0], "vector")
    clip = read_audio(FSDD / "5_lucas_40.wav")
    for l2 in (0.001, 0.1):
        tuned = AudioFeaturePrint().appending(LogisticRegressionClassifier(l2_penalty=l2))
        model = tuned.fitted_to_preprocessed(features)  # AudioFeaturePrint | the fitted classifier
        result = model.applied(clip)  # one label per clip, its windows pooled as in training
        assert result.label in "0123456789" and 0 < result.probability <= 1
        windows = model.per_element(clip)  # and one per window, when asked
        assert windows and all(w.start_time >= 0 and c.label in "0123456789" for w, c in windows)


@pytest.mark.slow
def test_the_train_and_evaluate_commands(store, tmp_path):
    import json

    model = tmp_path / "digits.safetensors"
    run = subprocess.run([*CADENCE, "train", "--store", str(store.path), "--epochs", "3",
                          "--chunk-size", "128", "--checkpoint-dir", str(tmp_path / "ckpt"), "--model", str(model),
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    metrics = json.loads(run.stdout.splitlines()[-1])
    assert metrics["epochs"] == 3 and 0 < metrics["test_accuracy"] <= 1
    assert run.stderr.count("validation accuracy") == 3  # a line per epoch
    assert (tmp_path / "digits-curve.png").stat().st_size > 1000
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").exists()
    shown = subprocess.run([*CADENCE, "evaluate", "--model", str(model), "--store",
                            str(store.path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "test: accuracy" in shown.stdout and "precision" in shown.stdout
    assert (tmp_path / "digits-confusion-test.png").stat().st_size > 1000
    refused = subprocess.run([*CADENCE, "evaluate", "--model",
                              str(tmp_path / "ckpt" / "checkpoint.safetensors"), "--store", str(store.path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "checkpoint" in refused.stderr


@pytest.mark.slow
def test_the_network_shape_is_chosen_on_the_command_line(store, tmp_path):
    from cadence.cluster.audio.train import load_model

    model = tmp_path / "deep.safetensors"
    run = subprocess.run([*CADENCE, "train", "--store", str(store.path), "--epochs", "2",
                          "--hidden", "32x16", "--batch-size", "64", "--learning-rate", "0.002", "--model",
                          str(model)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    trained = load_model(model)[0]
    assert [w.shape[1] for w in trained.weights] == [32, 16, 10] and trained.params["dropout_probability"] == 0.2
    bad = subprocess.run([*CADENCE, "train", "--store", str(store.path), "--hidden", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--hidden" in bad.stderr


def test_tune_searches_only_what_it_is_given():
    from cadence.cluster.audio.tune import grid

    given = grid(TrainSettings(), {"hidden_unit_counts": [(50,), (100,)]})
    assert given == [{"hidden_unit_counts": (50,)}, {"hidden_unit_counts": (100,)}]
    assert len(grid(TrainSettings(), {})) == 8  # nothing given: the default grid
    with pytest.raises(ParameterError, match="dropout_probability"):
        grid(TrainSettings(), {"dropout_probability": [0.1, 1.5]})


def test_the_curve_shows_the_validation_loss_and_a_two_class_title_fits(tmp_path):
    from cadence.cluster.audio.train import confusion_figure, curve_figure, plot_confusion

    history = [{"epoch": e, "loss": 1 / e, "validation_loss": 1.2 / e, "validation_accuracy": 0.5 + e / 20}
               for e in range(1, 6)]
    figure = curve_figure(history)
    labels = [line.get_label() for axis in figure.axes for line in axis.get_lines()]
    assert labels == ["training loss", "validation loss", "validation accuracy"]
    report = {"split": "test", "accuracy": 0.95, "confusion_matrix": [[9, 1], [0, 10]]}
    figure = confusion_figure(report, ["yes", "no"])
    figure.canvas.draw()
    title, width = figure.axes[0].title.get_window_extent(), figure.bbox.width
    assert 0 <= title.x0 and title.x1 <= width, (title, width)
    plot_confusion(report, ["yes", "no"], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
