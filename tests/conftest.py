"""Fixtures; the helpers the tests share are in helpers.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .helpers import REPCOUNT

warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")


@pytest.fixture
def repcount_dir() -> Path:
    if not (REPCOUNT / "labels.csv").exists():
        pytest.skip(f"{REPCOUNT} is absent")
    return REPCOUNT
