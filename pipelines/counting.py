"""Class-agnostic repetition counting from windows of poses.

:class:`HumanBodyActionCounter` needs no training and no per-exercise rule.  Each frame's pose
becomes a body-shape vector (joint x, y relative to the body's bounding box, so position and
distance to the camera do not matter, and the limbs' angles at the elbows, shoulders, hips and
knees, which do not depend on who the person is; joints a ``JointsSelector`` left out stay still).  The
recent frames, less their slow trend, give the directions the body moves in (principal
components); a distance that weights each direction by its share of the motion squared measures
how far the body has moved.  A zig-zag (hysteresis) tracker follows that distance: the body has
turned back when it is more than an adaptive threshold away from its farthest shape and has come
most of that way back toward where the leg began.  Each leg between two turning points is half a
repetition, its motion timed from the last frame still at its start to the first at its end (a
pause at a turning point belongs to no leg).

Evidence of repetition (``legs.py``): a leg counts only once it is confirmed, alike in duration
and size with the leg one repetition before or after it (or with the rhythm confirmed so far, or
with the leg it comes back from, to where that began), and neither made of frame-to-frame jolts
nor a wiggle beside the set's swings; so setting up, walking about and a pose that flails add
nothing.  The count shown is what is confirmed plus, after a confirmed leg, the share of the leg
in progress (which its confirmation will at least add); legs not yet judged are not shown, so the
count never goes down and never shows what may be taken back.  The way from where tracking began to the first turn counts with the first confirmed leg,
and a stream too short to judge counts what it holds, so a single squat filmed alone counts 1.
Every confirmed repetition is reported (a :class:`CumulativeCount` carries them) with the frames
where it began and ended.

A distance rather than a position along one axis: when two directions of motion are about
equally large, the top principal axis can swap between them from one window to the next, and a
tracker reading positions along it sees false turns; the weighted distance barely changes.

Streaming: only frames not seen in an earlier window are consumed, and the tracker's state lives
across windows, so a rep that spans several windows is counted once.  The first
``warm_up_seconds`` of poses with a person are held until the directions of motion can be
estimated from them (their count meanwhile is provisional).  The directions are refitted every
``refit_seconds`` (half a second) of the stream, whatever the windows, and the leg in progress is
measured again each time: windows whose stride is a multiple of that count alike (3 s windows
every 3 s or every 0.5 s give the same count at the same frame), and the windows only set how
often a count is shown.  Memory is bounded by ``history_seconds``.

Every time span is a setting in seconds, turned into poses at ``rate``, the poses a second the
counter is fed (30 for every frame of a 30 fps video; the counting job sets it to the rate it
poses at): the same motion filmed at 24, 30 or 60 fps, or posed 15 times a second, is judged on
the same spans of time.
"""

from __future__ import annotations

import copy
from collections import deque, namedtuple
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d
from threadpoolctl import ThreadpoolController

from .base import TemporalSession, TemporalTransformer
from .errors import ParameterError
from .params import Interval
from .legs import CumulativeCount, Leg, LegBook, ZigZag
from .bodyshape import POSITIONS, body_shape, unseen_between, with_angles
from .pose import Pose
from .temporal import Window, poses_in

_DIRECTIONS = 8  # principal directions kept in the distance; later ones weigh (s_i / s_0)^2 ~ 0
_BACK = 0.75  # share of the threshold the body must come back toward the anchor for a turn
_STILL = 0.1  # share of a leg's size within which the body is still at its turning point
_WAIT = 8.0  # seconds a lone cycle waits on a set to come (a second still, then 1.5 repetitions of up to 4 s)
_JOLT_RATE = 30.0  # jolts are measured per (1/30 s) squared, the rate the roughness limit was set at
_RANGE = 10  # the motion's range runs from this percentile of the recent frames to its complement
_BLAS = ThreadpoolController()  # the directions' eigendecomposition (74 x 74) runs on one thread


