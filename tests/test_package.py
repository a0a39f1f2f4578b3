"""One import name: cadence, its public API, and layers that keep Ray where it belongs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import ROOT, video

NO_RAY = "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'"


def python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_everything_imports_under_cadence_and_nothing_else(tmp_path):
    # run outside the checkout, as a user's project would: only the installed package is there
    run = python("import cadence, sys\n"
                 "from cadence import (HumanBodyPoseExtractor, PoseSelector, SlidingWindow, Downsample,\n"
                 "    HumanBodyActionCounter, read_video, read_camera, AudioFeaturePrint,\n"
                 "    LogisticRegressionClassifier, FullyConnectedNetworkClassifier, RepetitionCounting,\n"
                 "    ModelFileError, InvalidAudioError, NoPersonError)\n"
                 "missing = [n for n in cadence.__all__ if not hasattr(cadence, n)]\n"
                 "assert not missing, missing\n"
                 "import cadence.pipelines, cadence.actors, cadence.cluster.cli\n"
                 "for name in ('pipelines', 'actors', 'cluster'):\n"
                 "    try:\n"
                 "        __import__(name)\n"
                 "    except ImportError:\n"
                 "        continue\n"
                 "    raise AssertionError(f'a top-level {name} is importable')\n", tmp_path)
    assert run.returncode == 0, run.stderr


def test_the_public_api_names_every_public_class_and_error():
    import inspect

    import cadence
    from cadence.pipelines import errors

    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, Exception):
            assert name in cadence.__all__, f"{name} is not in cadence.__all__"
    for name in ("RepetitionCounting", "CountResult", "FeedCounting", "TrainingProgress", "clip_vector"):
        assert name in cadence.__all__


def test_the_components_import_no_ray(tmp_path):
    # every module of the components, found by walking the package (import-linter checks the imports
    # written in the code, tests/test_layers.py; this, what importing them loads at run time)
    run = python("import importlib, pkgutil, sys, cadence.pipelines as p\n"
                 "for m in pkgutil.walk_packages(p.__path__, 'cadence.pipelines.'):\n"
                 "    importlib.import_module(m.name)\n"
                 "assert len([m for m in sys.modules if m.startswith('cadence.pipelines.')]) >= 20\n" + NO_RAY,
                 tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout


@pytest.mark.mediapipe
def test_counting_inline_never_imports_ray(tmp_path):
    clip = video("squat_correct_016.mp4")
    run = python("import sys\n"
                 "from cadence.cluster.cli import main\n"
                 f"status = main(['count', {str(clip)!r}, '--runner', 'inline', '--json'])\n"
                 "assert status == 0, status\n"
                 "assert 'cadence.cluster.audio.train' not in sys.modules, 'count loaded the training job'\n"
                 + NO_RAY, ROOT)
    assert run.returncode == 0, run.stderr
    assert '"count"' in run.stdout


@pytest.mark.slow
def test_the_wheel_builds_without_a_packaging_warning_and_carries_the_page(tmp_path):
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: a build writes into the tree it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "cadence", "pipelines", "actors", "cluster"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "absent from the `packages` configuration" not in run.stdout + run.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("cadence-*.whl"))).namelist()
    assert "cadence/cluster/serve/static/index.html" in names and "cadence/cluster/cli/main.py" in names
