"""Audio: :func:`read_audio` (a stream of mono buffers) and :class:`AudioFeaturePrint`.

AudioFeaturePrint turns an audio stream into one feature vector per window of
``window_duration`` seconds, windows starting every ``window_duration * (1 - overlap_factor)``.
Each vector (``AudioFeaturePrint.DIMENSION`` = 178 float32) is built from 25 ms frames every
10 ms: a 40-band mel spectrum relative to its loudest band, floored 60 dB under it and compressed
by the power 1/15 (as in PNCC), and its first 20 cepstral coefficients ("cepstra" below), over
the frames that carry sound (within 20 dB of the loudest frame):

====== =====================================================================================
  19   mean of cepstra 1..19 (the spectral envelope; cepstrum 0, the level, is left out)
  20   standard deviation of cepstra 0..19
  78   cepstra 0..12 less their mean, averaged over 6 equal segments of the sounding part: the
       envelope's course in time, which spoken words and most sound events are made of
  20   standard deviation of the cepstral deltas (how fast the envelope moves)
  40   mean compressed energy per band
   1   the sounding part's duration in seconds
====== =====================================================================================

Version 2 (power-law compression instead of a logarithm, no pre-emphasis, a 30 dB activity
window) raised FSDD leave-one-speaker-out accuracy from 0.80 to 0.84 (see bench/fsdd_accuracy.py).

Version 3 narrows the activity window to 20 dB, so that the sounding part is the same part of a word
whatever the microphone's noise.  Recordings differ most in what lies 20-30 dB under the loudest
frame: FSDD's six speakers have their quietest frames (10th percentile) 18, 21, 26, 27, 34 and 49 dB
under it.  With a 30 dB window, a quiet breath or room tail counted as sound in a clean recording and
fell under the noise in a noisy one, so a speaker recorded more cleanly than the training speakers
(lucas) was recognised 0.89 of the time; at 20 dB, 0.96.  The network's leave-one-speaker-out mean
went from 0.843 to 0.858 (seeds 0-4); windows of 10, 15, 25 and 30 dB gave 0.823, 0.845, 0.852 and
0.843.  Those are the same six speakers the window was chosen on: chosen without the held-out
speaker, the mean is 0.840-0.847 (see the README).

Only numpy and scipy; deterministic (the same samples give the same bits).
"""

from __future__ import annotations

import hashlib
import json
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.fft import dct, rfft

from .base import TemporalSession, TemporalTransformer
from .errors import DataError, AudioNotFoundError, EmptyAudioError, InputError, InvalidAudioError
from .params import Interval
from .storage import Location, is_uri

FEATURE_VERSION = 3  # bump when the vector's content changes: stores made by another version are not reused
HIGHEST_FEATURE_RATE = 16000  # Hz: features never need more (speech and most sound events lie under 8 kHz)


def feature_rate(source_rates: Iterable[int]) -> int:
    """The rate features are made at by default, for audio at these rates: the highest of them, at
    most :data:`HIGHEST_FEATURE_RATE`.  Audio is never resampled up to it: 8 kHz speech at 16 kHz
    gains only an empty upper band, whose features then describe the recording, not the sound.
    One rule for :func:`read_audio`, :class:`AudioFeaturePrint` and ``cadence features``."""
    rates = [int(r) for r in source_rates]
    return min(max(rates), HIGHEST_FEATURE_RATE) if rates else HIGHEST_FEATURE_RATE


@dataclass(frozen=True, eq=False)
class AudioBuffer:
    """Mono float32 samples at ``sample_rate``, starting ``start_time`` seconds into the source."""

    samples: np.ndarray
    sample_rate: int
    start_time: float
    source: str = ""


@dataclass(frozen=True, eq=False)
class AudioFeature:
    """The feature vector of one window of a stream, made from samples at ``sample_rate``."""

    index: int
    start_time: float
    duration: float
    vector: np.ndarray
    sample_rate: int = 0