class HumanBodyActionCounter(TemporalTransformer):
    """Windows of poses (``Pose`` or None per frame) in, one cumulative fractional count per window out.

    ``rate``: the poses a second it is fed (the time spans below are in seconds and become poses
    at that rate).  ``threshold`` is the share of the recent motion's range (10th to 90th
    percentile) a swing must cover to count;
    ``minimum_amplitude`` (in body-size units) keeps still holds and jitter at zero;
    ``history_seconds`` of poses are kept for the directions of motion, and the first
    ``warm_up_seconds`` with a person are needed before they are trusted; ``smoothing_seconds`` of
    poses are averaged against jitter, and ``trend_seconds`` make the slow trend taken out of the
    motion; a swing out and back whose outward leg lasts less than ``glitch_share`` of the median
    recent leg is a glitch (a pose error, a twitch) and is taken back rather than counted; once
    reps are under way the bar is at most ``swing_share`` of their median swing, so reps smaller
    than the motion's overall range (arms only, after whole-body moves) still count; after more
    than ``gap_seconds`` without a person, or at a cut (a pose of another shot, see ``Pose.shot``), the
    tracker starts a new leg, keeping the count, since a change seen across a gap in detection or a
    cut is no evidence of a swing.  Legs are confirmed when alike
    within ``rhythm_ratio`` in duration and size, and rejected as jitter when their raw frames jolt
    by more than ``roughness_limit`` of their size (see ``legs.py``).

    >>> import numpy as np
    >>> from cadence import Pose, SlidingWindow
    >>> rest = np.random.default_rng(0).uniform(0.3, 0.7, (33, 4)).astype(np.float32)
    >>> def pose(t):  # the legs bend and straighten every 40 frames
    ...     keypoints = rest.copy()
    ...     keypoints[23:, 1] += 0.1 * np.sin(2 * np.pi * t / 40)
    ...     return Pose(keypoints)
    >>> windows = SlidingWindow(length=90, stride=15).applied([pose(t) for t in range(400)])
    >>> round(list(HumanBodyActionCounter().applied(windows))[-1])  # 400 frames of 40: ten repetitions
    10
    """

    _parameter_constraints = {
        "rate": [Interval(float, 1, 1000)],
        "history_seconds": [Interval(float, 1, 600)], "threshold": [Interval(float, 0, 1, "neither")],
        "minimum_amplitude": [Interval(float, 0)], "smoothing_seconds": [Interval(float, 0, 10)],
        "trend_seconds": [Interval(float, 0, 600)], "glitch_share": [Interval(float, 0, 1)],
        "swing_share": [Interval(float, 0, 1)], "gap_seconds": [Interval(float, 0, 600, "neither")],
        "warm_up_seconds": [Interval(float, 0, 600, "neither")], "refit_seconds": [Interval(float, 0, 60, "neither")],
        "rhythm_ratio": [Interval(float, 1)], "roughness_limit": [Interval(float, 0)],
    }

    def __init__(self, *, rate: float = 30.0, history_seconds: float = 15.0, threshold: float = 0.33,
                 minimum_amplitude: float = 0.25, smoothing_seconds: float = 0.17, trend_seconds: float = 8.0,
                 glitch_share: float = 0.4, swing_share: float = 0.4, gap_seconds: float = 1.0,
                 warm_up_seconds: float = 4.0, refit_seconds: float = 0.5, rhythm_ratio: float = 2.0,
                 roughness_limit: float = 0.7):
        self.rate = rate
        self.history_seconds = history_seconds
        self.threshold = threshold
        self.minimum_amplitude = minimum_amplitude
        self.smoothing_seconds = smoothing_seconds
        self.trend_seconds = trend_seconds
        self.glitch_share = glitch_share
        self.swing_share = swing_share
        self.gap_seconds = gap_seconds
        self.warm_up_seconds = warm_up_seconds
        self.refit_seconds = refit_seconds
        self.rhythm_ratio = rhythm_ratio
        self.roughness_limit = roughness_limit

    def session(self) -> TemporalSession:
        self.check_params()
        return _CounterSession(self)

    def _check_relations(self) -> None:
        if self.warm_up_seconds > self.history_seconds:
            raise ParameterError(type(self).__name__, "warm_up_seconds",
                                 f"must not exceed history_seconds ({self.history_seconds})")

    def in_poses(self) -> _Spans:
        """The time spans as poses at :attr:`rate` (at 30 a second: history 450, smoothing 5,
        trend 241, gap 30, warm-up 120, refit 15)."""
        n = lambda seconds: poses_in(seconds, self.rate)  # noqa: E731
        return _Spans(history=max(30, n(self.history_seconds)), smoothing=n(self.smoothing_seconds),
                      trend=n(self.trend_seconds) | 1, gap=n(self.gap_seconds),
                      warm_up=min(max(3, n(self.warm_up_seconds)), max(30, n(self.history_seconds))),
                      refit=n(self.refit_seconds))

    def count(self, poses: list[Pose | None]) -> float:
        """The count of a whole sequence at once (one window holding it all)."""
        session = self.session()
        counts = session.push(Window(0, list(poses))) + session.finish() if poses else [0.0]
        return counts[-1]


