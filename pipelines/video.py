"""Video and camera readers: streams of :class:`Frame` from OpenCV, and :func:`open_source`, the one
place that turns what a user names (a file, files played back to back, a camera index, a stream URL)
into frames, live or not."""

from __future__ import annotations

import collections
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .base import in_thread
from .capture import Capture
from .errors import CameraError, EmptyVideoError, InputError, InvalidVideoError, VideoNotFoundError
from .shots import Shots, numbered_shots
from .temporal import frame_step

DEFAULT_FPS = 30.0


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: a BGR ``uint8`` image (as OpenCV decodes), its index and its time in seconds.

    ``captured_at`` is the wall-clock time (``time.time()``) the frame was read: where its
    capture-to-count latency starts.  ``shot`` numbers the shots of an edited video from where
    reading began (0, then one more at each cut, see :class:`Shots`): cadence's readers set it, so
    that what happened across a cut is never taken for motion.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source: str = ""
    captured_at: float = 0.0
    shot: int = 0


class _ThreadedAsyncIteration:
    """``async for`` over a blocking reader: each read runs in a thread, the loop stays free."""

    def __aiter__(self) -> AsyncIterator[Frame]:
        return in_thread(self)


class VideoStream(_ThreadedAsyncIteration):
    """A video file as a re-iterable stream of frames; use :func:`read_video` to make one.

    A file whose decoding stops before the frame count its container promises (truncated, or a
    container that promises too much) yields the frames it has; ``warnings`` then says so, and a
    counter counts what was decoded.
    """

    def __init__(self, path: str | os.PathLike, fps: float, frame_count: int, width: int, height: int):
        self.path = str(path)
        self.fps = fps
        self.frame_count = frame_count
        self.width = width
        self.height = height
        self.warnings: list[str] = []
        self.decoded = 0
        self.position = 0  # frames of the file read so far (made images or not): where the next one is

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    def __length_hint__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0, step: int = 1) -> Iterator[Frame]:
        """The frames from index ``start`` on whose index is a multiple of ``step`` (see
        :func:`~.temporal.frame_step`), their shots counted from there.  Frames not given are
        decoded (a Motion JPEG file's not even that, see :mod:`.capture`) but never converted to
        images or copied: a feed resumed after a restart gets back to where it was quickly, and a
        step of 2 costs less than every frame."""
        return numbered_shots(self._frames(start, step))

    def _frames(self, start: int, step: int, first: int = 0) -> Iterator[Frame]:
        """(``first``: the index this file's first frame has in a longer stream, which ``step`` counts in.)"""
        self.warnings.clear()
        capture = Capture(self.path)
        try:
            index = self.position = 0
            while index < start and capture.grab():
                index += 1
            self.position = index
            while index >= start and capture.grab():
                self.position = index + 1
                if (first + index) % step == 0:
                    ok, image = capture.retrieve()
                    if not ok:
                        break
                    yield Frame(image, index, index / self.fps, self.path, time.time())
                index += 1
        finally:
            capture.release()
            self.decoded = self.position = index  # frames the file held (skipped ones too), once read to its end
        if index < self.frame_count * 0.95 - 1:  # container frame counts can be off by a little
            self.warnings.append(f"{self.path}: decoding stopped at frame {index} of the {self.frame_count} its "
                                 "container promises (truncated or corrupt from there on); counted what was decoded")

    def __repr__(self) -> str:
        return (f"VideoStream({self.path!r}, {self.width}x{self.height}, {self.fps:g} fps, "
                f"{self.frame_count} frames)")


