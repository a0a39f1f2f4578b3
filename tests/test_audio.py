"""read_audio and AudioFeaturePrint on real and generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cadence.pipelines.audio import AudioFeaturePrint, read_audio
from cadence.pipelines.errors import AudioNotFoundError, EmptyAudioError, InvalidAudioError

from .helpers import DATA

FSDD = DATA / "fsdd" / "recordings"


def fsdd(name: str):
    path = FSDD / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def tone(path, seconds=3.0, rate=44100, channels=2, frequency=440.0):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    sf.write(str(path), np.repeat(wave[:, None], channels, axis=1), rate)
    return path


def test_read_audio_mixes_to_mono_and_resamples(tmp_path):
    stream = read_audio(tone(tmp_path / "stereo.wav"), sample_rate=16000, buffer_duration=0.5)
    buffers = list(stream)
    assert all(b.samples.ndim == 1 and b.samples.dtype == np.float32 and b.sample_rate == 16000 for b in buffers)
    assert sum(len(b.samples) for b in buffers) == 48000 and [b.start_time for b in buffers][:2] == [0.0, 0.5]
    assert list(stream)[0].samples.tolist() == buffers[0].samples.tolist()  # re-iterable


@pytest.mark.parametrize("content, error, words", [
    (None, AudioNotFoundError, "no such file"),
    (b"", EmptyAudioError, "empty"),
    (b"this is not audio at all", InvalidAudioError, "not audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(30), InvalidAudioError, "not audio"),
])
def test_bad_audio_files_are_named(tmp_path, content, error, words):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=words) as caught:
        read_audio(path)
    assert "bad.wav" in str(caught.value)


def test_windows_follow_duration_and_overlap(tmp_path):
    stream = read_audio(tone(tmp_path / "three.wav", seconds=3.0))
    features = list(AudioFeaturePrint(window_duration=1.0, overlap_factor=0.5).applied(stream))
    assert [f.start_time for f in features] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(f.vector.shape == (AudioFeaturePrint.DIMENSION,) and f.vector.dtype == np.float32 for f in features)
    assert np.isfinite(np.stack([f.vector for f in features])).all()
    short = list(AudioFeaturePrint(window_duration=2.0).applied(read_audio(tone(tmp_path / "s.wav", seconds=0.6))))
    assert len(short) == 1 and short[0].duration == pytest.approx(0.6)  # a clip shorter than a window: one window


def test_same_file_twice_gives_identical_features():
    path = fsdd("7_jackson_3.wav")
    extractor = AudioFeaturePrint()
    a = [f.vector for f in extractor.applied(read_audio(path))]
    b = [f.vector for f in AudioFeaturePrint().applied(read_audio(path))]
    assert len(a) == len(b) >= 1 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_fingerprint_changes_with_any_parameter():
    base = AudioFeaturePrint()
    prints = {base.fingerprint(), AudioFeaturePrint(window_duration=1.5).fingerprint(),
              AudioFeaturePrint(overlap_factor=0.25).fingerprint(), AudioFeaturePrint(sample_rate=22050).fingerprint()}
    assert len(prints) == 4 and AudioFeaturePrint().fingerprint() == base.fingerprint()


@pytest.mark.parametrize("kwargs, words", [({"window_duration": 0.4}, "window_duration"),
                                           ({"window_duration": 16}, "window_duration"),
                                           ({"overlap_factor": 1.0}, "overlap_factor")])
def test_parameters_are_checked(kwargs, words):
    extractor = AudioFeaturePrint(**kwargs)  # the constructor only stores
    with pytest.raises(ValueError, match=words):
        extractor.session()


def test_snapshot_mid_stream_resumes_to_the_same_features(tmp_path):
    buffers = list(read_audio(tone(tmp_path / "t.wav", seconds=4.0), buffer_duration=0.3))
    extractor = AudioFeaturePrint(window_duration=1.0, overlap_factor=0.25)
    whole = [f.vector for f in extractor.applied(buffers)]
    first = extractor.session()
    out = [f for b in buffers[:5] for f in first.push(b)]
    second = extractor.session()
    second.restore(first.snapshot())
    out += [f for b in buffers[5:] for f in second.push(b)] + second.finish()
    assert len(out) == len(whole) and all(np.array_equal(f.vector, v) for f, v in zip(out, whole))


def test_the_python_api_and_cadence_features_make_the_same_features_by_default(tmp_path):
    import json
    import subprocess

    import pyarrow.parquet as pq

    from cadence.pipelines.audio import clip_vector

    from .helpers import CADENCE, ROOT, corpus, names

    manifest = corpus(tmp_path / "audio", names(10))
    run = subprocess.run([*CADENCE, "features", str(manifest), "--store", str(tmp_path / "store"), "--inline", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "features at 8000 Hz, the files' own rate" in run.stderr  # FSDD's own, as the command says
    parts = sorted(Path(json.loads(run.stdout)["store"]).glob("part-*.parquet"))
    stored = pq.ParquetDataset(parts).read().to_pylist()
    clips = {Path(r["path"]).name: np.asarray(r["vector"], np.float32) for r in stored if r["window_index"] == -1}
    assert len(clips) == 10
    for name, vector in clips.items():
        stream = read_audio(tmp_path / "audio" / name)  # the Python API's defaults
        assert stream.sample_rate == 8000
        assert np.array_equal(clip_vector(list(AudioFeaturePrint().applied(stream))), vector), name


def test_a_fitted_composition_keeps_the_rate_it_was_fitted_at_and_one_fit_takes_one_rate(tmp_path):
    from cadence import AnnotatedFeature, LogisticRegressionClassifier
    from cadence.pipelines.errors import DataError

    def clips(rate: int) -> list:
        return [AnnotatedFeature(read_audio(tone(tmp_path / f"{f}-{rate}.wav", 1.0, rate, 1, f)), "high" if f > 1000 else "low")
                for f in (300, 400, 500, 600, 1500, 1800, 2100, 2400)]

    task = AudioFeaturePrint().appending(LogisticRegressionClassifier(l2_penalty=0.01))
    fitted = task.fitted(clips(8000))
    assert fitted.extractor.sample_rate == 8000 and task.first.sample_rate is None  # the task itself unchanged
    assert fitted.applied(read_audio(tone(tmp_path / "q.wav", 1.0, 8000, 1, 2000))).label == "high"
    with pytest.raises(DataError, match=r"got 16000 Hz buffers in a stream at 8000 Hz.*sample_rate=8000"):
        fitted.applied(read_audio(tone(tmp_path / "wide.wav", 1.0, 22050, 1, 2000)))  # read at 16 kHz: refused
    assert fitted.applied(read_audio(tmp_path / "wide.wav", sample_rate=8000)).label == "high"
    with pytest.raises(DataError, match=r"made at 8000 and 16000 Hz.*sample_rate=16000"):
        task.fitted(clips(8000) + clips(16000))
