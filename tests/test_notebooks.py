"""Every notebook runs top to bottom in a real Jupyter kernel (nbclient), from a temporary working
directory, with its outputs stripped in git. Each notebook asserts what it shows, so a cell that
runs but shows the wrong thing fails here."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


# 03 runs a study of its own (~50 s): slow
RUNS = [
    pytest.param(p, marks=pytest.mark.slow) if p.name.startswith("03_") else p for p in NOTEBOOKS
]


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error or failed assert


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_stripped(path: Path) -> None:
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: run output"


def test_the_three_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_data_tour.ipynb", "02_compare_runs.ipynb", "03_study_analysis.ipynb"} <= names
