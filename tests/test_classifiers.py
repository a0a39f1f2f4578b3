"""The classifiers as Create ML Components has them: updatable from nothing, fitted with validation
data, composed with AudioFeaturePrint into one updatable task; on real FSDD features."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cadence.pipelines import AnnotatedFeature, AudioFeaturePrint, StreamClassifier, clip_vector, read_audio
from cadence.pipelines.classifiers import L2_CHOICES, FullyConnectedNetworkClassifier, LogisticRegressionClassifier

from .helpers import FSDD, names

CLASSIFIERS = [FullyConnectedNetworkClassifier, LogisticRegressionClassifier]


@functools.cache
def fsdd_vectors(count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Clip vectors and labels of ``count`` FSDD recordings at 8 kHz."""
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    extractor = AudioFeaturePrint(sample_rate=8000)
    chosen = names(count)
    x = np.stack([clip_vector(extractor.clip_features(FSDD / n)) for n in chosen])
    return x, np.array([n[0] for n in chosen])


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_updatable_from_nothing_classes_grow_and_the_standardisation_is_learned(estimator):
    x, y = fsdd_vectors()
    first = np.isin(y, list("01234"))  # the first chunks hold five digits, the later ones all ten
    classifier = estimator(random_seed=3)
    model = classifier.make_transformer()  # no classes, no statistics, no pass over the data
    assert model.classes == [] and model.weights == []
    for epoch in range(15):
        classifier.update(model, x[first], y[first])
    assert model.classes == list("01234")
    for epoch in range(30):
        classifier.update(model, x, y)
    assert sorted(model.classes) == list("0123456789")
    seen = np.concatenate([np.repeat(x[first], 15, axis=0), np.repeat(x, 30, axis=0)])  # every row as often as seen
    assert np.allclose(model.mean, seen.mean(axis=0), rtol=1e-4, atol=1e-4)
    assert np.allclose(model.scale, seen.std(axis=0), rtol=1e-4)
    assert (model.predicted(x) == y).mean() > 0.9  # it learned the new digits too


def test_moving_the_standardisation_does_not_change_what_the_model_computes():
    x, y = fsdd_vectors()
    classifier = FullyConnectedNetworkClassifier(learning_rate=0.0, dropout_probability=0.0)
    trained = FullyConnectedNetworkClassifier(random_seed=1).fitted(
        [AnnotatedFeature(v, label) for v, label in zip(x[:150], y[:150])])
    before, mean = trained.probabilities(x), trained.mean.copy()
    classifier.update(trained, x[150:] * 1.5 + 2.0, y[150:])  # other statistics; a step of size 0
    assert not np.allclose(trained.mean, mean)
    assert np.allclose(trained.probabilities(x), before, atol=1e-5)


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_the_same_seed_gives_the_same_model_and_another_seed_another(estimator):
    x, y = fsdd_vectors()
    data = [AnnotatedFeature(v, label) for v, label in zip(x, y)]
    kwargs = {"l2_penalty": 0.01} if estimator is LogisticRegressionClassifier else {}
    a, b = estimator(random_seed=5, **kwargs).fitted(data), estimator(random_seed=5, **kwargs).fitted(data)
    assert a == b
    if estimator is FullyConnectedNetworkClassifier:  # weights drawn from the seed, dropout masks too
        assert a != estimator(random_seed=6).fitted(data)


def test_the_network_stops_early_on_the_validation_data_it_is_given():
    x, y = fsdd_vectors()
    train, check = np.arange(len(y)) % 5 != 0, np.arange(len(y)) % 5 == 0
    events = []
    FullyConnectedNetworkClassifier(early_stop_iteration_count=3, maximum_iterations=500).fitted(
        [AnnotatedFeature(v, label) for v, label in zip(x[train], y[train])], events.append,
        validate_on=[AnnotatedFeature(v, label) for v, label in zip(x[check], y[check])])
    losses = [e.metrics["validation_loss"] for e in events]
    best = int(np.argmin(losses))
    assert len(events) == best + 1 + 3 < 500  # three epochs without a better validation loss, then it stopped
    assert all(e.metrics["validation_accuracy"] is not None for e in events)