_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"),
                     (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"))


def _image_format(path: Path) -> str | None:
    """The still-image format ``path`` starts like (PNG, JPEG, ...), or None."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _IMAGE_SIGNATURES if head.startswith(signature)), None)


def read_video(path: str | os.PathLike) -> VideoStream:
    """Open a video file and check it decodes; raise a typed error naming the file if not."""
    p = Path(path)
    if not p.exists():
        raise VideoNotFoundError(path, "no such file", "check the path")
    if p.is_dir():
        raise InvalidVideoError(path, "is a folder, not a video file")
    if not os.access(p, os.R_OK):
        raise InvalidVideoError(path, "is not readable", "check its permissions")
    if p.stat().st_size == 0:
        raise EmptyVideoError(path, "is an empty file (0 bytes)")
    capture = Capture(p)
    try:
        if not capture.isOpened():
            raise InvalidVideoError(path, "is not a video OpenCV can decode (corrupt, or not a video at all)",
                                    "try playing it, or re-encode it with ffmpeg -i IN -c:v libx264 OUT.mp4")
        ok, image = capture.read()
        if not ok or image is None:
            raise EmptyVideoError(path, "holds no decodable frame")
        still = _image_format(p)
        if still and not capture.grab():  # OpenCV reads a photo as a one-frame video
            raise InvalidVideoError(path, f"is a still image ({still}), not a video",
                                    "give a video file (a series of photos becomes one with "
                                    "ffmpeg -framerate 30 -i photo%04d.png video.mp4)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and 1 <= fps <= 1000 else DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return VideoStream(p, fps, max(count, 1), image.shape[1], image.shape[0])
    finally:
        capture.release()


class CameraStream(_ThreadedAsyncIteration):
    """Frames from a camera index or a stream URL, timestamped on arrival; use :func:`read_camera`."""

    def __init__(self, source: int | str, capture: Capture):
        self.source = source
        self.name = str(shown(source))  # what frames and messages name it: never a URL's password
        self._capture = capture
        self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        self.position = 0  # frames received since it was (re)opened

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0, step: int = 1) -> Iterator[Frame]:
        """The camera's frames as they come (``start`` is unused: a camera has no past), one in
        ``step``: the others are received but never converted to images (from a Motion JPEG
        stream, never decoded: see :mod:`.capture`)."""
        capture, self._capture = self._capture, None
        if capture is None:
            capture = Capture(self.source)
        begun, index = time.monotonic(), 0
        self.position = 0
        shots = Shots()  # a camera switched or moved to another view at once is a cut too
        try:
            while True:
                if not capture.grab():
                    if index == 0:
                        raise CameraError(self.name, "delivered no frame")
                    break
                self.position = index + 1
                if index % step == 0:
                    ok, image = capture.retrieve()
                    if ok:
                        yield Frame(image, index, time.monotonic() - begun, self.name, time.time(), shots.of(image))
                index += 1
        finally:
            capture.release()


def read_camera(source: int | str) -> CameraStream:
    """Open a camera by index (``0``) or a stream URL (``rtsp://``, ``http://.../stream.mjpg``)."""
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    capture = Capture(source)
    if not capture.isOpened():
        capture.release()
        if isinstance(source, int):
            raise CameraError(f"camera {source}", "could not be opened", "no camera at that index on this machine?")
        raise CameraError(shown(source), "could not be opened",
                          "is the URL right, with the user and password the camera asks for, and the stream up?")
    return CameraStream(source, capture)


class ConcatenatedStream(_ThreadedAsyncIteration):
    """Several videos played back to back as one stream, with continuous indexes and times."""

    def __init__(self, streams: Iterable[VideoStream]):
        self.streams = list(streams)
        self.position = 0  # frames of the videos read so far (see VideoStream.position)

    @property
    def fps(self) -> float:
        return self.streams[0].fps if self.streams else DEFAULT_FPS

    @property
    def warnings(self) -> list[str]:
        return [w for stream in self.streams for w in stream.warnings]

    def __length_hint__(self) -> int:
        return sum(s.frame_count for s in self.streams)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0, step: int = 1) -> Iterator[Frame]:
        """The frames from index ``start`` on, one in ``step`` (see :meth:`VideoStream.frames`);
        shots are counted across the videos, so one video's end and the next's start are a cut
        when they differ."""
        return numbered_shots(self._frames(start, step))

    def _frames(self, start: int, step: int) -> Iterator[Frame]:
        index, offset = 0, 0.0
        for stream in self.streams:
            for frame in stream._frames(max(0, start - index), step, index):
                self.position = index + stream.position
                yield replace(frame, index=index + frame.index, timestamp=offset + frame.timestamp)
            index += stream.decoded
            self.position = index
            offset += max(stream.decoded, 1) / stream.fps  # the last frame's time, plus one frame


def concatenate(*paths: str | os.PathLike) -> ConcatenatedStream:
    """Read several videos as one stream (each checked by :func:`read_video`)."""
    return ConcatenatedStream(read_video(p) for p in paths)


class LiveStream:
    """Reads a source on a background thread and hands out only the newest frames.

    A live consumer slower than the camera would otherwise fall ever further behind; here the
    oldest waiting frame is dropped instead and counted in ``dropped``, never silently.  File
    sources are paced at their frame rate, as if a camera were filming them.  With ``rate``, a
    source that can skip frames (cadence's readers) gives at most that many a second (one in
    :func:`~.temporal.frame_step` of its frame rate; the others are never made images, never
    queued, and not counted as dropped).  Iterate it, or call :meth:`take` for batches.
    """

    def __init__(self, source: Iterable[Frame], capacity: int = 2, pace: bool = False, start: int = 0,
                 rate: float | None = None):
        self.source = source
        self.start_index = start  # a file source is read from this frame on
        self.capacity = capacity
        self.pace = pace
        self.fps = getattr(source, "fps", DEFAULT_FPS)
        self.step = frame_step(self.fps, rate)  # one frame in this many is read
        self.dropped = 0
        self.delivered = 0
        self._reader: threading.Thread | None = None

    def __length_hint__(self) -> int:
        return 0  # unknown: frames may be dropped, and cameras have no end

    @property
    def position(self) -> int:
        """Frames of the source read so far: made images and queued (then taken or dropped), or skipped."""
        return getattr(self.source, "position", self.delivered + self.dropped)

    @property
    def warnings(self) -> list[str]:
        return getattr(self.source, "warnings", [])

    def start(self) -> None:
        """Start reading (once); :meth:`take` and iteration call it."""
        if self._reader is not None:
            return
        self._queue: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="cadence-live-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        start, first = time.monotonic(), None
        frames = (self.source.frames(self.start_index, self.step) if hasattr(self.source, "frames")
                  else iter(self.source))
        try:
            for frame in frames:
                if self._stop.is_set():
                    break
                if self.pace:
                    first = frame.timestamp if first is None else first
                    time.sleep(max(0.0, start + frame.timestamp - first - time.monotonic()))
                with self._ready:
                    if len(self._queue) >= self.capacity:
                        self._queue.popleft()
                        self.dropped += 1
                    self._queue.append(replace(frame, captured_at=time.time()))
                    self._ready.notify()
        except BaseException as e:  # handed to the consumer, raised there
            self._error = e
        finally:
            with self._ready:
                self._done = True
                self._ready.notify()

    def take(self, max_count: int, gather: float = 0.0, wait: float | None = None) -> list[Frame]:
        """Up to ``max_count`` waiting frames, oldest first; ``[]`` at the end (see :attr:`finished`).

        Waits for the first frame (at most ``wait`` seconds when given, then ``[]`` while the source
        goes on), then at most ``gather`` seconds for more, so batches stay small when the consumer
        keeps up (low latency) and grow when it falls behind.
        """
        self.start()
        try:
            taken = self._taken(max_count, gather, wait)
        except RuntimeError as e:
            # Ctrl-C or SIGTERM landing inside Condition.wait, just after it let go of the lock, leaves
            # the lock released, and leaving the with block then raises this over the interrupt
            if isinstance(e.__context__, KeyboardInterrupt):
                raise e.__context__ from None
            raise
        self.delivered += len(taken)
        if not taken and self._error is not None:
            raise self._error
        return taken

    def _taken(self, max_count: int, gather: float, wait: float | None) -> list[Frame]:
        deadline = None
        taken: list[Frame] = []
        with self._ready:
            while len(taken) < max_count:
                if not self._queue:
                    if self._done:
                        break
                    timeout = wait if deadline is None else max(0.0, deadline - time.monotonic())
                    if not self._ready.wait_for(lambda: self._queue or self._done, timeout=timeout):
                        break
                    continue
                taken.append(self._queue.popleft())
                if deadline is None:
                    deadline = time.monotonic() + gather
        return taken

    @property
    def finished(self) -> bool:
        """The source has ended and every frame it gave was taken."""
        if self._reader is None:
            return False
        with self._ready:
            return self._done and not self._queue

    def close(self, wait: float = 2.0) -> None:
        """Stop reading, and wait up to ``wait`` seconds for the reader to let go of the source: a
        thread still inside OpenCV when the process exits can abort it."""
        if self._reader is not None:
            self._stop.set()
            if self._reader is not threading.current_thread():
                self._reader.join(wait)

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        try:
            while batch := self.take(1):
                yield batch[0]
        finally:
            self.close()


Source = str | int | Sequence[str]  # a file, a camera index or stream URL, or files played back to back


def shown(source: Source) -> Source:
    """A source as it may be shown (messages, logs, an API, a page): a URL's password replaced by
    ``***`` (``rtsp://admin:***@camera/stream``), a playlist's files each so; anything else as is."""
    if isinstance(source, (list, tuple)):
        return [shown(s) for s in source]
    if not isinstance(source, str) or "@" not in source or "://" not in source:
        return source
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(source)
        if parts.password is None:
            return source
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:  # not a URL after all (a port that is no number, say): hide what may be one
        return re.sub(r"//[^/@]*@", "//***@", source)


def is_camera(source: Source) -> bool:
    """Camera indexes (``0``, ``"0"``) and stream URLs (``rtsp://...``) rather than files."""
    return isinstance(source, int) or (isinstance(source, str) and (source.isdigit() or "://" in source))


def open_source(source: Source, live: bool = False, capacity: int = 2, start: int = 0,
                rate: float | None = None) -> VideoStream | ConcatenatedStream | LiveStream:
    """The frames of a feed's source, checked now (a bad one raises a typed error naming it).

    Cameras and stream URLs need ``live``.  A live source is read on a background thread that keeps
    the newest ``capacity`` frames and counts the ones it drops; a file read live is paced at its
    frame rate, as if a camera were filming it.  ``start`` is where a file read live begins (a
    resumed feed), and ``rate`` the most frames a second a live source gives; a file read otherwise
    begins where its ``frames(start, step)`` is asked to, one frame in the step asked there.
    """
    if is_camera(source):
        if not live:
            raise InputError(shown(source), "looks like a camera or stream URL", "add --live to read it")
        return LiveStream(read_camera(source), capacity=capacity, rate=rate)
    video = concatenate(*source) if isinstance(source, (list, tuple)) else read_video(source)
    return LiveStream(video, capacity=capacity, pace=True, start=start, rate=rate) if live else video
