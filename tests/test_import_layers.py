"""The layers contract in pyproject.toml ([tool.importlinter]): imports run downward, from the
commands to the runs, the datamodules and Lightning modules, the nets / losses / metrics, and the
data layer. import-linter reads the imports statically, so nothing heavy is imported here.

Each check runs import-linter in its own interpreter, without its cache: in-process, a package that
an earlier test imported (`relkd` from the repository) would be the one import-linter finds, not the
planted copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("importlinter.cli")
PACKAGES = ("relkd", "datamodules", "lightning_modules")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under `root`, with `root` first on the path."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, no_cache=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_no_import_runs_up_a_layer() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """A copy of the packages with one planted upward import (data -> runs) breaks it."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    schema = tmp_path / "relkd" / "data" / "schema.py"
    schema.write_text(schema.read_text() + "\nfrom relkd.runs import run_dir  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "relkd.data.schema -> relkd.runs.run_dir" in result.stdout
