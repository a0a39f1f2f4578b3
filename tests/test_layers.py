"""The layer rules of pyproject.toml's [tool.importlinter], checked by import-linter over every module;
and the limits that keep modules and functions readable.

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


LONGEST_MODULE, LONGEST_FUNCTION = 450, 60  # lines: a module a reader takes in, a function on one screen


def test_modules_and_functions_stay_short():
    import ast

    too_long = []
    for folder in ("cadence", "pipelines", "actors", "cluster"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text()
            if source.count("\n") > LONGEST_MODULE:
                too_long.append(f"{path.relative_to(ROOT)}: {source.count(chr(10))} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST_FUNCTION:
                        too_long.append(f"{path.relative_to(ROOT)}: {node.name} is {lines} lines")
    assert not too_long, "split these: " + "; ".join(too_long)


def test_every_cluster_package_says_what_it_holds():
    import ast

    for init in sorted((ROOT / "cluster").glob("*/__init__.py")):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)} has no docstring"