# the counter's time spans in poses (see HumanBodyActionCounter.in_poses); the trend's is odd, to be centred
_Spans = namedtuple("_Spans", "history smoothing trend gap warm_up refit")


def _stacked(vectors: deque) -> np.ndarray:
    """Vectors of one length as the rows of one array (no rows: an empty array)."""
    return np.array(list(vectors), dtype=np.float64) if vectors else np.zeros((0, 0))


class _CounterSession(TemporalSession):
    def __init__(self, params: HumanBodyActionCounter):
        self.p = params
        self.n = n = params.in_poses()
        self.jolt_unit = (params.rate / _JOLT_RATE) ** 2  # a second difference per pose, in steps of 1/30 s
        self.seen = 0  # stream index of the next unseen frame
        self.raw: deque = deque(maxlen=n.smoothing)  # for the moving average
        self.shapes: deque = deque(maxlen=n.history)
        self.times: deque = deque(maxlen=n.history)  # their stream indexes
        self.jolts: deque = deque(maxlen=n.history)  # and how hard each frame's raw shape jolted
        self.pending: list = []  # (index, shape) not yet tracked, (index, None) for a gap
        self.fresh = False  # frames taken since the last advance
        self.last_seen = -1  # stream index of the last frame with a person
        self.shot = 0  # and the shot it was in
        self.metric: np.ndarray | None = None  # weighted principal directions (rows)
        self.swing_threshold = params.minimum_amplitude
        self.tracker = ZigZag(book=self._book())
        self.count = 0.0

    # -- per window ------------------------------------------------------------------------
    def push(self, window: Window) -> list:
        new = [(window.start + i, p) for i, p in enumerate(window) if window.start + i >= self.seen]
        self.seen = max(self.seen, window.stop)
        for index, pose in new:
            self._take(index, pose)
            if (index + 1) % self.n.refit == 0:
                self._advance(shown=False)
        self._advance(shown=True)
        return [CumulativeCount(self.count, self.tracker.book.repetitions())]

    def _take(self, index: int, pose: Pose | None) -> None:
        """A new frame: its shape smoothed and held until the next :meth:`_advance`."""
        shape = body_shape(pose)
        if shape is None:
            return
        if self.last_seen >= 0 and unseen_between(self.last_seen, self.shot, index, pose.shot, self.n.gap):
            self.raw.clear()
            self.pending.append((index, None))
        self.last_seen, self.shot = index, pose.shot
        self.jolts.append(self._jolt(shape, index))
        self.raw.append(shape)
        smoothed = np.mean(self.raw, axis=0)
        self.shapes.append(smoothed)
        self.times.append(index)
        self.pending.append((index, smoothed))
        self.fresh = True

    def _advance(self, shown: bool) -> None:
        """Refit the directions of motion to the frames so far and track the frames held: every
        ``refit_seconds`` of the stream, and at the end of each window, whose count is ``shown``.
        Before the warm-up only at the end of a window: a provisional count is shown then, and one
        looked at every half second would only have more chances to show a spurious swing."""
        if not self.fresh or len(self.shapes) < 3 or (not shown and len(self.shapes) < self.n.warm_up):
            return
        self.fresh = False
        self._update_metric()
        if len(self.shapes) >= self.n.warm_up:
            self._remeasure_leg()
            self._run(self.tracker, self.pending)
            self.pending = []
            self.tracker.book.settle_waiting(self.tracker.t, round(_WAIT * self.p.rate))  # (in poses)
            self.count = max(self.count, self._estimate(self.tracker))
        else:  # too few frames to trust the directions yet: a provisional count, state untouched
            provisional = copy.deepcopy(self.tracker)
            self._run(provisional, self.pending)
            self.count = max(self.count, self._estimate(provisional))

    def finish(self) -> list:
        z = self.tracker
        if self.pending and len(self.shapes) >= 3:  # a stream shorter than the warm-up: track what there is
            self._run(z, self.pending)
            self.pending = []
        tracked = z.anchor is not None and self.metric is not None
        if tracked:
            self._end_leg(z)
        made = z.book.final(z.run, self._fraction(z) if tracked else 0.0, z.anchor_t, z.peak_t)
        final = max(self.count, z.book.credited)
        if final == self.count and not made:
            return []
        self.count = final
        return [CumulativeCount(final, made)]

    def _book(self) -> LegBook:
        return LegBook(self.p.rhythm_ratio, self.p.roughness_limit)

    def _jolt(self, shape: np.ndarray, index: int) -> float:
        """How much the raw shape's velocity changed from one step to the next: next to nothing for
        a body moving smoothly, as large as the motion itself for a pose that flails from frame to
        frame (jitter, a lost person).  On consecutive frames it is the second difference; across
        frames without a person each step is taken per frame, so a body moving steadily while
        detection drops in and out has not jolted, though it moved further from one pose seen to
        the next.  It is a change of velocity over time, measured in steps of 1/30 s whatever the
        rate: a smooth swing posed 15 times a second jolts as little as at 30 (per pose, its second
        difference is four times as large)."""
        if len(self.raw) < 2:
            return 0.0
        before, last = index - self.times[-1], self.times[-1] - self.times[-2]  # frames in each step
        second = (shape - self.raw[-1]) / before - (self.raw[-1] - self.raw[-2]) / last
        return float(np.linalg.norm(second if self.metric is None else self.metric @ second)) * self.jolt_unit

    def _still_at(self, at: np.ndarray, start: int, end: int, size: float) -> list[int]:
        """The frames from ``start`` to ``end`` at which the body was still at the shape ``at``
        (within a tenth of a leg's ``size``); ``[start]`` at least.  A pause at a turning point
        belongs to no leg: a leg's motion runs from the last still frame at its start to the first
        at its end."""
        times = np.fromiter(self.times, int, len(self.times))
        inside = np.flatnonzero((times >= start) & (times <= end))
        if not len(inside):
            return [start]
        shapes = np.asarray(self.shapes)[inside]
        near = np.linalg.norm((shapes - at) @ self.metric.T, axis=1) <= _STILL * size
        return times[inside[near]].tolist() or [start]

    def _seen(self, start: int, end: int) -> bool:
        """Every frame from ``start`` to ``end`` had a person in it."""
        return sum(start <= t <= end for t in self.times) == end - start + 1

    def _roughness(self, start: int, end: int, size: float) -> float:
        """The mean jolt of the frames after ``start`` up to ``end``, as a share of the leg's size."""
        jolts = [j for t, j in zip(self.times, self.jolts) if start < t <= end]
        return float(np.mean(jolts)) / max(size, 1e-9) if jolts else 0.0

    def _update_metric(self) -> None:
        data = np.asarray(self.shapes)
        # The directions of motion: PCA of the shapes less their slow trend, so that a change of
        # person, view or stance (an offset) cannot take them over from the repeated motion.
        trend = uniform_filter1d(data, size=min(self.n.trend, len(data)), axis=0, mode="nearest")
        motion = data - trend
        with _BLAS.limit(limits=1, user_api="blas"):  # threads only contend at this size: ~40x slower when busy
            # the principal directions from the (74 x 74) scatter matrix: a third of an SVD's time
            variances, directions = np.linalg.eigh(motion.T @ motion)
        sizes = np.sqrt(np.maximum(variances[::-1], 0.0))
        vt = directions[:, ::-1].T
        weights = (sizes[:_DIRECTIONS] / max(float(sizes[0]), 1e-12)) ** 2
        self.metric = vt[:_DIRECTIONS] * weights[:, None]
        # The motion's range along the main direction, from the 10th to the 90th percentile: a few
        # large excursions do not raise the bar for the ordinary reps around them, and a motion that
        # holds at both ends (push-ups: most frames at the top or the bottom) keeps its full range,
        # where the inner half (used before) saw only one end and let wiggles there pass for turns.
        low, high = np.percentile(data @ vt[0], [_RANGE, 100 - _RANGE])
        self.swing_threshold = max(self.p.minimum_amplitude, self.p.threshold * (high - low))
        if len(self.tracker.swings) >= 4:
            typical = self.p.swing_share * float(np.median(self.tracker.swings))
            self.swing_threshold = min(self.swing_threshold, max(self.p.minimum_amplitude, typical))

    def _remeasure_leg(self) -> None:
        """With new directions of motion, find the leg in progress's farthest shape again (or its turn)."""
        z = self.tracker
        if z.anchor is None:
            return
        z.peak, z.peak_t, last = z.anchor, z.anchor_t, z.t
        self._run(z, [(t, s) for t, s in zip(self.times, self.shapes) if z.anchor_t < t <= last])

    # -- the zig-zag tracker -----------------------------------------------------------------
    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(self.metric @ (a - b)))

    def _run(self, z: ZigZag, frames: list) -> None:
        for index, shape in frames:
            if shape is None:
                self._restart(z)
            else:
                self._track(z, shape, index)

    def _track(self, z: ZigZag, shape: np.ndarray, index: int) -> None:
        z.t = index  # stream time: a leg across frames without a person keeps its real length
        if z.anchor is None:
            z.anchor, z.anchor_t, z.peak, z.peak_t, z.left_t = shape, index, shape, index, index
            return
        reach, now = self._distance(z.peak, z.anchor), self._distance(shape, z.anchor)
        if now > reach:
            z.peak, z.peak_t = shape, index
        elif self._turned_back(z, shape, reach - now):
            if self._is_glitch(z):
                self._take_back(z, shape)
            else:
                self._turn(z, shape)

    def _turned_back(self, z: ZigZag, shape: np.ndarray, come_back: float) -> bool:
        """Far enough from the farthest shape, and heading back: in one dimension the two are the
        same test, but two people's squats differ in shape as well as depth, so from the bottom of
        one the bottom of the next can be no nearer than the top between them was."""
        threshold = self.swing_threshold
        return come_back >= _BACK * threshold and self._distance(shape, z.peak) >= threshold

    def _is_glitch(self, z: ZigZag) -> bool:
        """The leg now ending was too short beside the recent ones to be part of a repetition."""
        return (z.before is not None and len(z.legs) >= 4
                and z.peak_t - z.anchor_t < self.p.glitch_share * float(np.median(z.legs)))

    def _take_back(self, z: ZigZag, shape: np.ndarray) -> None:
        """Undo the last turning point: the leg before it goes on, its extreme the anchor or now."""
        z.extremes -= 1
        z.legs.pop()  # (its size stays among the recent swings: it was a real excursion of the body)
        z.book.take_back()  # (never judged yet: a leg is judged once the next one has stood)
        turned_at, turned_t = z.anchor, z.anchor_t
        z.anchor, z.anchor_t, z.left_t, z.before = z.before, z.before_t, z.before_t, None
        if self._distance(shape, z.anchor) > self._distance(turned_at, z.anchor):
            z.peak, z.peak_t = shape, z.t
        else:
            z.peak, z.peak_t = turned_at, turned_t

    def _turn(self, z: ZigZag, now: np.ndarray) -> None:
        if z.extremes == 0:  # the way from where tracking began (the start, or after a gap)
            z.book.start_fraction = self._fraction(z)
            z.book.start_size = self._distance(z.peak, z.anchor)
            z.origin = z.anchor
            z.way_in_t = self._still_at(z.anchor, z.anchor_t, z.peak_t, self._distance(z.peak, z.anchor))[-1]
        else:  # the leg from one turning point to the next is half a repetition, if judged one
            z.last_swing = self._distance(z.peak, z.anchor)
            z.legs.append(z.peak_t - z.anchor_t)
            z.swings.append(z.last_swing)
            start = z.origin if z.extremes == 1 else z.before  # where the leg before this one began
            closure = 1e9 if start is None else self._distance(z.peak, start) / max(z.last_swing, 1e-9)
            z.before, z.before_t = z.anchor, z.anchor_t
            arrived = self._still_at(z.peak, z.left_t, z.peak_t, z.last_swing)[0]  # its motion: left_t to arrived
            z.book.add(Leg(z.left_t, arrived, z.last_swing, z.run, self._roughness(z.left_t, arrived, z.last_swing),
                           first=z.extremes == 1, seen=self._seen(z.left_t, arrived), closure=closure,
                           way_in=z.way_in_t if z.extremes == 1 else -1))
        z.extremes += 1
        z.left_t = self._still_at(z.peak, z.peak_t, z.t, self._distance(z.peak, z.anchor))[-1]
        z.anchor, z.anchor_t, z.peak, z.peak_t = z.peak, z.peak_t, now, z.t

    def _restart(self, z: ZigZag) -> None:
        """After a gap in detection or a cut: what happened unseen is unknown, so the run ends where
        it was and the next starts where the person is seen again, never measured across the gap."""
        if z.anchor is not None and self.metric is not None and z.extremes > 0:
            self._end_leg(z)
            z.book.close_run(z.run, self._fraction(z), z.peak_t)
        z.extremes, z.run, z.book.start_fraction = 0, z.run + 1, None
        z.anchor = z.peak = z.before = z.origin = None

    def _end_leg(self, z: ZigZag) -> None:
        """The run ends (a gap in detection, the stream's end) after its way in and before any turn
        back: the leg in progress, if it spans a whole swing, ended with the run and is judged like
        any first leg.  So a single squat between two gaps, or after a set (out and back to where it
        began, a cycle by itself), counts as it does filmed alone; it waited for a turn that never came."""
        if z.extremes == 1 and self._distance(z.peak, z.anchor) >= self.swing_threshold:
            self._turn(z, z.peak)

    def _fraction(self, z: ZigZag) -> float:
        """The leg in progress as a share of a repetition: half of its size over the last swing's."""
        swing = z.last_swing or self.swing_threshold / self.p.threshold
        return 0.5 * min(1.0, self._distance(z.peak, z.anchor) / max(swing, 1e-9))

    def _estimate(self, z: ZigZag) -> float:
        """The count as it stands: what is confirmed and, after a confirmed leg, the share of the
        leg in progress (the next leg's credit is at least that once it is confirmed).  Legs not
        yet judged are not shown: a count shown can never be taken back."""
        book = z.book
        if z.anchor is None or self.metric is None or not book.last_confirmed():
            return book.credited
        return book.credited + self._fraction(z)

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            # the recent pose vectors as one array each (all the same length): cheap to send and store
            "seen": self.seen, "raw": _stacked(self.raw), "shapes": _stacked(self.shapes),
            "times": list(self.times), "jolts": list(self.jolts), "last_seen": self.last_seen, "shot": self.shot,
            "count": self.count,
            "pending": [[i, None if s is None else s.tolist()] for i, s in self.pending],
            "metric": None if self.metric is None else self.metric.tolist(),
            "swing_threshold": self.swing_threshold, "tracker": self.tracker.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Also a snapshot of a cadence before limb angles (a running ``cadence serve`` upgraded):
        its shapes gain their angles, and the directions of motion are refitted at the next window."""
        as_shape = lambda x: with_angles(np.asarray(x, dtype=np.float64))  # noqa: E731
        self.seen, self.last_seen, self.count = int(state["seen"]), int(state["last_seen"]), float(state["count"])
        self.shot = int(state.get("shot", 0))
        self.raw = deque(map(as_shape, state["raw"]), maxlen=self.raw.maxlen)
        self.shapes = deque(map(as_shape, state["shapes"]), maxlen=self.shapes.maxlen)
        self.times = deque((int(t) for t in state["times"]), maxlen=self.times.maxlen)
        self.jolts = deque((float(j) for j in state["jolts"]), maxlen=self.jolts.maxlen)
        self.pending = [(int(i), None if s is None else as_shape(s)) for i, s in state["pending"]]
        metric = None if state["metric"] is None else np.asarray(state["metric"], dtype=np.float64)
        self.metric = None if metric is None or metric.shape[1] == POSITIONS else metric
        self.swing_threshold = float(state["swing_threshold"])
        self.tracker = ZigZag.restored(state["tracker"], self._book())
        for k in ZigZag._ARRAYS:
            if getattr(self.tracker, k) is not None:
                setattr(self.tracker, k, with_angles(getattr(self.tracker, k)))
