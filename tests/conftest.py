"""Fixtures and the test tiers; the helpers the tests share are in helpers.py.

Three markers say what a test needs: ``ray`` (it starts or joins Ray, or runs a command that
does), ``mediapipe`` (it runs the pose model) and ``slow`` (seconds of CPU without either).
``make test-fast`` runs the rest, the tier a developer runs in under a minute; there a test that
loads Ray or MediaPipe fails, naming the marker it lacks, so the tier stays fast as tests are added; a module marked heavy as a whole
(``pytestmark``) is not even imported there.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from .helpers import REPCOUNT, cores


FAST_TIER = os.environ.get("CADENCE_TEST_TIER") == "fast"
HEAVY = {"ray": "ray", "mediapipe": "mediapipe"}  # module -> the marker a test loading it needs


@pytest.fixture
def repcount_dir() -> Path:
    if not (REPCOUNT / "labels.csv").exists():
        pytest.skip(f"{REPCOUNT} is absent")
    return REPCOUNT


@pytest.fixture(scope="session", autouse=True)
def _cores_shut_down_at_the_end():
    yield
    if cores.cache_info().currsize:
        cores().shutdown(cancel_futures=True)


@pytest.fixture(autouse=True)
def _fast_tier_loads_no_heavy_module(request):
    before = set(sys.modules)
    yield
    loaded = [module for module in HEAVY if module in sys.modules and module not in before]
    if FAST_TIER and loaded:
        markers = " and ".join(f"@pytest.mark.{HEAVY[m]}" for m in loaded)
        pytest.fail(f"{request.node.nodeid} loaded {', '.join(loaded)} in the fast tier: mark it {markers}")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if FAST_TIER and collection_path.suffix == ".py" and _module_markers(collection_path) & set(HEAVY.values()):
        return True
    return None


def _module_markers(path: Path) -> set[str]:
    """The markers a test module's ``pytestmark`` names, read without importing the module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            return {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute)} - {"mark"}
    return set()
