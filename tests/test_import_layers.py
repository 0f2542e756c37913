"""The layers contract in pyproject.toml ([tool.importlinter]): imports run downward, from the
commands to the runs, the datamodules and Lightning modules, the nets / losses / metrics, and the
data layer. import-linter reads the imports statically, so nothing heavy is imported here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

importlinter_cli = pytest.importorskip("importlinter.cli")
PACKAGES = ("relkd", "datamodules", "lightning_modules")


def test_no_import_runs_up_a_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert importlinter_cli.lint_imports(config_filename=str(REPO / "pyproject.toml")) == 0


def test_the_contract_catches_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of the packages with one planted upward import (data -> runs) breaks it."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    schema = tmp_path / "relkd" / "data" / "schema.py"
    schema.write_text(schema.read_text() + "\nfrom relkd.runs import run_dir  # noqa\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlinter_cli.lint_imports(config_filename=str(tmp_path / "pyproject.toml")) == 1
    assert "relkd.data.schema -> relkd.runs.run_dir" in capsys.readouterr().out
