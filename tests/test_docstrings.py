"""Every example in the docstrings of the components and the audio jobs runs, and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cadence.cluster.audio
import cadence.pipelines

MODULES = sorted(m.name for package in (cadence.pipelines, cadence.cluster.audio)
                 for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_public_classes_show_an_example():
    import inspect

    import cadence

    from cadence.pipelines.tracking import PersonTracker

    classes = [getattr(cadence, name) for name in ("Downsample", "SlidingWindow", "PoseSelector", "JointsSelector",
                                                   "HumanBodyActionCounter", "RepetitionCounting", "AudioFeaturePrint",
                                                   "FullyConnectedNetworkClassifier", "LogisticRegressionClassifier")]
    missing = [c.__name__ for c in [*classes, PersonTracker] if ">>>" not in (inspect.getdoc(c) or "")]
    assert not missing, f"no example in the docstring of {', '.join(missing)}"
