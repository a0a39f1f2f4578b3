"""Generated bad inputs for every entry point, as a careless or hostile user would give them.

Each case must end in a message that names the input and the problem, the documented exit status
(2 for bad input), no traceback and no hang (each command has a time limit), and the good inputs
given beside the bad ones must still be processed.  Inputs are generated from a fixed seed: random
bytes behind real media and archive headers, samples that are not numbers, sizes and rates at the
edges, manifests with odd columns and text.  The cases are counted in ``CASES`` at the end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from .helpers import CADENCE, FSDD, ROOT, video

RNG = np.random.default_rng(2026)
LIMIT = 240  # seconds per command: a hang fails the case
CASES: list[str] = []


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CADENCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=LIMIT)


def noise(head: bytes, size: int = 4096) -> bytes:
    return head + RNG.bytes(size)


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


# -- videos -----------------------------------------------------------------------------------
def write_video(path: Path, size: tuple[int, int], frames: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for _ in range(frames):
        writer.write(RNG.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def bad_videos(folder: Path) -> dict[str, Path]:
    real = video("squat_correct_007.mp4").read_bytes()
    cases = {
        "mp4 header, random body": noise(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"),
        "avi header, random body": noise(b"RIFF\x00\x10\x00\x00AVI LIST"),
        "mkv header, random body": noise(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"),
        "random bytes": RNG.bytes(10_000),
        "empty file": b"",
        "text": b"this is not a video\n",
        "truncated mp4": real[: len(real) // 8],
        "mp4 with its middle overwritten": real[:2000] + RNG.bytes(len(real) - 4000) + real[-2000:],
        "png named mp4": cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes(),
    }
    paths = {}
    for i, (name, data) in enumerate(cases.items()):
        paths[name] = folder / f"bad{i}.mp4"
        paths[name].write_bytes(data)
    paths["1x1 frames"] = write_video(folder / "tiny.avi", (1, 1), 10, 30)
    paths["4000x4000 frames"] = write_video(folder / "huge.avi", (4000, 4000), 2, 30)
    paths["frame rate 0"] = write_video(folder / "fps0.avi", (64, 64), 5, 0)
    paths["frame rate 100000"] = write_video(folder / "fps-absurd.avi", (64, 64), 5, 100_000)
    return paths


@pytest.mark.mediapipe
def test_count_survives_every_bad_video_and_counts_the_good_one(tmp_path):
    bad = bad_videos(tmp_path)
    good = video("squat_correct_016.mp4")
    result = run("count", *map(str, bad.values()), str(good), "--runner", "inline", "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    by_source = {r["source"]: r for r in json_lines(result.stdout)}
    assert by_source[str(good)]["count"] == pytest.approx(1, abs=0.5)
    for name, path in bad.items():
        assert by_source[str(path)]["error"], name
        assert str(path) in result.stderr, name  # the message names the file
        CASES.append(f"count: {name}")


# -- audio and manifests ----------------------------------------------------------------------
def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    sf.write(path, samples, rate, subtype="FLOAT")
    return path


def bad_audio(folder: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name, head in (("wav header, random body", b"RIFF\x24\x08\x00\x00WAVEfmt "), ("flac header, random body", b"fLaC"),
                       ("ogg header, random body", b"OggS\x00\x02"), ("random bytes", b"")):
        paths[name] = folder / f"{name.split()[0]}-noise.wav"
        paths[name].write_bytes(noise(head))
    paths["text"] = folder / "notes.wav"
    paths["text"].write_text("hello")
    paths["empty file"] = folder / "empty.wav"
    paths["empty file"].touch()
    nan = RNG.normal(0, 0.1, 8000).astype(np.float32)
    nan[100:200] = np.nan
    paths["NaN samples"] = write_audio(folder / "nan.wav", nan, 8000)
    paths["infinite samples"] = write_audio(folder / "inf.wav", np.full(8000, np.inf, np.float32), 8000)
    paths["0 samples"] = write_audio(folder / "zero.wav", np.zeros(0, np.float32), 8000)
    paths["1 sample"] = write_audio(folder / "one.wav", np.zeros(1, np.float32), 8000)
    paths["a folder"] = folder / "folder.wav"
    paths["a folder"].mkdir()
    paths["missing"] = folder / "missing.wav"
    return paths


def unusual_but_good_audio(folder: Path) -> dict[str, Path]:
    """Inputs that look odd but are fine: they must be extracted like any other."""
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    link = folder / "linked.wav"
    link.symlink_to(FSDD / "4_theo_7.wav")
    return {
        "8 channels at 192 kHz": write_audio(folder / "wide.wav", RNG.normal(0, 0.1, (19200, 8)).astype(np.float32),
                                             192000),
        "a path outside the manifest's folder": write_audio(outside / "elsewhere.wav",
                                                            RNG.normal(0, 0.1, 16000).astype(np.float32), 16000),
        "a path through a symlink": link,
    }


def test_features_keep_every_good_file_and_name_every_bad_one(tmp_path):
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    folder = tmp_path / "audio"
    folder.mkdir()
    bad, odd = bad_audio(folder), unusual_but_good_audio(folder)
    good = {"good 1": FSDD / "0_george_0.wav", "good 2": FSDD / "1_jackson_0.wav"}
    rows = [f'"{os.path.relpath(p, folder)}",x,train' for p in {**bad, **odd, **good}.values()]
    (folder / "manifest.csv").write_text("\n".join(["path,label,split", *rows]) + "\n")
    result = run("features", str(folder / "manifest.csv"), "--store", str(tmp_path / "store"), "--inline", "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    summary = json_lines(result.stdout)[-1]
    assert (summary["extracted"], summary["failed"]) == (len(odd) + len(good), len(bad)), summary
    import pyarrow.dataset as ds

    errors = ds.dataset(sorted(Path(summary["store"]).glob("errors-*.parquet"))).to_table().to_pydict()
    named = dict(zip(errors["path"], errors["error"]))
    for name, path in bad.items():
        assert str(path) in named and named[str(path)], name
        CASES.append(f"features: {name}")
    CASES.extend(f"features (processed): {name}" for name in odd)


MANIFESTS = {
    "no header": "a.wav,x\n",
    "missing label column": "path,split\na.wav,train\n",
    "empty file": "",
    "header only": "path,label\n",
    "binary garbage": None,
    "unclosed quote": 'path,label\n"a.wav,x\n',
}


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_a_broken_manifest_is_named_with_what_is_wrong(tmp_path, name):
    manifest = tmp_path / "manifest.csv"
    if MANIFESTS[name] is None:
        manifest.write_bytes(RNG.bytes(3000))
    else:
        manifest.write_text(MANIFESTS[name])
    result = run("features", str(manifest), "--store", str(tmp_path / "store"), "--inline")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "manifest.csv" in result.stderr or "a.wav" in result.stderr
    CASES.append(f"manifest: {name}")


def test_labels_with_quotes_commas_and_any_script_are_kept_as_written(tmp_path):
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    labels = ['say "hi", then go', "zwölf", "数字", "  spaced  "]
    files = ["0_george_0.wav", "1_jackson_0.wav", "2_lucas_0.wav", "3_nicolas_0.wav"]
    lines = ["path,label,split"] + ['"{}","{}",train'.format(FSDD / f, label.replace('"', '""'))
                                   for f, label in zip(files, labels)]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("features", str(tmp_path / "manifest.csv"), "--store", str(tmp_path / "store"), "--inline")
    assert result.returncode == 0, result.stderr
    from cadence.cluster.audio.train import open_store

    stored = set(open_store(tmp_path / "store").table(["label"]).column("label").to_pylist())
    assert stored == {label.strip() for label in labels}
    CASES.extend(f"manifest label: {label!r}" for label in labels)


# -- models -----------------------------------------------------------------------------------
def _safetensors(header: dict | bytes, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


def bad_models(folder: Path) -> dict[str, Path]:
    from safetensors.numpy import save as serialise

    members = io.BytesIO()
    with zipfile.ZipFile(members, "w") as z:
        z.writestr("header.npy", RNG.bytes(200))
        z.writestr("model/w0.npy", RNG.bytes(200))
    cadence = {"format": "cadence-model"}
    weights = {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]}
    cases = {
        "random bytes": RNG.bytes(5000),
        "zip header, random body": noise(b"PK\x03\x04"),
        "npz of random members (an older cadence's format)": members.getvalue(),
        "safetensors header, random body": noise(_safetensors({"a": 1})),
        "safetensors of another program": serialise({"weight": np.zeros((3, 3), np.float32)}),
        "safetensors with cadence metadata that is not JSON":
            serialise({"model/w0": np.zeros(2, np.float32)}, metadata=cadence | {"cadence": "{not json"}),
        "safetensors declaring a header larger than the file": (10**12).to_bytes(8, "little") + RNG.bytes(100),
        "safetensors header that is not JSON": _safetensors(b"{" + RNG.bytes(60), RNG.bytes(40)),
        "safetensors tensor of strings": _safetensors({"__metadata__": cadence, "model/w0": weights | {"dtype": "STR"}},
                                                      RNG.bytes(32)),
        "safetensors tensor past the end of the file": _safetensors({"__metadata__": cadence,
                                                                     "model/w0": weights | {"data_offsets": [0, 64]}},
                                                                    RNG.bytes(32)),
        "empty file": b"",
    }
    paths = {}
    for i, (name, data) in enumerate(cases.items()):
        paths[name] = folder / f"model{i}.safetensors"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.slow
def test_predict_refuses_every_bad_model_file(tmp_path):
    wav = FSDD / "3_theo_2.wav"
    for name, path in bad_models(tmp_path).items():
        result = run("predict", "--model", str(path), str(wav))
        assert result.returncode == 2 and "Traceback" not in result.stderr, (name, result.stderr)
        assert path.name in result.stderr, name
        CASES.append(f"model file: {name}")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small real model: logistic regression on 100 FSDD files."""
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    from cadence.cluster.audio.features import extract_corpus
    from cadence.cluster.audio.settings import TrainSettings
    from cadence.cluster.audio.train import open_store, save_model, train
    from cadence.pipelines.classifiers import LogisticRegressionClassifier

    from .helpers import corpus, names

    folder = tmp_path_factory.mktemp("model")
    extract_corpus(corpus(folder / "audio", names(100)), folder / "store", use_ray=False)
    store = open_store(folder / "store")
    settings = TrainSettings(LogisticRegressionClassifier())
    return save_model(folder / "digits.safetensors", train(store, settings), store, settings)


