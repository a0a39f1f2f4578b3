"""Temporal transformers that reshape a stream: :class:`Downsample` and :class:`SlidingWindow`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import TemporalSession, TemporalTransformer
from .params import FLAG, Interval


@dataclass(frozen=True)
class Window(Sequence):
    """Consecutive stream elements ``start .. start + len - 1`` (as a list or a stacked array).

    Carrying ``start`` lets a consumer of overlapping windows tell old elements from new ones.
    """

    start: int
    elements: list | np.ndarray

    @property
    def stop(self) -> int:
        return self.start + len(self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def __getitem__(self, i: Any) -> Any:
        return self.elements[i]

    def __iter__(self) -> Iterator:
        return iter(self.elements)


def poses_in(seconds: float, rate: float) -> int:
    """Whole stream elements in ``seconds`` at ``rate`` a second (halves round up), at least one:
    how a setting in seconds becomes a count of poses (0.5 s at 15 a second: 8)."""
    return max(1, math.floor(seconds * rate + 0.5))


def frame_step(fps: float, rate: float | None) -> int:
    """Keep one frame in this many to pose at most ``rate`` frames a second of a source of ``fps``
    (None: every frame).  Frames a whole step apart keep the poses evenly spaced in time, which the
    counter's measures of motion assume: a 30 fps video at 15 is posed every other frame, 60 fps
    every fourth, 24 or 25 fps every other frame (12 or 12.5 a second).

    >>> [frame_step(fps, 15) for fps in (15, 24, 25, 30, 60)]
    [1, 2, 2, 2, 4]
    """
    return 1 if rate is None or fps <= rate else math.ceil(fps / rate - 1e-6)


class Downsample(TemporalTransformer):
    """Keeps every ``factor``-th element (the first, then one in ``factor``).

    Put in front of a pose extractor, it sets how many frames are posed, and the frames between
    are never posed (the talk's "downsample frames to speed up a video"; :func:`frame_step` gives
    the factor for a rate).  Cadence's video readers do the same before the frames between become
    images (``frames(step=...)``).

    >>> list(Downsample(factor=3).applied(range(10)))
    [0, 3, 6, 9]
    """

    _parameter_constraints = {"factor": [Interval(int, 1)]}

    def __init__(self, *, factor: int = 2):
        self.factor = factor

    def session(self) -> TemporalSession:
        self.check_params()
        return _DownsampleSession(self.factor)


class _DownsampleSession(TemporalSession):
    def __init__(self, factor: int):
        self.factor = factor
        self.seen = 0

    def push(self, element: Any) -> list:
        keep = self.seen % self.factor == 0
        self.seen += 1
        return [element] if keep else []

    def snapshot(self) -> dict:
        return {"seen": self.seen}

    def restore(self, state: dict) -> None:
        self.seen = int(state["seen"])


class SlidingWindow(TemporalTransformer):
    """Windows of ``length`` elements every ``stride`` elements.

    ``stride < length`` overlaps windows; ``stride > length`` skips elements between them.
    With ``partial=True`` (the default) the stream's tail that no full window covered is emitted
    as a shorter last window, so a stream shorter than one window still yields it: a counter must
    not lose the last reps of a clip.  ``as_array=True`` stacks elements into a numpy array.

    >>> [list(w) for w in SlidingWindow(length=3, stride=2).applied(range(6))]
    [[0, 1, 2], [2, 3, 4], [4, 5]]
    """

    _parameter_constraints = {"length": [Interval(int, 1)], "stride": [Interval(int, 1), None],
                              "partial": [FLAG], "as_array": [FLAG]}

    def __init__(self, *, length: int = 90, stride: int | None = None, partial: bool = True, as_array: bool = False):
        self.length = length
        self.stride = stride
        self.partial = partial
        self.as_array = as_array

    def session(self) -> TemporalSession:
        self.check_params()
        stride = self.length if self.stride is None else self.stride
        return _SlidingWindowSession(self.length, stride, self.partial, self.as_array)


class _SlidingWindowSession(TemporalSession):
    def __init__(self, length: int, stride: int, partial: bool, as_array: bool):
        self.length, self.stride, self.partial, self.as_array = length, stride, partial, as_array
        self.buffer: list = []
        self.buffer_start = 0  # stream index of buffer[0]
        self.next_start = 0  # stream index where the next window starts
        self.covered = 0  # stream index after the last element any window has held

    def _window(self, start: int, elements: list) -> Window:
        return Window(start, np.stack(elements) if self.as_array else list(elements))

    def push(self, element: Any) -> list:
        index = self.buffer_start + len(self.buffer)
        if index >= self.next_start:
            self.buffer.append(element)
        else:  # stride > length: this element falls between windows
            self.buffer_start = index + 1
        if len(self.buffer) < self.length or self.buffer_start != self.next_start:
            return []
        window = self._window(self.next_start, self.buffer)
        self.covered = window.stop
        self.next_start += self.stride
        drop = min(self.stride, len(self.buffer))
        self.buffer = self.buffer[drop:]
        self.buffer_start += drop
        return [window]

    def finish(self) -> list:
        tail = [e for i, e in enumerate(self.buffer) if self.buffer_start + i >= self.next_start]
        if not self.partial or not tail or self.buffer_start + len(self.buffer) <= self.covered:
            return []
        return [self._window(max(self.next_start, self.buffer_start), tail)]

    def snapshot(self) -> dict:
        return {"buffer": list(self.buffer), "buffer_start": self.buffer_start,
                "next_start": self.next_start, "covered": self.covered}

    def restore(self, state: dict) -> None:
        self.buffer = list(state["buffer"])
        self.buffer_start = int(state["buffer_start"])
        self.next_start = int(state["next_start"])
        self.covered = int(state["covered"])
