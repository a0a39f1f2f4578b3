"""Typed errors, each naming the input at fault and what to do about it."""

from __future__ import annotations


class CadenceError(Exception):
    """Base class of every error cadence raises on purpose."""


class InputError(CadenceError, ValueError):
    """A user-supplied input (file, camera, parameter) cannot be used."""

    def __init__(self, source: object, problem: str, hint: str = ""):
        self.source = str(source)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.source}: {problem}" + (f" ({hint})" if hint else ""))

    def __reduce__(self):  # travels between processes (Ray) with its fields intact
        return type(self), (self.source, self.problem, self.hint)


class VideoNotFoundError(InputError, FileNotFoundError):
    """The video path does not exist."""


class InvalidVideoError(InputError):
    """The file exists but is not a video that can be decoded (not a video, corrupt, unreadable)."""


class EmptyVideoError(InvalidVideoError):
    """The video decodes but holds no frames."""


class CameraError(InputError):
    """A camera index or stream URL could not be opened or stopped delivering frames."""


class NoPersonError(InputError):
    """No person was detected in any frame of a stream, so there is nothing to count."""


class AudioNotFoundError(InputError, FileNotFoundError):
    """The audio path does not exist."""


class InvalidAudioError(InputError):
    """The file exists but is not audio soundfile can decode (not audio, corrupt, unreadable)."""


class EmptyAudioError(InvalidAudioError):
    """The file decodes but holds no samples."""


class ModelFileError(InputError):
    """A model or checkpoint file that is missing, corrupt, or not one of cadence's."""
