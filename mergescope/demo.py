"""The demo recipe behind `make demo`: zoo -> a kinship study of the zoo's pairs -> one report."""

from __future__ import annotations

from pathlib import Path

from mergescope.report.plots import STUDY_PLOTS
from mergescope.study import StudyResult, StudySettings, study, zoo_study_pairs
from mergescope.sweep import SweepSettings
from mergescope.zoo.build import ensure_zoo

STUDY_SWEEP = Path(__file__).resolve().parent.parent / "sweeps" / "study.yaml"


def run_demo(zoo_dir: Path, run_dir: Path = Path("runs/demo"), report_dir: Path = Path("reports/demo")) -> StudyResult:
    """Study every pair of the zoo (built once per recipe) with sweeps/study.yaml; rerunning resumes."""
    zoo = ensure_zoo(zoo_dir)
    options = SweepSettings(parents=[], sweep=STUDY_SWEEP)
    return study(StudySettings(tuple(zoo_study_pairs(zoo, group="zoo")), out=run_dir, report=report_dir,
                               options=options))


def save_study_picture(result: StudyResult, path: Path) -> Path:
    """Save the study's emergence_vs_kinship plot as a PNG (the README's opening picture)."""
    STUDY_PLOTS["emergence_vs_kinship"](result.data).savefig(path, dpi=90, bbox_inches="tight")
    return path
