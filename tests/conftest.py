"""Shared fixtures: the real data in ../shared/data (tests skip when it is absent)."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CADENCE_DATA", ROOT.parent / "shared" / "data"))
VIDEOS = DATA / "videos"
REPCOUNT = DATA / "repcount-dev"

warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")


def video(name: str) -> Path:
    path = VIDEOS / name
    if not path.exists():
        pytest.skip(f"shared clip {path} is absent")
    return path


@functools.cache
def selected_poses(name: str, strategy: str = "maximum_bounding_box_area") -> tuple:
    """The selected pose per frame of a shared clip, from real MediaPipe, extracted once per run."""
    from pipelines import HumanBodyPoseExtractor, PoseSelector, read_video

    extractor, selector = HumanBodyPoseExtractor(), PoseSelector(strategy)
    try:
        return tuple(selector.applied(extractor.applied(f)) for f in read_video(video(name)))
    finally:
        extractor.close()


@pytest.fixture
def repcount_dir() -> Path:
    if not (REPCOUNT / "labels.csv").exists():
        pytest.skip(f"{REPCOUNT} is absent")
    return REPCOUNT
