"""The demo recipe behind `make demo`: zoo -> default sweep -> report."""

from __future__ import annotations

from pathlib import Path

from mergescope.report import write_report
from mergescope.sweep import SweepSettings, sweep
from mergescope.zoo import build_zoo, load_zoo


def run_demo(zoo_dir: Path, run_dir: Path = Path("runs/demo"), report_dir: Path = Path("reports/demo")) -> Path:
    """Sweep the zoo's two parents with the default spec and return the report's path."""
    zoo = load_zoo(zoo_dir) if (zoo_dir / "zoo.json").is_file() else build_zoo(zoo_dir)
    parents = [str(zoo.model_path(model.name)) for model in zoo.parents()][:2]
    sweep(SweepSettings(parents=parents, base=str(zoo.model_path(zoo.base().name)), out=run_dir))
    return write_report(run_dir, report_dir)
