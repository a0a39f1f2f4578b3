"""Class-agnostic repetition counting from windows of poses.

:class:`HumanBodyActionCounter` needs no training and no per-exercise rule.  Each frame's pose
becomes a body-shape vector (joint x, y relative to the body's bounding box, so position and
distance to the camera do not matter).  The dominant motion is the first principal component of
the recent frames (less their slow trend); the signal along it is followed by a zig-zag (hysteresis) tracker, and every
swing between two turning points larger than an adaptive threshold is half a repetition.  The
leg in progress adds its fraction, so partial reps count.

Streaming: only frames not seen in an earlier window are consumed, and the tracker's state lives
across windows, so a rep that spans several windows is counted once.  The first ``warm_up``
frames with a person are held (their count meanwhile provisional) until the axis can be taken
from enough motion, and each time the axis is refitted the leg in progress is measured again on
it, so the count barely depends on where window seams fall (90/90 or 90/15, or frames without a
person in front: on the RepCount dev set the MAE spread over such shifts fell from 0.29-0.42 to
0.26-0.31).  Memory is bounded by ``history``.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from .base import TemporalSession, TemporalTransformer
from .pose import Pose
from .temporal import Window


def body_shape(pose: Pose | None) -> np.ndarray | None:
    """Joint (x, y) relative to the body's bounding box, in units of its larger side; None without a person.

    One scale for both axes keeps a lying body (plank, push-up) from having its small height, and
    with it the landmark jitter, blown up.  On RepCount sequences, already min-max normalised per
    axis, both sides are 1 and this changes nothing.
    """
    if pose is None:
        return None
    xy = pose.keypoints[:, :2].astype(np.float64)
    low = xy.min(axis=0)
    extent = float((xy.max(axis=0) - low).max())
    return ((xy - low) / (extent if extent > 1e-6 else 1.0)).ravel()


class HumanBodyActionCounter(TemporalTransformer):
    """Windows of poses (``Pose`` or None per frame) in, one cumulative fractional count per window out.

    ``threshold`` is the share of the recent motion range a swing must cover to count;
    ``minimum_amplitude`` (in body-size units) keeps still holds and jitter at zero;
    ``history`` frames are kept for the axis, which is first taken once ``warm_up`` frames with a
    person are in; ``smoothing`` frames are averaged against jitter;
    a swing out and back whose outward leg lasts less than ``glitch_share`` of the median recent
    leg is a glitch (a pose error, a twitch) and is taken back rather than counted; once reps
    are under way the bar is at most ``swing_share`` of their median swing, so reps smaller than
    the motion's overall range (arms only, after whole-body moves) still count; after more than
    ``gap`` frames without a person the tracker starts a new leg, keeping the count, since a
    change seen across a gap in detection is no evidence of a swing (the legs cut by the gap
    count their seen fractions).
    """

    def __init__(self, history: int = 450, threshold: float = 0.35, minimum_amplitude: float = 0.25,
                 smoothing: int = 5, trend_window: int = 241, glitch_share: float = 0.4, swing_share: float = 0.4,
                 gap: int = 45, warm_up: int = 120):
        self.history = history
        self.threshold = threshold
        self.minimum_amplitude = minimum_amplitude
        self.smoothing = smoothing
        self.trend_window = trend_window
        self.glitch_share = glitch_share
        self.swing_share = swing_share
        self.gap = gap
        self.warm_up = warm_up

    def session(self) -> TemporalSession:
        if self.history < 30:
            raise ValueError(f"{self!r}: history must hold at least 30 frames")
        if not 0 < self.threshold < 1:
            raise ValueError(f"{self!r}: threshold must lie in (0, 1)")
        if not 3 <= self.warm_up <= self.history:
            raise ValueError(f"{self!r}: warm_up must lie between 3 frames and history ({self.history})")
        if self.gap < 1:
            raise ValueError(f"{self!r}: gap must be at least 1 frame")
        return _CounterSession(self)

    def count(self, poses: list[Pose | None]) -> float:
        """The count of a whole sequence at once (one window holding it all)."""
        session = self.session()
        return session.push(Window(0, list(poses)))[-1] if poses else 0.0


class _CounterSession(TemporalSession):
    def __init__(self, params: HumanBodyActionCounter):
        self.p = params
        self.seen = 0  # stream index of the next unseen frame
        self.raw: deque = deque(maxlen=max(1, params.smoothing))  # for the moving average
        self.shapes: deque = deque(maxlen=params.history)
        self.axis: np.ndarray | None = None
        self.extremes = 0  # confirmed turning points
        self.direction = 0  # +1 rising, -1 falling, 0 before the first turning point
        self.anchor: np.ndarray | None = None  # shape at the last turning point
        self.peak: np.ndarray | None = None  # shape farthest from the anchor in the current leg
        self.low: np.ndarray | None = None  # before the first turning point: lowest and highest
        self.high: np.ndarray | None = None
        self.last_swing = 0.0
        self.count = 0.0
        self.t = 0  # stream index of the frame tracked last; the times below are stream indexes
        self.peak_t = self.anchor_t = self.low_t = self.high_t = 0
        self.before: tuple[np.ndarray, int] | None = None  # the turning point before the anchor
        self.legs: deque = deque(maxlen=8)  # durations of the recent legs
        self.swings: deque = deque(maxlen=8)  # and their sizes
        self.banked = 0.0  # the count before the last gap in detection (the tracker restarts after one)
        self.last_seen = -1  # stream index of the last frame with a person
        self.times: deque = deque(maxlen=params.history)  # stream indexes of the shapes
        self.pending: list = []  # (index, shape) not tracked yet, (index, None) for a gap in detection
        self.resumed = False  # tracking restarted after a gap ...
        self.resume_from: np.ndarray | None = None  # ... here, and the way to the next turn is a fraction of a rep

    # -- per window ------------------------------------------------------------------------
    def push(self, window: Window) -> list:
        new = [(window.start + i, p) for i, p in enumerate(window) if window.start + i >= self.seen]
        self.seen = max(self.seen, window.stop)
        added = False
        for index, pose in new:
            shape = body_shape(pose)
            if shape is None:
                continue
            if self.last_seen >= 0 and index - self.last_seen > self.p.gap:
                self.raw.clear()
                self.pending.append((index, None))
            self.last_seen = index
            self.raw.append(shape)
            smoothed = np.mean(self.raw, axis=0)
            self.shapes.append(smoothed)
            self.times.append(index)
            self.pending.append((index, smoothed))
            added = True
        if added:
            if len(self.shapes) >= self.p.warm_up:
                self._update_axis()
                self._remeasure_leg()
                self._run(self.pending)
                self.pending = []
                self.count = self._current_count()
            else:  # too few frames to trust the axis yet: a provisional count, state untouched
                provisional = copy.deepcopy(self)
                provisional._update_axis()
                provisional._run(provisional.pending)
                self.count = provisional._current_count()
        return [self.count]

    def _run(self, frames: list) -> None:
        for index, shape in frames:
            if shape is None:
                self._restart()
            else:
                self._track(shape, index)

    def _remeasure_leg(self) -> None:
        """With a new axis, find the leg in progress's extreme again (or the turn it now shows)."""
        if self.direction == 0 or self.anchor is None:
            return
        last = self.t
        self.peak, self.peak_t = self.anchor, self.anchor_t
        for t, shape in zip(self.times, self.shapes):
            if self.anchor_t < t <= last:
                self._track(shape, t)

    def _update_axis(self) -> None:
        data = np.asarray(self.shapes)
        if len(data) < 3:
            return
        # The axis of motion: PCA of the shapes less their slow trend, so that a change of person,
        # view or stance (an offset) cannot take over the axis from the repeated motion.
        trend = uniform_filter1d(data, size=min(self.p.trend_window, len(data)), axis=0, mode="nearest")
        _, _, vt = np.linalg.svd(data - trend, full_matrices=False)
        axis = vt[0]
        if self.axis is not None and axis @ self.axis < 0:
            axis = -axis
        self.axis = axis
        # The motion's range from its inner half (scaled to a 5-95 % range), so a few large
        # excursions do not raise the bar for the ordinary reps around them.
        projected = data @ axis
        q25, q75 = np.percentile(projected, [25, 75])
        spread = (q75 - q25) * 1.8
        self.swing_threshold = max(self.p.minimum_amplitude, self.p.threshold * spread)
        if len(self.swings) >= 4:
            typical = self.p.swing_share * float(np.median(self.swings))
            self.swing_threshold = min(self.swing_threshold, max(self.p.minimum_amplitude, typical))

    # -- the zig-zag tracker -----------------------------------------------------------------
    def _s(self, shape: np.ndarray) -> float:
        return float(shape @ self.axis)

    def _track(self, shape: np.ndarray, index: int) -> None:
        if self.axis is None:
            return
        self.t = index  # stream time: a leg across frames without a person keeps its real length
        s, threshold = self._s(shape), self.swing_threshold
        if self.direction == 0:
            if self.low is None and self.resumed:
                self.resume_from = shape
            if self.low is None or s < self._s(self.low):
                self.low, self.low_t = shape, self.t
            if self.high is None or s > self._s(self.high):
                self.high, self.high_t = shape, self.t
            if self._s(self.high) - s >= threshold:
                self._turn(self.high, self.high_t, -1, shape)
            elif s - self._s(self.low) >= threshold:
                self._turn(self.low, self.low_t, +1, shape)
            return
        if (s - self._s(self.peak)) * self.direction > 0:
            self.peak, self.peak_t = shape, self.t
        elif (self._s(self.peak) - s) * self.direction >= threshold:
            if self._is_glitch():
                self._take_back(shape)
            else:
                self._turn(self.peak, self.peak_t, -self.direction, shape)

    def _is_glitch(self) -> bool:
        """The leg now ending was too short beside the recent ones to be part of a repetition."""
        return (self.before is not None and len(self.legs) >= 4
                and self.peak_t - self.anchor_t < self.p.glitch_share * float(np.median(self.legs)))

    def _take_back(self, shape: np.ndarray) -> None:
        """Undo the last turning point: the leg before it goes on, its extreme the anchor or now."""
        assert self.before is not None and self.anchor is not None
        self.extremes -= 1
        self.legs.pop()  # (its size stays among the recent swings: it was a real excursion of the body)
        self.direction = -self.direction
        turned_at, turned_t = self.anchor, self.anchor_t
        self.anchor, self.anchor_t = self.before
        self.before = None
        if (self._s(shape) - self._s(turned_at)) * self.direction > 0:
            self.peak, self.peak_t = shape, self.t
        else:
            self.peak, self.peak_t = turned_at, turned_t

    def _turn(self, at: np.ndarray, at_t: int, direction: int, now: np.ndarray) -> None:
        if self.anchor is None and self.resume_from is not None:
            swing = self.last_swing or self.swing_threshold / self.p.threshold
            self.banked += 0.5 * min(1.0, abs(self._s(at) - self._s(self.resume_from)) / max(swing, 1e-9))
            self.resume_from = None
        if self.anchor is not None:
            self.last_swing = abs(self._s(at) - self._s(self.anchor))
            self.legs.append(at_t - self.anchor_t)
            self.swings.append(self.last_swing)
            self.before = (self.anchor, self.anchor_t)
        self.extremes += 1
        self.anchor, self.anchor_t, self.direction, self.peak, self.peak_t = at, at_t, direction, now, self.t

    def _restart(self) -> None:
        """After a gap in detection: what happened unseen is unknown, so the leg in progress ends
        where it was (its fraction kept) and the next one starts afresh, never measured across the gap."""
        self.banked = self._current_count()
        self.extremes, self.direction, self.resumed = 0, 0, True  # (last_swing stays: the scale of the next fraction)
        self.anchor = self.peak = self.low = self.high = self.before = None

    def _current_count(self) -> float:
        if self.extremes == 0 or self.axis is None:
            return self.banked
        swing = self.last_swing or self.swing_threshold / self.p.threshold
        progress = abs(self._s(self.peak) - self._s(self.anchor)) / max(swing, 1e-9)
        return self.banked + 0.5 * (self.extremes - 1) + 0.5 * min(1.0, progress)

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        arrays = lambda xs: [np.asarray(x).tolist() for x in xs]  # noqa: E731
        one = lambda x: None if x is None else np.asarray(x).tolist()  # noqa: E731
        return {
            "seen": self.seen, "raw": arrays(self.raw), "shapes": arrays(self.shapes), "axis": one(self.axis),
            "extremes": self.extremes, "direction": self.direction, "anchor": one(self.anchor),
            "peak": one(self.peak), "low": one(self.low), "high": one(self.high),
            "last_swing": self.last_swing, "count": self.count, "banked": self.banked, "last_seen": self.last_seen,
            "swing_threshold": getattr(self, "swing_threshold", None),
            "times": [self.t, self.peak_t, self.anchor_t, self.low_t, self.high_t], "legs": list(self.legs), "swings": list(self.swings),
            "before": None if self.before is None else [one(self.before[0]), self.before[1]],
            "shape_times": list(self.times), "pending": [[i, one(x)] for i, x in self.pending],
            "resumed": self.resumed, "resume_from": one(self.resume_from),
        }

    def restore(self, state: dict[str, Any]) -> None:
        one = lambda x: None if x is None else np.asarray(x, dtype=np.float64)  # noqa: E731
        self.seen = int(state["seen"])
        self.raw = deque((np.asarray(x) for x in state["raw"]), maxlen=self.raw.maxlen)
        self.shapes = deque((np.asarray(x) for x in state["shapes"]), maxlen=self.shapes.maxlen)
        self.axis, self.anchor, self.peak = one(state["axis"]), one(state["anchor"]), one(state["peak"])
        self.low, self.high = one(state["low"]), one(state["high"])
        self.extremes, self.direction = int(state["extremes"]), int(state["direction"])
        self.last_swing, self.count = float(state["last_swing"]), float(state["count"])
        self.banked, self.last_seen = float(state["banked"]), int(state["last_seen"])
        if state.get("swing_threshold") is not None:
            self.swing_threshold = float(state["swing_threshold"])
        self.t, self.peak_t, self.anchor_t, self.low_t, self.high_t = (int(x) for x in state["times"])
        self.legs = deque((int(x) for x in state["legs"]), maxlen=self.legs.maxlen)
        self.swings = deque((float(x) for x in state["swings"]), maxlen=self.swings.maxlen)
        self.before = None if state["before"] is None else (one(state["before"][0]), int(state["before"][1]))
        self.times = deque((int(t) for t in state["shape_times"]), maxlen=self.times.maxlen)
        self.pending = [(int(i), one(x)) for i, x in state["pending"]]
        self.resumed, self.resume_from = bool(state["resumed"]), one(state["resume_from"])
