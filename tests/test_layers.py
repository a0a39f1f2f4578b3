"""The layer rules of pyproject.toml's [tool.importlinter], checked by import-linter over every module.

import-linter reads a package from its folder; cadence installs three top-level folders as its
subpackages, so the check runs on a tree of links that puts them where the import names say.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .helpers import ROOT


def linked_package(root: Path) -> Path:
    """``root/cadence``: cadence/'s files, and pipelines/, actors/ and cluster/ as its subpackages."""
    package = root / "cadence"
    package.mkdir()
    for module in (ROOT / "cadence").glob("*.py"):
        (package / module.name).symlink_to(module)
    for layer in ("pipelines", "actors", "cluster"):
        (package / layer).symlink_to(ROOT / layer, target_is_directory=True)
    return root


def test_every_module_keeps_to_its_layer(tmp_path):
    tree = linked_package(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout and "3 kept" in run.stdout, run.stdout
