"""Cuts in a stream of images: :class:`Shots` numbers the shots of an edited video (see
:attr:`~.video.Frame.shot`), so that what happened across a cut is never taken for motion."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .video import Frame


class Shots:
    """Numbers the shots of a stream of images: 0, then one more at each cut.

    An edited video goes from one shot to another (another view, another person, a jump in time)
    from one frame to the next.  A cut is a frame whose 32 x 18 grey thumbnail differs from the
    previous frame's by more than ``CUT`` grey levels on average, unless it is the same view moved
    (see below): within a shot filmed from a tripod that stayed under 6 on every shared clip (people
    moving, even jumping), and the cuts between shared clips measured 25 to 91.

    A handheld camera that pans, zooms and shakes moves the whole view: consecutive thumbnails
    then differ by up to 35 (the shared clips filmed through a drifting, zooming, shaking 78 % crop,
    every frame or one in two or three), and taking that for a cut would cut a set in pieces.  So a
    frame past ``CUT`` is a cut only if its 64 x 36 thumbnail is not the previous one shifted:
    the peak of their phase correlation (1 for a pure shift, near 0 for unrelated images) is below
    ``SAME_VIEW``.  Measured: 0.45 at most between shared clips (two squat gyms), 0.6 at least for
    a view moved between frames 1 or 2 apart, 0.45 at the extreme (a pan three times as fast, one
    frame in three).  A take re-framed by its editor (the push-up clip jumps so at frame 145) is one
    shot too: the counter's body shape is relative to the body's own box, so the view moving
    changes nothing it measures.  The thumbnails cost about 0.35 ms for a 720p frame; the
    correlation runs only past ``CUT``.
    """

    CUT = 20.0  # mean grey-level change (of 255) between two frames' thumbnails that may mark a cut
    SAME_VIEW = 0.5  # phase correlation peak from which the second view is the first one moved

    def __init__(self) -> None:
        self.shot = -1  # none seen yet
        self.view: np.ndarray | None = None  # the last image's 64 x 36 grey thumbnail
        self.thumbnail: np.ndarray | None = None  # and its 32 x 18 one

    def of(self, image: np.ndarray) -> int:
        """The shot of the next image (BGR or RGB: the grey level is the channels' mean)."""
        step = max(1, image.shape[0] // 180)  # every step-th pixel first: the same thumbnail to 0.3, 2-3x faster
        view = cv2.resize(image[::step, ::step], (64, 36), interpolation=cv2.INTER_AREA).mean(axis=2, dtype=np.float32)
        thumbnail = cv2.resize(view, (32, 18), interpolation=cv2.INTER_AREA)
        if self.view is None or (float(np.abs(thumbnail - self.thumbnail).mean()) > self.CUT
                                 and cv2.phaseCorrelate(self.view, view)[1] < self.SAME_VIEW):  # not the view moved
            self.shot += 1
        self.view, self.thumbnail = view, thumbnail
        return self.shot


def numbered_shots(frames: Iterable[Frame]) -> Iterator[Frame]:
    """The frames with their :attr:`Frame.shot` counted from the first (see :class:`Shots`)."""
    shots = Shots()
    for frame in frames:
        yield replace(frame, shot=shots.of(frame.image))
