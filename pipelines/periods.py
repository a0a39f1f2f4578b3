"""How repetitive a body's motion is, and at what tempo: :class:`HumanBodyActionPeriodPredictor`.

Each frame's pose becomes a body shape (as the counter sees it); the recent shapes, less their
mean, are projected on their main directions of motion, and their autocorrelation is taken (by
FFT) over lags from ``minimum_period`` to ``maximum_period`` seconds.  A body repeating a motion every
P seconds correlates with itself at a lag of P: the period is the lag of the highest peak (the shortest
lag reaching 90 % of it, so that two repetitions are not taken for one), and the periodicity is the
correlation there, between 0 (no repetition: standing still, walking about, jitter) and 1 (the same
motion over and over).  Predictions are causal: a frame's comes from the frames up to its window's
end, so a set must last about two repetitions before it is recognised.  Frames without a person
are filled in along the straight line between the poses on either side, so periods stay in time
of the stream however often detection drops out; after ``_GAP`` seconds of such frames, or at a cut
(a pose of a later shot, see ``Pose.shot``: another view, maybe another person), the frames before
are let go.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import TemporalSession, TemporalTransformer
from .bodyshape import body_shape, unseen_between
from .errors import ParameterError
from .params import Interval
from .temporal import Window, poses_in

_DIRECTIONS = 4  # main directions of motion the autocorrelation is taken over
_GAP = 1.0  # seconds without a person after which the motion before is let go (as the counter's gap)


@dataclass(frozen=True)
class PeriodPrediction:
    """The tempo at one frame (its position in the stream): ``period`` seconds per repetition
    (0 when none is seen) and ``periodicity`` in [0, 1]."""

    index: int
    period: float
    periodicity: float


class HumanBodyActionPeriodPredictor(TemporalTransformer):
    """Windows of poses (``Pose`` or None per frame) in, one :class:`PeriodPrediction` per new frame out.

    ``rate``: the poses a second it is fed.  ``history`` seconds are looked back over; periods
    from ``minimum_period`` to ``maximum_period`` seconds are considered.
    """

    _parameter_constraints = {"rate": [Interval(float, 1, 1000)], "history": [Interval(float, 0, 600, "neither")],
                              "minimum_period": [Interval(float, 0, None, "neither")],
                              "maximum_period": [Interval(float, 0, None, "neither")]}

    def __init__(self, *, rate: float = 30.0, history: float = 10.0, minimum_period: float = 0.27,
                 maximum_period: float = 8.0):
        self.rate = rate
        self.history = history
        self.minimum_period = minimum_period
        self.maximum_period = maximum_period

    def session(self) -> TemporalSession:
        self.check_params()
        return _PeriodSession(self)

    def _check_relations(self) -> None:
        owner = type(self).__name__
        if self.minimum_period >= self.maximum_period:
            raise ParameterError(owner, "minimum_period", f"must be below maximum_period ({self.maximum_period})")
        if self.history < 2 * self.minimum_period:
            raise ParameterError(owner, "history", f"must hold at least two of the shortest periods "
                                                   f"(2 x minimum_period = {2 * self.minimum_period})")


class _PeriodSession(TemporalSession):
    def __init__(self, p: HumanBodyActionPeriodPredictor):
        self.p = p
        self.history = max(4, poses_in(p.history, p.rate))  # the spans in poses
        self.lags = (max(2, poses_in(p.minimum_period, p.rate)), max(3, poses_in(p.maximum_period, p.rate)))
        self.gap = poses_in(_GAP, p.rate)
        self.seen = 0  # stream index of the next unseen frame
        self.shapes: deque = deque(maxlen=self.history)
        self.times: deque = deque(maxlen=self.history)  # their stream indexes
        self.shot = 0  # of the last pose seen

    def push(self, window: Window) -> list[PeriodPrediction]:
        new = [(window.start + i, pose) for i, pose in enumerate(window) if window.start + i >= self.seen]
        self.seen = max(self.seen, window.stop)
        for index, pose in new:
            shape = body_shape(pose)
            if shape is None:
                continue
            if self.times and unseen_between(self.times[-1], self.shot, index, pose.shot, self.gap):
                self.shapes.clear()
                self.times.clear()
            self.shot = pose.shot
            self.shapes.append(shape)
            self.times.append(index)
        lag, periodicity = self.estimate()
        return [PeriodPrediction(index, lag / self.p.rate, periodicity) for index, _ in new]

    def estimate(self) -> tuple[float, float]:
        """(period in poses, periodicity) of the shapes held now."""
        if len(self.shapes) < 2:
            return 0.0, 0.0
        data = self._every_frame()
        n = len(data)
        shortest, longest = self.lags
        if n < 2 * shortest:
            return 0.0, 0.0
        data = data - data.mean(axis=0)
        _, sizes, vt = np.linalg.svd(data, full_matrices=False)
        if sizes[0] < 1e-9:
            return 0.0, 0.0  # no motion at all
        signals = data @ vt[:_DIRECTIONS].T  # (n, directions), each weighted by its own variance
        spectrum = np.fft.rfft(signals, n=2 * n, axis=0)
        lagged = np.fft.irfft(np.abs(spectrum) ** 2, axis=0)[:n].sum(axis=1)
        correlation = lagged / np.arange(n, 0, -1) / (lagged[0] / n)  # unbiased, 1 at lag 0
        low, high = shortest, min(longest, n // 2)
        if high <= low:
            return 0.0, 0.0
        # peaks only: the slow decay from lag 0 of a smooth motion is no repetition
        inner = correlation[low:high + 1]
        before, after = correlation[low - 1:high], correlation[low + 1:high + 2]
        peaks = np.flatnonzero((inner > before) & (inner >= after[:len(inner)]) & (inner > 0))
        if not len(peaks):
            return 0.0, 0.0
        best = float(inner[peaks].max())
        lag = low + int(peaks[np.argmax(inner[peaks] >= 0.9 * best)])
        return float(lag), float(min(1.0, correlation[lag]))

    def _every_frame(self) -> np.ndarray:
        """The shapes held, one per stream frame (the last ``history``): frames without a person
        filled in along the straight line between their neighbours."""
        times, shapes = np.fromiter(self.times, float, len(self.times)), np.asarray(self.shapes)
        frames = np.arange(max(times[0], times[-1] - self.history + 1), times[-1] + 1)
        return np.stack([np.interp(frames, times, column) for column in shapes.T], axis=1)

    def snapshot(self) -> dict[str, Any]:
        return {"seen": self.seen, "shapes": [s.tolist() for s in self.shapes], "times": list(self.times),
                "shot": self.shot}

    def restore(self, state: dict[str, Any]) -> None:
        self.seen, self.shot = int(state["seen"]), int(state.get("shot", 0))
        self.shapes = deque((np.asarray(s, np.float64) for s in state["shapes"]), maxlen=self.history)
        times = state.get("times") or range(self.seen - len(self.shapes), self.seen)  # (older snapshots)
        self.times = deque((int(t) for t in times), maxlen=self.history)
