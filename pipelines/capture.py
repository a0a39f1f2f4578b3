"""OpenCV's readers, with frames decoded only when they are wanted.

A rate skips frames (``grab`` without ``retrieve``), but H.264 and most codecs decode every frame
anyway, to decode the next: a frame skipped is decoded, only never converted to an image.  Motion
JPEG, what many IP and USB cameras send, is different: every frame is a whole JPEG.  Such a source
is read undecoded (OpenCV's ``CAP_PROP_FORMAT`` -1 hands out each frame's bytes) and the frames
kept are decoded by ``cv2.imdecode``, so a skipped frame costs no more than its bytes.  Measured on
a 720p MJPEG camera on loopback (one core): 1.5 ms of CPU a frame of the camera when every other
one is kept, against 2.7-3.6 ms decoded by FFmpeg; 2.7 against 2.9-4.3 ms keeping every frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_JPEG_CODECS = {"MJPG", "mjpg"}  # the FourCC of Motion JPEG, as FFmpeg reports it


def _fourcc(capture: cv2.VideoCapture) -> str:
    """The codec of ``capture`` as its four characters ('h264', 'MJPG'), '' if it has none."""
    code = int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    return code.to_bytes(4, "little").decode("latin-1").rstrip("\0") if code else ""


class Capture:
    """An OpenCV capture of a file, stream URL (FFmpeg) or camera index, with ``grab``,
    ``retrieve``, ``read``, ``get``, ``isOpened`` and ``release`` as ``cv2.VideoCapture`` has
    them; a Motion JPEG file or stream is read undecoded and decoded by :meth:`retrieve` (see
    the module).  ``jpeg`` says which."""

    def __init__(self, source: str | int):
        if isinstance(source, int):  # a local camera: its own backend (V4L2 here), decoded as it gives
            self._capture = cv2.VideoCapture(source)
            self.jpeg = False
        else:
            self._capture = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
            self.jpeg = (self._capture.isOpened() and _fourcc(self._capture) in _JPEG_CODECS
                         and self._capture.set(cv2.CAP_PROP_FORMAT, -1))

    def grab(self) -> bool:
        return self._capture.grab()

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """The frame last grabbed as a BGR image; (False, None) when it cannot be decoded."""
        ok, image = self._capture.retrieve()
        if ok and self.jpeg:
            image = cv2.imdecode(image, cv2.IMREAD_COLOR)
            ok = image is not None
        return ok, image if ok else None

    def read(self) -> tuple[bool, np.ndarray | None]:
        return self.retrieve() if self.grab() else (False, None)

    def get(self, prop: int) -> Any:
        return self._capture.get(prop)

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoCapture's name)
        return self._capture.isOpened()

    def release(self) -> None:
        self._capture.release()
