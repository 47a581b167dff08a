"""The notebooks run top to bottom against small runs, and are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, environment: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    """Run notebooks/NAME in a fresh kernel (which inherits `environment`); returns it with outputs."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return notebook


def text_of(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def images_in(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", ["emergence_analysis.ipynb", "compare_runs.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module")
def stranger_run(zoo, tmp_path_factory):
    """A small second run of another parent pair: arith + the stranger, 20 items per task."""
    from mergescope.recipes.sweep import SweepSettings, sweep

    settings = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("stranger"))],
        base=str(zoo.model_path("base")),
        out=tmp_path_factory.mktemp("runs") / "stranger",
        backend="hf",
        limit=20,
        progress=False,
    )
    return sweep(settings).run_dir


@pytest.mark.slow
def test_emergence_analysis_runs_on_the_default_run(default_run, monkeypatch):
    run_dir = default_run[1].run_dir
    notebook = execute("emergence_analysis.ipynb", {"MERGESCOPE_RUN": str(run_dir)}, monkeypatch)
    output = text_of(notebook)
    assert f"run {run_dir.name}:" in output
    assert "gain_over_best" in output and "new (0->1)" in output
    assert images_in(notebook) >= 4  # the score plots at least


@pytest.mark.slow
def test_compare_runs_runs_on_a_kinship_series(default_run, stranger_run, monkeypatch):
    runs = os.pathsep.join([str(default_run[1].run_dir), str(stranger_run)])
    notebook = execute("compare_runs.ipynb", {"MERGESCOPE_RUNS": runs}, monkeypatch)
    output = text_of(notebook)
    assert "arith + facts" in output and "arith + stranger" in output
    assert images_in(notebook) >= 2  # the kinship plot and at least one interpolation curve
