"""One declaration per setting: the constraints of a component's parameters, checked in one place.

A component lists its parameters' constraints in ``_parameter_constraints`` (as scikit-learn's
estimators do) and relations between them in ``_check_relations``; :meth:`Component.check_params`
applies both.  The command line, the HTTP API and ``cadence tune`` take their defaults from the
constructors and their checks from here, so a setting is declared once.

>>> from cadence.pipelines.params import Interval, OneOf
>>> str(Interval(int, 1, None))
'a whole number >= 1'
>>> Interval(float, 0, 1, closed="left").accepts(1.0)
False
>>> str(OneOf(("a", "b")))
"one of 'a', 'b'"
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError

_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


@dataclass(frozen=True)
class Interval:
    """A whole number (``int``) or a number (``float``) between ``low`` and ``high`` (None: unbounded);
    ``closed`` says which ends belong: "both", "left", "right" or "neither"."""

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def accepts(self, value: Any) -> bool:
        kind = numbers.Integral if self.type is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        left, right = _BRACKETS[self.closed]
        above = self.low is None or (value >= self.low if left == "[" else value > self.low)
        below = self.high is None or (value <= self.high if right == "]" else value < self.high)
        return above and below

    def __str__(self) -> str:
        what = "a whole number" if self.type is int else "a number"
        left, right = _BRACKETS[self.closed]
        if self.high is None:
            return f"{what} {'>=' if left == '[' else '>'} {self.low}" if self.low is not None else what
        if self.low is None:
            return f"{what} {'<=' if right == ']' else '<'} {self.high}"
        return f"{what} in {left}{self.low}, {self.high}{right}"


@dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    values: tuple

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class Layers:
    """Units per hidden layer: one whole number >= 1 for each layer, at least one layer."""

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
                and all(Interval(int, 1).accepts(v) for v in value))

    def __str__(self) -> str:
        return "units per hidden layer, each a whole number >= 1, as (100,) or (128, 64)"


@dataclass(frozen=True)
class Names:
    """A list of names, or a string of comma-separated names."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, Sequence) and all(isinstance(v, str) for v in value))

    def __str__(self) -> str:
        return "names, as a list or comma-separated"


FLAG = OneOf((True, False))


def describe(constraints: list) -> str:
    """What a parameter with these constraints accepts, in words."""
    return " or ".join("None" if c is None else str(c) for c in constraints)


def check(owner: object, constraints: dict[str, list]) -> None:
    """Raise :class:`ParameterError` for the first parameter of ``owner`` that no constraint accepts."""
    for name, allowed in constraints.items():
        check_value(type(owner), name, getattr(owner, name), allowed)


def check_value(owner: type, name: str, value: Any, allowed: list | None = None) -> Any:
    """``value`` if parameter ``name`` of class ``owner`` accepts it; else :class:`ParameterError`.
    Where a setting comes from outside (an HTTP field), this checks it as the component would."""
    allowed = owner._parameter_constraints[name] if allowed is None else allowed
    if not any(value is None if c is None else c.accepts(value) for c in allowed):
        raise ParameterError(owner.__name__, name, f"must be {describe(allowed)}, got {value!r}")
    return value
