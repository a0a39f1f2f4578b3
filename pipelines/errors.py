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


class DataError(CadenceError, ValueError):
    """Data a component was handed that it cannot use (no examples, a single label, features of
    another length, a model not trained yet); the message names it and what to do."""


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


class ParameterError(InputError):
    """A component's parameter is outside what it accepts: ``owner`` is the component's class name,
    ``parameter`` the constructor argument at fault (the command line names its option instead)."""

    def __init__(self, owner: str, parameter: str, problem: str, hint: str = ""):
        self.owner = owner
        self.parameter = parameter
        super().__init__(owner, f"{parameter} {problem}", hint)

    def __reduce__(self):
        return type(self), (self.owner, self.parameter, self.problem[len(self.parameter) + 1:], self.hint)