class AudioStream:
    """An audio file as a re-iterable stream of mono buffers; use :func:`read_audio`."""

    def __init__(self, path: str, source_rate: int, channels: int, frames: int, sample_rate: int,
                 buffer_duration: float, data: bytes | None = None):
        self.path, self.source_rate, self.channels, self.frames = path, source_rate, channels, frames
        self.sample_rate, self.buffer_duration = sample_rate, buffer_duration
        self.data = data  # the whole file, for one read from object storage

    @property
    def duration(self) -> float:
        return self.frames / self.source_rate

    def __iter__(self) -> Iterator[AudioBuffer]:
        g = gcd(self.sample_rate, self.source_rate)
        up, down = self.sample_rate // g, self.source_rate // g
        block = max(1, int(self.buffer_duration * self.source_rate))
        start = 0
        try:
            with sf.SoundFile(self.path if self.data is None else io.BytesIO(self.data)) as f:
                for data in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                    mono = data.mean(axis=1, dtype=np.float32)
                    if not np.isfinite(mono).all():
                        raise InvalidAudioError(self.path, f"holds NaN or infinite samples (from "
                                                           f"{start / self.source_rate:.2f} s)",
                                                "the file is corrupt: export it again")
                    samples = mono if up == down else _resample(mono, up, down)
                    yield AudioBuffer(samples, self.sample_rate, start / self.source_rate, self.path)
                    start += len(mono)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise InvalidAudioError(self.path, f"decoding failed after {start / self.source_rate:.2f} s ({e})",
                                    "the file is truncated or corrupt") from e

    def __repr__(self) -> str:
        return (f"AudioStream({self.path!r}, {self.source_rate} Hz x {self.channels} channels -> "
                f"{self.sample_rate} Hz mono, {self.duration:.2f} s)")


