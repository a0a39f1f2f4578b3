"""The component model: transformers, estimators, temporal transformers, and composition.

A component's constructor only stores its arguments (as in scikit-learn), so components are cheap
to build, print, compare and ship to another process; heavy resources are created on first use.

Temporal transformers process a stream through a :class:`TemporalSession`, a small state machine
(``push`` one element, ``finish`` at the end, ``snapshot``/``restore`` its state).  The same session
drives ``for`` loops, ``async for`` loops and the Ray actors, so no algorithm is written twice.
"""

from __future__ import annotations

import asyncio
import inspect
import operator
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from . import params
from .errors import ParameterError
from .events import Event, EventHandler

T = TypeVar("T")


class Component:
    """Shared behaviour of every component: composition, printing, parameters.

    A component declares its parameters once: the keyword-only constructor arguments, stored
    as attributes of the same name, and their constraints in ``_parameter_constraints``
    (see :mod:`cadence.pipelines.params`), which :meth:`check_params` applies.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {}

    def appending(self, other: Component | Callable) -> Component:
        """Return the composition that feeds this component's output into ``other``."""
        return compose(self, other)

    def __or__(self, other: Component | Callable) -> Component:
        return self.appending(other)

    def map(self, function: Callable) -> Component:
        """Append a plain function applied to each output."""
        return self.appending(FunctionTransformer(function))

    @classmethod
    def _parameter_names(cls) -> list[str]:
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, read back from attributes of the same name."""
        return {name: getattr(self, name) for name in self._parameter_names() if hasattr(self, name)}

    def set_params(self, **values: Any) -> Component:
        """Change parameters by name; returns the component, checked (:class:`ParameterError` if a
        value is out of range or a name unknown: the component then stays as it was)."""
        self.with_params(**values)
        for name, value in values.items():
            setattr(self, name, value)
        return self

    def with_params(self, **values: Any) -> Component:
        """A copy made from this component's parameters with ``values`` changed, checked."""
        known = self._parameter_names()
        for name in values:
            if name not in known:
                raise ParameterError(type(self).__name__, name, "is not a parameter",
                                     f"the parameters are {', '.join(known)}")
        return type(self)(**(self.get_params() | values)).check_params()

    def check_params(self) -> Component:
        """Raise :class:`ParameterError` naming the first parameter out of range; return the component."""
        params.check(self, self._parameter_constraints)
        self._check_relations()
        return self

    def _check_relations(self) -> None:
        """Checks that involve several parameters (a component overrides it)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))


class Transformer(Component, ABC):
    """Maps one input to one output. ``applied`` must not change the transformer."""

    @abstractmethod
    def applied(self, x: Any) -> Any: ...


class Estimator(Component, ABC):
    """Learns a transformer from annotated examples."""

    @abstractmethod
    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None) -> Transformer: ...


@dataclass
class AnnotatedFeature(Generic[T]):
    """One training example: a feature and its annotation (label)."""

    feature: T
    annotation: Any


class TemporalSession(ABC):
    """The state of one temporal transformer over one stream."""

    @abstractmethod
    def push(self, element: Any) -> list:
        """Consume one element; return the outputs it completes (often none or one)."""

    def finish(self) -> list:
        """The stream has ended: return any outputs still held back."""
        return []

    def snapshot(self) -> dict:
        """The state as plain data, so a restarted worker can resume with :meth:`restore`."""
        return {}

    def restore(self, state: dict) -> None:
        """Continue from a state returned by :meth:`snapshot`."""


class TemporalTransformer(Component, ABC):
    """Turns a stream into another stream, lazily, one element at a time."""

    @abstractmethod
    def session(self) -> TemporalSession:
        """A fresh session for one stream."""

    def applied(self, stream: Iterable | Any, event_handler: EventHandler | None = None) -> Stream:
        """The output stream; iterate it with ``for`` or ``async for``."""
        return Stream(self.session, stream, event_handler, origin=type(self).__name__)

    def resolved(self, outputs: Iterable[Any]) -> TemporalTransformer:
        """This transformer with any setting it takes from its input (``None`` meaning "as the
        input is") fixed as it was for ``outputs``, its outputs a model is fitted on; itself when
        it has none (see ``AudioFeaturePrint.sample_rate``)."""
        return self


class Stream:
    """A lazily transformed stream that works with both ``for`` and ``async for``.

    In ``async for`` the source is read and every element is processed on one worker thread per
    stream: the event loop stays free, and stateful resources (a MediaPipe graph) only ever see
    one thread.
    """

    def __init__(self, make_session: Callable[[], TemporalSession], source: Any,
                 event_handler: EventHandler | None = None, origin: str = "stream"):
        self._make_session = make_session
        self._source = source
        self._event_handler = event_handler
        self._origin = origin

    def __length_hint__(self) -> int:
        return operator.length_hint(self._source)

    def _emit(self, count: int) -> None:
        if self._event_handler is not None:
            total = operator.length_hint(self._source) or None
            self._event_handler(Event(self._origin, count, total))

    def __iter__(self) -> Iterator:
        if not hasattr(self._source, "__iter__"):
            raise TypeError(f"{self._origin}: the source {self._source!r} is asynchronous; use 'async for'")
        session = self._make_session()
        count = 0
        for element in self._source:
            yield from session.push(element)
            count += 1
            self._emit(count)
        yield from session.finish()

    async def __aiter__(self) -> AsyncIterator:
        session = self._make_session()
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence-stream") as worker:
            count = 0
            async for element in _aiterate(self._source, worker):
                for output in await loop.run_in_executor(worker, session.push, element):
                    yield output
                count += 1
                self._emit(count)
            for output in await loop.run_in_executor(worker, session.finish):
                yield output


_END = object()


async def _aiterate(source: Any, worker: ThreadPoolExecutor) -> AsyncIterator:
    """Iterate an async source directly, or a sync one on the worker thread."""
    if hasattr(source, "__aiter__"):
        async for element in source:
            yield element
        return
    async for element in in_thread(source, worker):
        yield element


async def in_thread(iterable: Iterable, worker: Executor | None = None) -> AsyncIterator:
    """``async for`` over a blocking iterable: ``iter`` and every ``next`` run on ``worker`` (default:
    the event loop's own executor), so the loop stays free.  The one bridge from blocking readers
    to ``async for`` (streams and video readers use it)."""
    loop = asyncio.get_running_loop()
    iterator = await loop.run_in_executor(worker, iter, iterable)
    while (element := await loop.run_in_executor(worker, next, iterator, _END)) is not _END:
        yield element


class FunctionTransformer(Transformer):
    """A plain function used as a transformer."""

    def __init__(self, function: Callable[[Any], Any]):
        self.function = function

    def applied(self, x: Any) -> Any:
        return self.function(x)

    def __repr__(self) -> str:
        return f"FunctionTransformer({getattr(self.function, '__name__', self.function)!r})"


class ComposedTransformer(Transformer):
    """Transformers applied one after the other."""

    def __init__(self, steps: tuple[Transformer, ...]):
        self.steps = tuple(steps)

    def applied(self, x: Any) -> Any:
        for step in self.steps:
            x = step.applied(x)
        return x

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.steps))


class _MapSession(TemporalSession):
    def __init__(self, transformer: Transformer):
        self.transformer = transformer

    def push(self, element: Any) -> list:
        return [self.transformer.applied(element)]


class _ChainSession(TemporalSession):
    """Sessions in series: each output of one is pushed into the next."""

    def __init__(self, sessions: list[TemporalSession]):
        self.sessions = sessions

    def _through(self, outputs: list, start: int) -> list:
        for session in self.sessions[start:]:
            outputs = [y for x in outputs for y in session.push(x)]
        return outputs

    def push(self, element: Any) -> list:
        return self._through([element], 0)

    def finish(self) -> list:
        outputs: list = []
        for session in self.sessions:
            outputs = [y for x in outputs for y in session.push(x)] + session.finish()
        return outputs

    def snapshot(self) -> dict:
        return {"sessions": [s.snapshot() for s in self.sessions]}

    def restore(self, state: dict) -> None:
        for session, part in zip(self.sessions, state["sessions"], strict=True):
            session.restore(part)


class ComposedTemporalTransformer(TemporalTransformer):
    """A chain in which at least one step is temporal; plain transformers apply per element."""

    def __init__(self, steps: tuple[Transformer | TemporalTransformer, ...]):
        self.steps = tuple(steps)

    def session(self) -> TemporalSession:
        return _ChainSession([
            s.session() if isinstance(s, TemporalTransformer) else _MapSession(s) for s in self.steps
        ])

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.steps))


class ComposedEstimator(Estimator):
    """A component followed by another, at least one an estimator; fitting fits them in order.

    When the first is a temporal transformer (``AudioFeaturePrint``), the estimator learns from each
    example's whole output stream (a clip's windows, pooled), and the fitted result is a
    :class:`StreamClassifier`: one output per stream, as in training.  If the estimator is
    updatable, so is the composition: ``make_transformer()``, then ``update(model, batch)`` with
    examples of raw input or of :meth:`preprocessed` features.
    """

    def __init__(self, first: Component, second: Component):
        self.first = first
        self.second = second

    def preprocessed(self, data: Iterable[AnnotatedFeature]) -> list[AnnotatedFeature]:
        """Run the leading transformer once, so the estimator can be fitted and refitted on the result."""
        if isinstance(self.first, Estimator):
            raise TypeError(f"{self!r}: preprocessed() needs a transformer before the estimator, "
                            "not an estimator; fit it first")
        return _preprocessed(self.first, data)

    def fitted_to_preprocessed(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None,
                               validate_on: Iterable[AnnotatedFeature] | None = None) -> Transformer:
        """Fit the estimator on the output of :meth:`preprocessed`; return the whole transformer."""
        if not isinstance(self.second, Estimator):
            raise TypeError(f"{self!r}: the last step is not an estimator")
        data = list(data)
        return self._joined(_resolved(self.first, data), self._fit_second(data, event_handler, validate_on))

    def fitted(self, data: Iterable[AnnotatedFeature], event_handler: EventHandler | None = None,
               validate_on: Iterable[AnnotatedFeature] | None = None) -> Transformer:
        """Fit on raw examples; ``validate_on`` (raw examples too) goes to the estimator, as
        Create ML's ``fitted(to:validateOn:)``."""
        data = list(data)
        first = self.first.fitted(data, event_handler) if isinstance(self.first, Estimator) else self.first
        features = _preprocessed(first, data)
        if validate_on is not None:
            validate_on = _preprocessed(first, validate_on)
        first = _resolved(first, features + (validate_on or []))
        second = self.second
        if isinstance(second, Estimator):
            second = self._fit_second(features, event_handler, validate_on)
        return self._joined(first, second)

    def _fit_second(self, features: list[AnnotatedFeature], event_handler: EventHandler | None,
                    validate_on: list[AnnotatedFeature] | None) -> Transformer:
        if validate_on is None:
            return self.second.fitted(features, event_handler)
        if "validate_on" not in inspect.signature(self.second.fitted).parameters:
            raise TypeError(f"{self.second!r} takes no validation data; fit without validate_on")
        return self.second.fitted(features, event_handler, validate_on=validate_on)

    # -- updatable, when the estimator is --------------------------------------------------------
    def make_transformer(self, *args: Any, **kwargs: Any) -> Transformer:
        """The composition with the estimator's fresh model (``make_transformer`` of the estimator)."""
        if not hasattr(self.second, "make_transformer"):
            raise TypeError(f"{self.second!r} is not updatable: it has no make_transformer")
        return self._joined(self.first, self.second.make_transformer(*args, **kwargs))

    def update(self, model: Transformer, batch: Iterable[AnnotatedFeature]) -> Any:
        """Update the model inside ``model`` (from :meth:`make_transformer`) with a batch of examples
        of raw input, or of features :meth:`preprocessed` already made; returns what the
        estimator's ``update`` returns (the mean loss)."""
        inner = model.model if isinstance(model, StreamClassifier) else _steps(model)[-1]
        batch = [d if _is_preprocessed(d.feature) else _preprocessed(self.first, [d])[0] for d in batch]
        return self.second.update(inner, batch)

    @staticmethod
    def _joined(first: Component, second: Component) -> Transformer:
        if isinstance(first, TemporalTransformer):
            return StreamClassifier(first, second)
        return compose(first, second)

    def __repr__(self) -> str:
        return f"{self.first!r} | {self.second!r}"


def _preprocessed(first: Component, data: Iterable[AnnotatedFeature]) -> list[AnnotatedFeature]:
    """The examples with ``first`` applied to their features."""
    return [AnnotatedFeature(_apply(first, d.feature), d.annotation) for d in data]


def _resolved(first: Component, features: list[AnnotatedFeature]) -> Component:
    """``first`` as it made these features (see :meth:`TemporalTransformer.resolved`)."""
    return first.resolved([d.feature for d in features]) if isinstance(first, TemporalTransformer) else first


def _is_preprocessed(feature: Any) -> bool:
    """A list of a temporal transformer's outputs (windows with a vector), or a feature vector."""
    if isinstance(feature, (list, tuple)):
        return not feature or hasattr(feature[0], "vector")
    return hasattr(feature, "ndim") and getattr(feature, "ndim", 0) == 1


class StreamClassifier(Transformer):
    """A temporal transformer followed by a model fitted on whole streams: ``applied`` gives one
    output per stream (the model applied to the stream's outputs together, as in training), and
    :meth:`per_element` one per element of the stream (each window on its own)."""

    def __init__(self, extractor: TemporalTransformer, model: Transformer):
        self.extractor = extractor
        self.model = model

    def applied(self, stream: Any) -> Any:
        return self.model.applied(list(self.extractor.applied(stream)))

    def per_element(self, stream: Any) -> list[tuple[Any, Any]]:
        """(element, the model's output for it alone) for each element of the extractor's output."""
        return [(element, self.model.applied(element)) for element in self.extractor.applied(stream)]

    def __repr__(self) -> str:
        return f"{self.extractor!r} | {self.model!r}"


def _apply(component: Component, feature: Any) -> Any:
    """Apply a transformer to one feature; a temporal one turns a whole stream into a list."""
    if isinstance(component, TemporalTransformer):
        return list(component.applied(feature))
    return component.applied(feature)


def _steps(component: Component) -> tuple:
    if isinstance(component, (ComposedTransformer, ComposedTemporalTransformer)):
        return component.steps
    return (component,)


def compose(first: Component | Callable, second: Component | Callable) -> Component:
    """The composition rules behind ``appending`` and ``|``."""
    first, second = _as_component(first), _as_component(second)
    if isinstance(first, Estimator) or isinstance(second, Estimator):
        return ComposedEstimator(first, second)
    steps = _steps(first) + _steps(second)
    if any(isinstance(s, TemporalTransformer) for s in steps):
        return ComposedTemporalTransformer(steps)
    return ComposedTransformer(steps)


def _as_component(value: Component | Callable) -> Component:
    if isinstance(value, Component):
        return value
    if callable(value):
        return FunctionTransformer(value)
    raise TypeError(f"cannot compose {value!r}: expected a component (Transformer, Estimator, "
                    "TemporalTransformer) or a plain function")