def test_dropout_probability_is_checked():
    x, y = fsdd_vectors()
    with pytest.raises(ValueError, match="dropout_probability"):
        FullyConnectedNetworkClassifier(dropout_probability=1.0).fitted(
            [AnnotatedFeature(v, label) for v, label in zip(x, y)])


def test_logistic_regression_chooses_its_penalty_on_validation_data_and_says_which():
    x, y = fsdd_vectors()
    events = []
    model = LogisticRegressionClassifier().fitted([AnnotatedFeature(v, label) for v, label in zip(x, y)], events.append)
    assert model.params["chosen_l2_penalty"] in L2_CHOICES
    assert set(model.params["l2_validation_accuracy"]) == {str(c) for c in L2_CHOICES}
    assert events and events[-1].metrics["l2_penalty"] == model.params["chosen_l2_penalty"]
    # the rule: the strongest penalty within one standard error of the best validation accuracy
    train, check = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    chosen, scores = LogisticRegressionClassifier().choose_l2_penalty(x[train], y[train], (x[check], y[check]))
    best = max(scores.values())
    error = np.sqrt(best * (1 - best) / check.sum())
    assert scores[chosen] >= best - error
    assert all(scores[c] < best - error for c in L2_CHOICES if c > chosen)


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_the_composed_task_is_fitted_with_validation_and_updated_on_raw_audio_or_features(estimator):
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    chosen = names(60)
    raw = [AnnotatedFeature(read_audio(FSDD / n), n[0]) for n in chosen]  # at their own 8 kHz
    task = AudioFeaturePrint().appending(estimator(random_seed=2))
    fitted = task.fitted(raw[:40], validate_on=raw[40:])
    assert isinstance(fitted, StreamClassifier)
    clip = read_audio(FSDD / "5_lucas_40.wav", sample_rate=8000)
    assert fitted.applied(clip).label in "0123456789"  # one label for the clip

    from_audio, from_features = task.make_transformer(), task.make_transformer()
    features = task.preprocessed(raw)  # extracted once
    for start in range(0, 60, 20):
        task.update(from_audio, raw[start:start + 20])
        task.update(from_features, features[start:start + 20])
    assert from_audio.model == from_features.model  # the same model, whichever way the features came
    assert sorted(from_audio.model.classes) == sorted({n[0] for n in chosen})
    assert isinstance(from_audio.applied(clip).probability, float)


def test_a_model_saves_and_loads_through_the_public_api(tmp_path):
    import numpy as np

    from cadence import AnnotatedFeature, ClassifierModel, LogisticRegressionClassifier, ModelFileError

    rng = np.random.default_rng(0)
    data = [AnnotatedFeature(rng.normal(label, 0.3, 4), str(label)) for label in (0, 1, 2) * 10]
    model = LogisticRegressionClassifier(l2_penalty=0.01).fitted(data)
    path = model.save(tmp_path / "digits.safetensors", {"note": "three blobs"})
    loaded = ClassifierModel.load(path)
    assert loaded == model and loaded.applied(np.ones(4)) == model.applied(np.ones(4))
    (tmp_path / "not.safetensors").write_bytes(b"nothing")
    with pytest.raises(ModelFileError, match="not.safetensors"):
        ClassifierModel.load(tmp_path / "not.safetensors")


def test_a_fitted_logistic_regression_takes_updates_as_the_network_does():
    import numpy as np

    from cadence import AnnotatedFeature, FullyConnectedNetworkClassifier, LogisticRegressionClassifier

    rng = np.random.default_rng(0)
    data = [AnnotatedFeature(rng.normal(label, 0.3, 4), str(label)) for label in (0, 1, 2) * 10]
    more = [AnnotatedFeature(rng.normal(label, 0.3, 4), str(label)) for label in (0, 1, 2, 3) * 5]
    for estimator in (LogisticRegressionClassifier(l2_penalty=0.01), FullyConnectedNetworkClassifier(random_seed=1)):
        model = estimator.fitted(data)
        before = model.probabilities(np.ones((1, 4)))
        loss = estimator.update(model, more)  # a new label, 3, among them
        assert np.isfinite(loss) and "3" in model.classes, estimator
        assert model.probabilities(np.ones((1, 4))).shape == (1, 4) and before.shape == (1, 3)
