"""The component model: composition, functions as components, streams, events, conformance."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import numpy as np
import pytest

from cadence.pipelines import (AnnotatedFeature, ComposedEstimator, ComposedTemporalTransformer, ComposedTransformer,
                       Downsample, Estimator, Event, FunctionTransformer, HumanBodyActionCounter,
                       FullyConnectedNetworkClassifier, HumanBodyActionPeriodPredictor, SlidingWindow,
                       TemporalTransformer, Transformer)
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.snapshots import decode_snapshot, encode_snapshot
from cadence.pipelines.tracking import PersonTracker


class Scale(Transformer):
    def __init__(self, factor: float = 2.0):
        self.factor = factor

    def applied(self, x):
        return x * self.factor


class MeanCenter(Estimator):
    """Learns the mean of the features and subtracts it."""

    def fitted(self, data, event_handler=None):
        mean = float(np.mean([d.feature for d in data]))
        return FunctionTransformer(lambda x: x - mean)


def test_transformers_compose_by_appending_and_pipe():
    composed = Scale(2).appending(Scale(3))
    assert isinstance(composed, ComposedTransformer)
    assert composed.applied(1) == 6
    assert (Scale(2) | Scale(3) | Scale(5)).applied(1) == 30
    assert len((Scale(2) | Scale(3) | Scale(5)).steps) == 3  # flattened, not nested


def test_plain_functions_are_components():
    assert Scale(2).map(lambda x: x + 1).applied(3) == 7
    assert (Scale(2) | str).applied(3) == "6"
    with pytest.raises(TypeError, match="cannot compose"):
        Scale(2).appending(42)


def test_transformer_then_temporal_is_temporal_and_lazy():
    pipeline = Scale(10).appending(SlidingWindow(length=2, stride=2))
    assert isinstance(pipeline, TemporalTransformer)
    consumed = []

    def source():
        for i in range(100):
            consumed.append(i)
            yield i

    stream = iter(pipeline.applied(source()))
    first = next(stream)
    assert list(first) == [0, 10] and first.start == 0
    assert len(consumed) == 2  # one element at a time, not the whole source


def test_temporal_then_transformer_maps_each_element():
    pipeline = Downsample(factor=2).appending(Scale(10))
    assert isinstance(pipeline, ComposedTemporalTransformer)
    assert list(pipeline.applied(range(6))) == [0, 20, 40]


def test_estimator_appended_to_transformer_fits_a_composed_transformer():
    composed = Scale(2).appending(MeanCenter())
    assert isinstance(composed, ComposedEstimator)
    data = [AnnotatedFeature(x, "label") for x in (1, 2, 3)]
    model = composed.fitted(data)
    assert isinstance(model, Transformer)
    assert model.applied(2) == pytest.approx(0.0)  # 2*2 - mean(2, 4, 6)
    pre = composed.preprocessed(data)
    assert [d.feature for d in pre] == [2, 4, 6]
    assert composed.fitted_to_preprocessed(pre).applied(2) == pytest.approx(0.0)


def test_async_iteration_gives_the_same_stream():
    pipeline = Scale(1).appending(SlidingWindow(length=3, stride=2))

    async def collect():
        return [list(w) async for w in pipeline.applied(range(8))]

    assert asyncio.run(collect()) == [list(w) for w in pipeline.applied(range(8))]


def test_async_source_is_consumed_with_async_for():
    async def numbers():
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    async def collect():
        return [x async for x in Downsample(factor=2).applied(numbers())]

    assert asyncio.run(collect()) == [0, 2, 4]
    with pytest.raises(TypeError, match="async for"):
        list(Downsample(factor=2).applied(numbers()))


def test_event_handler_reports_progress_against_the_length_hint():
    events: list[Event] = []
    list(Downsample(factor=2).applied(list(range(4)), event_handler=events.append))
    assert [e.item_count for e in events] == [1, 2, 3, 4]
    assert events[-1].total_item_count == 4 and events[-1].fraction_completed == 1.0


def test_constructor_only_stores_arguments_and_repr_shows_them():
    window = SlidingWindow(length=90, stride=15)
    assert repr(window) == "SlidingWindow(length=90, stride=15, partial=True, as_array=False)"
    assert window == SlidingWindow(length=90, stride=15) and window != SlidingWindow(length=90, stride=30)
    SlidingWindow(length=0)  # invalid values are reported when used, with the component named
    with pytest.raises(ValueError, match="SlidingWindow: length"):
        list(SlidingWindow(length=0).applied([1]))


# -- conformance: every component's parameters ---------------------------------------------------
# Components that hold other components or learned weights rather than settings.
HOLDERS = {"ComposedEstimator", "ComposedTemporalTransformer", "ComposedTransformer", "FunctionTransformer",
           "StreamClassifier", "ClassifierModel", "FeedCounting", "Component"}


def _configured_components():
    import inspect

    import cadence
    from cadence.pipelines.base import Component

    return [value for name in cadence.__all__ if inspect.isclass(value := getattr(cadence, name))
            and issubclass(value, Component) and not inspect.isabstract(value) and name not in HOLDERS]


@pytest.mark.parametrize("component", _configured_components(), ids=lambda c: c.__name__)
def test_every_setting_is_declared_once_keyword_only_and_checked(component):
    import inspect

    from cadence.pipelines.errors import ParameterError

    parameters = [p for p in inspect.signature(component.__init__).parameters.values() if p.name != "self"]
    assert parameters and all(p.kind is p.KEYWORD_ONLY for p in parameters), "keyword-only arguments"
    assert set(component._parameter_constraints) == {p.name for p in parameters}, "a constraint per parameter"
    made = component().check_params()  # the defaults are accepted
    assert made.get_params() == {p.name: p.default for p in parameters} or component is FullyConnectedNetworkClassifier
    first = parameters[0].name
    with pytest.raises(ParameterError, match=f"{component.__name__}: {first} must be") as caught:
        made.set_params(**{first: "not a setting"})
    assert caught.value.parameter == first
    with pytest.raises(ParameterError, match="is not a parameter"):
        component().set_params(no_such_setting=1)


# -- conformance: every temporal component --------------------------------------------------------

def _pose_stream(n=300):
    from cadence.pipelines import Pose
    t = np.arange(n)
    base = np.random.default_rng(0).uniform(0.2, 0.8, (33, 4)).astype(np.float32)
    out = []
    for i in t:
        k = base.copy()
        k[15:17, 1] += 0.3 * np.sin(2 * np.pi * i / 40)  # wrists go up and down
        k[:, 3] = 1
        out.append(Pose(k))
    return out


def _group_stream(n=240):
    """Two people side by side, one squatting, one raising arms at another tempo; a third passes by."""
    from cadence.pipelines.repetitions import PeopleInFrame
    from cadence.pipelines import Pose
    rng = np.random.default_rng(1)
    base = rng.uniform(0.0, 0.3, (33, 4)).astype(np.float32)
    frames = []
    for i in range(n):
        people = []
        for x0, period, joints in ((0.1, 40, slice(23, 33)), (0.55, 55, slice(11, 23))):
            k = base.copy()
            k[:, 0] += x0
            k[joints, 1] += 0.1 * np.sin(2 * np.pi * i / period)
            k[:, 3] = 1
            people.append(Pose(k))
        if 100 <= i < 120:
            k = base.copy() * 0.5
            k[:, 0] += 0.8
            k[:, 3] = 1
            people.append(Pose(k))
        frames.append(PeopleInFrame(i, i / 30, 0.0, people[::-1] if i % 2 else people))
    return frames


TEMPORAL = [
    (Downsample(factor=3), list(range(50))),
    (SlidingWindow(length=7, stride=3), list(range(50))),
    (SlidingWindow(length=4, stride=9), list(range(50))),
    (SlidingWindow(length=90, stride=15).appending(HumanBodyActionCounter()), _pose_stream()),
    (SlidingWindow(length=90, stride=15).appending(HumanBodyActionPeriodPredictor()), _pose_stream()),
    (PersonTracker(), [list(f.people) for f in _group_stream()]),
    (RepetitionCounting(window_seconds=2.0, stride_seconds=0.5, per_person=True).feed_counting("gym"), _group_stream()),
]


@pytest.mark.parametrize("component,stream", TEMPORAL, ids=lambda c: type(c).__name__)
def test_applying_is_pure_and_repeatable(component, stream):
    before = copy.deepcopy(component)
    first = list(component.applied(stream))
    assert _same(first, list(component.applied(stream)))
    assert component == before


@pytest.mark.parametrize("component,stream", TEMPORAL, ids=lambda c: type(c).__name__)
def test_snapshot_round_trips_mid_stream(component, stream):
    whole = list(component.applied(stream))
    half = len(stream) // 2
    session = component.session()
    outputs = [y for x in stream[:half] for y in session.push(x)]
    state = decode_snapshot(encode_snapshot(session.snapshot()))  # as cadence serve stores it: no pickle
    resumed = component.session()  # a restarted worker: a fresh session, then the saved state
    resumed.restore(state)
    outputs += [y for x in stream[half:] for y in resumed.push(x)] + resumed.finish()
    assert _same(outputs, whole)


def _same(a, b):
    if len(a) != len(b):
        return False
    a, b = _without_clock(a), _without_clock(b)
    return all((list(x) == list(y) and x.start == y.start) if hasattr(x, "start")
               else _same_tracked(x, y) if isinstance(x, dict)
               else x == y and getattr(x, "repetitions", None) == getattr(y, "repetitions", None) for x, y in zip(a, b))


def _without_clock(outputs: list) -> list:
    """Count updates carry a wall-clock read time (latency): not part of what is computed."""
    return [dataclasses.replace(x, captured_at=0.0) if hasattr(x, "captured_at") else x for x in outputs]


def _same_tracked(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(x[k] == y[k] for k in x)


# -- conformance: every estimator ----------------------------------------------------------------

def _labelled(n=120, seed=0):
    from cadence.pipelines import AnnotatedFeature

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    labels = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "up", "down")
    return [AnnotatedFeature(v, str(label)) for v, label in zip(x, labels)]


def _estimators():
    from cadence.pipelines import FullyConnectedNetworkClassifier, LogisticRegressionClassifier

    return [FullyConnectedNetworkClassifier(hidden_unit_counts=(8,), learning_rate=0.01, maximum_iterations=30,
                                            random_seed=4),
            LogisticRegressionClassifier(random_seed=4),
            LogisticRegressionClassifier(l2_penalty=0.01)]


@pytest.mark.parametrize("estimator", _estimators(), ids=repr)
def test_fitting_leaves_the_estimator_as_it_was_and_the_same_seed_repeats(estimator):
    data = _labelled()
    before = copy.deepcopy(estimator)
    first, second = estimator.fitted(data), estimator.fitted(data)
    assert estimator == before and first == second
    x = np.stack([d.feature for d in data])
    probabilities = first.probabilities(x)
    assert np.array_equal(first.probabilities(x), probabilities)  # applying changes nothing
    assert (first.predicted(x) == np.array([d.annotation for d in data])).mean() > 0.9


@pytest.mark.parametrize("estimator", _estimators(), ids=repr)
def test_updating_repeats_with_the_seed_and_survives_a_model_file(estimator, tmp_path):
    from cadence.pipelines.modelfile import load, save

    data = _labelled()
    a, b = estimator.make_transformer(), estimator.make_transformer()
    for start in range(0, 120, 40):
        estimator.update(a, data[start:start + 40])
        estimator.update(b, data[start:start + 40])
    assert a == b
    resumed = load(save(tmp_path / "m.safetensors", {"model": a}))[0]["model"]  # a checkpoint in between
    estimator.update(a, data[:40])
    estimator.update(resumed, data[:40])
    assert resumed == a


def test_snapshots_are_stored_without_pickle_and_what_they_cannot_hold_is_refused():
    from cadence.pipelines import Pose

    pose = Pose(np.arange(132, dtype=np.float32).reshape(33, 4), shot=2)
    state = {"a": (1, 2.5, None), "b": [pose, np.arange(6, dtype=np.int16).reshape(2, 3)], "c": float("nan"),
             "d": np.float64(0.25), "e": {"nested": (True, "text")}}
    data = encode_snapshot(state)
    assert data.startswith(b"cadence-snapshot-1\n")  # JSON and raw array bytes: reading it back runs no code
    back = decode_snapshot(data)
    assert back["a"] == (1, 2.5, None) and back["e"] == {"nested": (True, "text")}
    assert back["b"][0] == pose and back["b"][0].shot == 2 and back["b"][1].dtype == np.int16 and back["b"][1].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.isnan(back["c"]) and back["d"] == 0.25
    with pytest.raises(TypeError, match="cannot store a object"):
        encode_snapshot({"x": object()})
    with pytest.raises(TypeError, match="keys must be strings"):
        encode_snapshot({1: 2})
    with pytest.raises(ValueError, match="unknown tag"):
        decode_snapshot(b"cadence-snapshot-1\n" + (31).to_bytes(8, "little") + b'{"x":{"__cadence__":"pickle"}}')
    with pytest.raises(ValueError, match="not a cadence snapshot"):
        decode_snapshot(b"\x80\x04pickled")
