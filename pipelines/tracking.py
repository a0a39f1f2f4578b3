"""Following each person across frames: :class:`PersonTracker` gives every pose a stable id.

Each frame's poses are matched to the people tracked so far by the overlap of their bounding boxes
(intersection over union, IoU), solved as an assignment problem (scipy's Hungarian algorithm) so
that two people side by side are never swapped for a slightly better single match.  A pose that
overlaps nobody by at least ``minimum_overlap`` starts a new person with the next id (1, 2, ...);
a person unseen for ``patience`` seconds (``patience * rate`` frames of the ``rate`` a second it is
fed) is forgotten.  Matching is against each person's last seen
box, which in a group workout moves little between frames; people crossing paths can swap ids, as
with any tracker that does not look at appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .base import TemporalSession, TemporalTransformer
from .params import Interval
from .pose import CONFIDENCE_THRESHOLD, Pose, box_overlap


@dataclass
class _Track:
    id: int
    box: tuple[float, float, float, float]
    missing: int = 0  # frames since last seen


class PersonTracker(TemporalTransformer):
    """Poses of one frame in, ``{person id: pose}`` out, ids stable across frames (see the module).

    >>> import numpy as np
    >>> from cadence import Pose
    >>> left, right = (Pose(np.c_[np.random.default_rng(0).uniform(x, x + 0.2, (33, 2)), np.ones((33, 2))])
    ...                for x in (0.1, 0.6))
    >>> frames = PersonTracker().applied([[left, right], [right, left]])  # the list's order changes
    >>> [ids[1] is left for ids in frames]  # the person does not
    [True, True]
    """

    _parameter_constraints = {"minimum_overlap": [Interval(float, 0, 1, "neither")],
                              "patience": [Interval(float, 0, 600)], "rate": [Interval(float, 1, 1000)],
                              "confidence_threshold": [Interval(float, 0, 1)]}

    def __init__(self, *, minimum_overlap: float = 0.2, patience: float = 1.0, rate: float = 30.0,
                 confidence_threshold: float = CONFIDENCE_THRESHOLD):
        self.minimum_overlap = minimum_overlap
        self.patience = patience
        self.rate = rate
        self.confidence_threshold = confidence_threshold

    def session(self) -> TemporalSession:
        self.check_params()
        return _TrackerSession(self)


class _TrackerSession(TemporalSession):
    def __init__(self, p: PersonTracker):
        self.p = p
        self.patience = round(p.patience * p.rate)  # in frames
        self.tracks: list[_Track] = []
        self.next_id = 1

    def push(self, poses: list[Pose]) -> list[dict[int, Pose]]:
        boxes = [pose.bounding_box(self.p.confidence_threshold) for pose in poses]
        found = [(pose, box) for pose, box in zip(poses, boxes) if box is not None]
        matched: dict[int, int] = {}  # pose position -> track position
        if self.tracks and found:
            overlap = np.array([[box_overlap(t.box, box) for t in self.tracks] for _, box in found])
            for i, j in zip(*linear_sum_assignment(-overlap)):
                if overlap[i, j] >= self.p.minimum_overlap:
                    matched[i] = j
        seen: dict[int, Pose] = {}
        for i, (pose, box) in enumerate(found):
            if i in matched:
                track = self.tracks[matched[i]]
                track.box, track.missing = box, -1
            else:
                track = _Track(self.next_id, box, -1)
                self.next_id += 1
                self.tracks.append(track)
            seen[track.id] = pose
        for track in self.tracks:
            track.missing += 1
        self.tracks = [t for t in self.tracks if t.missing <= self.patience]
        return [dict(sorted(seen.items()))]

    def finish(self) -> list[dict[int, Pose]]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"tracks": [(t.id, t.box, t.missing) for t in self.tracks], "next_id": self.next_id}

    def restore(self, state: dict[str, Any]) -> None:
        self.tracks = [_Track(int(i), tuple(box), int(missing)) for i, box, missing in state["tracks"]]
        self.next_id = int(state["next_id"])

    @property
    def tracked(self) -> list[int]:
        """The ids of the people tracked now (seen within ``patience`` seconds)."""
        return [t.id for t in self.tracks]
