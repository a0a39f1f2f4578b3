"""One import name: cadence, its public API, and layers that keep Ray where it belongs."""

from __future__ import annotations

import subprocess
import sys

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
    modules = ["audio", "base", "classifiers", "counting", "drawing", "errors", "events", "export", "files",
               "modelfile", "pose", "repcount", "repetitions", "temporal", "video"]
    run = python("import sys, cadence\n" + "".join(f"import cadence.pipelines.{m}\n" for m in modules) + NO_RAY,
                 tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout


def test_counting_inline_never_imports_ray(tmp_path):
    clip = video("squat_correct_016.mp4")
    run = python("import sys\n"
                 "from cadence.cluster.cli import main\n"
                 f"status = main(['count', {str(clip)!r}, '--runner', 'inline', '--json'])\n"
                 "assert status == 0, status\n" + NO_RAY, ROOT)
    assert run.returncode == 0, run.stderr
    assert '"count"' in run.stdout