def _resample(samples: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly  # imported on first use: a third of a second

    return resample_poly(samples, up, down).astype(np.float32)


def read_audio(path: str | os.PathLike, sample_rate: int | None = None, buffer_duration: float = 1.0) -> AudioStream:
    """Open an audio file (any format and channel count soundfile reads) as mono buffers at
    ``sample_rate``: by default the file's own rate, at most 16 kHz (:func:`feature_rate`).
    Checks the file now, so a bad one fails here with its name and the reason.  ``path`` may be a
    URI (``s3://...``, :mod:`.storage`): the file is then read whole, once."""
    if is_uri(path):
        return _read_remote_audio(Location.of(path), sample_rate, buffer_duration)
    p = Path(path)
    if not p.exists():
        raise AudioNotFoundError(p, "no such file", "check the path")
    if p.is_dir():
        raise InvalidAudioError(p, "is a folder, not an audio file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError) as e:
        if p.stat().st_size == 0:
            raise EmptyAudioError(p, "is an empty file") from e
        raise InvalidAudioError(p, "is not audio soundfile can decode (corrupt, or not audio at all)",
                                "convert it to WAV or FLAC") from e
    except PermissionError as e:
        raise InvalidAudioError(p, "cannot be read (permission denied)") from e
    if info.frames <= 0:
        raise EmptyAudioError(p, "holds no samples")
    rate = feature_rate([info.samplerate]) if sample_rate is None else sample_rate
    return AudioStream(str(p), info.samplerate, info.channels, info.frames, rate, buffer_duration)


def _read_remote_audio(where: Location, sample_rate: int | None, buffer_duration: float) -> AudioStream:
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise AudioNotFoundError(where, where.missing(), "check the URI") from None
    return audio_from_bytes(data, str(where), sample_rate, buffer_duration)


def audio_from_bytes(data: bytes, where: str, sample_rate: int | None = None,
                     buffer_duration: float = 1.0) -> AudioStream:
    """An audio file's bytes (read from anywhere; ``where`` names them in errors) as :func:`read_audio`'s stream."""
    if not data:
        raise EmptyAudioError(where, "is an empty file")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise InvalidAudioError(where, "is not audio soundfile can decode (corrupt, or not audio at all)",
                                "convert it to WAV or FLAC") from e
    if info.frames <= 0:
        raise EmptyAudioError(where, "holds no samples")
    rate = feature_rate([info.samplerate]) if sample_rate is None else sample_rate
    return AudioStream(where, info.samplerate, info.channels, info.frames, rate, buffer_duration, data)


def audio_info(path: str | os.PathLike):
    """soundfile's header of a file (a path or a URI: only its start is fetched); errors as soundfile's."""
    if not is_uri(path):
        return sf.info(str(path))
    where = Location.of(path)
    with where.filesystem.open_input_file(where.fs_path) as f:
        return sf.info(f)


# -- the feature print ------------------------------------------------------------------------
_FRAME, _HOP, _FFT, _MELS, _CEPS, _SEGMENTS, _SEG_CEPS = 0.025, 0.010, 512, 40, 20, 6, 13
_COMPRESSION, _COMPRESSION_SCALE, _ACTIVE_DB = 15, 10.0, 20


def _mel_filterbank(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(20.0), mel(sample_rate / 2), bands + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class AudioFeaturePrint(TemporalTransformer):
    """Audio buffers in, one :class:`AudioFeature` per window out (see the module docstring).

    ``sample_rate`` is the rate features are made at; by default (None) that of the audio it is
    given, which :func:`read_audio` reads at the file's own rate, at most 16 kHz: the rule
    ``cadence features`` follows too.  A fitted composition keeps the rate it was fitted at, and
    clips of several rates in one fit are refused (give ``sample_rate`` then).

    >>> import numpy as np
    >>> AudioFeaturePrint().vector(np.zeros(15600, np.float32), 16000).shape  # one window of 0.975 s at 16 kHz
    (178,)
    """

    DIMENSION = 19 + 20 + _SEGMENTS * _SEG_CEPS + 20 + _MELS + 1

    _parameter_constraints = {"window_duration": [Interval(float, 0.5, 15)],
                              "overlap_factor": [Interval(float, 0, 1, "left")], "sample_rate": [None, Interval(int, 8000)]}

    def __init__(self, *, window_duration: float = 0.975, overlap_factor: float = 0.5, sample_rate: int | None = None):
        self.window_duration = window_duration
        self.overlap_factor = overlap_factor
        self.sample_rate = sample_rate

    def session(self) -> TemporalSession:
        self.check_params()
        return _FeaturePrintSession(self)

    def fingerprint(self) -> str:
        """Names what these features are: any change of class, parameter or version changes it."""
        spec = {"class": type(self).__name__, "params": self.get_params(), "version": FEATURE_VERSION}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        return f"{type(self).__name__}-{digest}"

    def identity(self) -> dict[str, Any]:
        """What stores and model files record of the extractor that made their features."""
        return {"class": type(self).__name__, "params": self.get_params(), "fingerprint": self.fingerprint()}

    @classmethod
    def from_identity(cls, identity: dict[str, Any], where: str | os.PathLike) -> AudioFeaturePrint:
        """The extractor an :meth:`identity` read from ``where`` names; an error if this version
        would make other features (another class, or another feature version)."""
        if not isinstance(identity, dict) or identity.get("class") != cls.__name__:
            raise InputError(where, f"records no {cls.__name__} (found {identity!r:.80})")
        params = identity.get("params")
        known = cls().get_params()
        if not isinstance(params, dict) or set(params) - set(known):
            unknown = sorted(set(params) - set(known)) if isinstance(params, dict) else params
            raise InputError(where, f"records {cls.__name__} parameters this cadence does not know: {unknown!r:.80}",
                             f"it was written by another cadence version, or edited; {cls.__name__} takes "
                             f"{', '.join(known)}: extract the features again and retrain")
        extractor = cls(**params)
        if extractor.fingerprint() != identity.get("fingerprint"):
            raise InputError(where, f"holds features of another {cls.__name__} version",
                             f"this cadence makes version {FEATURE_VERSION}; extract the features again")
        return extractor

    def read(self, path: str | os.PathLike) -> AudioStream:
        """The file as buffers at this extractor's sample rate (by default the file's, at most 16 kHz)."""
        return read_audio(path, self.sample_rate)

    def resolved(self, outputs: Iterable[Any]) -> AudioFeaturePrint:
        """This extractor with the rate its ``outputs`` (lists of windows) were made at, so a model
        fitted on them is applied at that rate; an error if they were made at several."""
        rates = {f.sample_rate for clip in outputs for f in (clip if isinstance(clip, (list, tuple)) else [clip])
                 if isinstance(f, AudioFeature)}
        if len(rates) > 1:
            raise DataError(f"{self!r}: the clips' features were made at {' and '.join(map(str, sorted(rates)))} "
                            f"Hz; features of one model need one rate: give AudioFeaturePrint(sample_rate="
                            f"{feature_rate(rates)}) (clips at other rates are resampled to it)")
        if self.sample_rate is not None or not rates:
            return self
        return type(self)(**{**self.get_params(), "sample_rate": rates.pop()})

    def clip_features(self, path: str | os.PathLike | AudioStream) -> list[AudioFeature]:
        """Every window's feature of one file, or of a stream already opened (an error for one shorter
        than one 25 ms analysis frame)."""
        stream = path if isinstance(path, AudioStream) else self.read(path)
        if stream.duration < _FRAME:
            raise EmptyAudioError(path, f"holds {stream.duration * 1000:.1f} ms of audio, less than one "
                                        f"{_FRAME * 1000:.0f} ms analysis frame", "give a longer recording")
        return list(self.applied(stream))

    def vector(self, samples: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """The feature vector of one window of samples at ``sample_rate`` (default: the extractor's)."""
        rate = sample_rate or self.sample_rate
        if rate is None:
            raise DataError(f"{self!r}.vector: the samples' rate is not known: give vector(samples, sample_rate)")
        return _vector(samples, rate)


def clip_vector(features: list[AudioFeature]) -> np.ndarray:
    """Clip-level pooling: the windows' vectors averaged, weighted by their duration."""
    if not features:
        raise DataError("clip_vector: no windows to pool")
    weights = np.array([f.duration for f in features])
    pooled = (np.stack([f.vector for f in features]) * weights[:, None]).sum(0).astype(np.float32) / weights.sum()
    return pooled.astype(np.float32)  # (as the store keeps it)


class _FeaturePrintSession(TemporalSession):
    def __init__(self, p: AudioFeaturePrint):
        self.p = p
        self._at(p.sample_rate or 0)
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # sample index of buffer[0]
        self.emitted = 0
        self.covered = 0  # samples before this index were in an emitted window

    def _at(self, rate: int) -> None:
        """Work at ``rate`` Hz (0: not known before the first buffer)."""
        self.rate = rate
        self.window = int(round(self.p.window_duration * rate))
        self.hop = max(1, int(round(self.window * (1 - self.p.overlap_factor))))

    def _emit(self, start: int, samples: np.ndarray) -> AudioFeature:
        feature = AudioFeature(self.emitted, start / self.rate, len(samples) / self.rate,
                               _vector(samples, self.rate), self.rate)
        self.emitted += 1
        self.covered = start + len(samples)
        return feature

    def push(self, buffer: AudioBuffer) -> list:
        if not self.rate:
            self._at(buffer.sample_rate)
        if buffer.sample_rate != self.rate:
            raise DataError(f"{self.p!r}: got {buffer.sample_rate} Hz buffers in a stream at {self.rate} Hz; "
                            f"read the audio with read_audio(path, sample_rate={self.rate})")
        self.buffer = np.concatenate([self.buffer, buffer.samples.astype(np.float32, copy=False)])
        out = []
        while len(self.buffer) >= self.window:
            out.append(self._emit(self.buffer_start, self.buffer[:self.window]))
            self.buffer = self.buffer[self.hop:]
            self.buffer_start += self.hop
        return out

    def finish(self) -> list:
        end = self.buffer_start + len(self.buffer)
        if end == 0 or (self.emitted and end - self.covered < 0.25 * self.window):
            return []
        # the stream's last window: its final `window` samples (all of it when shorter)
        start = max(self.buffer_start, end - self.window)
        return [self._emit(start, self.buffer[start - self.buffer_start:])]

    def snapshot(self) -> dict[str, Any]:
        return {"buffer": self.buffer.copy(), "buffer_start": self.buffer_start, "emitted": self.emitted,
                "covered": self.covered, "sample_rate": self.rate}

    def restore(self, state: dict[str, Any]) -> None:
        self.buffer = np.asarray(state["buffer"], np.float32)
        self.buffer_start, self.emitted, self.covered = (int(state[k]) for k in ("buffer_start", "emitted", "covered"))
        self._at(int(state.get("sample_rate", self.rate)))


_FILTERBANKS: dict[int, np.ndarray] = {}


def _vector(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    frame, hop = int(_FRAME * sample_rate), int(_HOP * sample_rate)
    # no pre-emphasis: the energy under 300 Hz (voicing) separates words across speakers
    x = np.asarray(samples, np.float32)
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n = 1 + (len(x) - frame) // hop
    frames = np.lib.stride_tricks.as_strided(x, (n, frame), (x.strides[0] * hop, x.strides[0]))
    power = np.abs(rfft(frames * np.hanning(frame).astype(np.float32), _FFT)) ** 2
    if sample_rate not in _FILTERBANKS:
        _FILTERBANKS[sample_rate] = _mel_filterbank(sample_rate, _FFT, _MELS)
    mel = power @ _FILTERBANKS[sample_rate].T
    # relative to the loudest band, floored 60 dB under it (silence, and the bands a band-limited
    # source leaves empty, sit at one level in every clip), then power-law compressed as in PNCC:
    # unlike a logarithm it does not magnify the quiet bands where recording setups differ most
    relative = np.maximum(mel / max(float(mel.max()), 1e-20), 1e-6)
    spectrum = _COMPRESSION_SCALE * relative ** (1.0 / _COMPRESSION)
    ceps = dct(spectrum, type=2, norm="ortho", axis=1)[:, :_CEPS]
    energy = np.log(power.sum(axis=1) + 1e-10)
    active = np.flatnonzero(energy > energy.max() - np.log(10 ** (_ACTIVE_DB / 10)))
    ceps, spectrum = ceps[active[0]:active[-1] + 1], spectrum[active[0]:active[-1] + 1]
    deltas = np.diff(ceps, axis=0) if len(ceps) > 1 else np.zeros((1, _CEPS), np.float32)
    normalised = ceps[:, :_SEG_CEPS] - ceps[:, :_SEG_CEPS].mean(axis=0)
    edges = np.linspace(0, len(ceps), _SEGMENTS + 1)
    segments = [normalised[int(a):max(int(a) + 1, int(b))].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])]
    return np.concatenate([ceps[:, 1:].mean(axis=0), ceps.std(axis=0), np.concatenate(segments),
                           deltas.std(axis=0), spectrum.mean(axis=0), [len(ceps) * _HOP]]).astype(np.float32)