def test_predict_names_every_bad_audio_file_and_labels_the_good_one(tmp_path, model):
    bad = bad_audio(tmp_path)
    good = FSDD / "7_theo_3.wav"
    result = run("predict", "--model", str(model), *map(str, bad.values()), str(good), "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    by_file = {r["file"]: r for r in json_lines(result.stdout)}
    assert by_file[str(good)]["label"] in {str(d) for d in range(10)}
    for name, path in bad.items():
        assert by_file[str(path)]["error"] and str(path) in result.stderr, name
        CASES.append(f"predict: {name}")


def bad_stores(folder: Path) -> dict[str, Path]:
    empty = folder / "empty"
    empty.mkdir()
    stores = {"no such folder": folder / "nowhere", "an empty folder": empty}
    for name, content in (("extractor.json that is not JSON", "{oops"),
                          ("extractor.json of another class", '{"class": "Other", "params": {}}'),
                          ("extractor.json with unknown parameters",
                           '{"class": "AudioFeaturePrint", "params": {"hop": 1}, "fingerprint": "x"}')):
        store = folder / name.replace(" ", "-") / "AudioFeaturePrint-0"
        store.mkdir(parents=True)
        (store / "extractor.json").write_text(content)
        stores[name] = store
    return stores


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_name_every_bad_store(tmp_path, model, command):
    for name, store in bad_stores(tmp_path).items():
        extra = ["--model", str(tmp_path / "out.safetensors")] if command == "train" else ["--model", str(model)]
        result = run(command, "--store", str(store), *extra)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (name, result.stderr)
        assert store.name in result.stderr or str(store.parent.name) in result.stderr, (name, result.stderr)
        CASES.append(f"{command}: {name}")


def test_the_case_count():
    """Run last (pytest keeps file order): the generated cases above, at least 40."""
    if len(CASES) < 40:
        pytest.skip(f"only {len(CASES)} cases ran (data absent, or run alone)")
    assert len(CASES) >= 40
