"""The demo recipe behind `make demo`: the zoo at two widths -> a kinship study of both zoos' pairs -> one report."""

from __future__ import annotations

from pathlib import Path

from mergescope.errors import MergescopeError
from mergescope.merging.spec import SWEEPS_DIR
from mergescope.recipes.study import StudyResult, StudySettings, study, zoo_study_pairs
from mergescope.recipes.sweep import SweepSettings
from mergescope.report.plots import STUDY_PLOTS
from mergescope.zoo.build import LARGE_WIDTH, SMALL_WIDTH, ensure_zoo

STUDY_SWEEP = SWEEPS_DIR / "study.yaml"
# Each zoo's directory under the cache names its group in the study: the two sizes side by side.
DEMO_ZOOS = (("zoo64", SMALL_WIDTH), ("zoo128", LARGE_WIDTH))


def run_demo(
    cache: Path = Path(".cache"), run_dir: Path = Path("runs/demo"), report_dir: Path = Path("reports/demo")
) -> StudyResult:
    """Study every pair of both zoos (each built once per recipe, into `cache`) with the shipped study spec;
    rerunning resumes."""
    zoos = [ensure_zoo(cache / name, width=width) for name, width in DEMO_ZOOS]
    pairs = tuple(pair for zoo in zoos for pair in zoo_study_pairs(zoo))
    return study(
        StudySettings(pairs, out=run_dir, report=report_dir, options=SweepSettings(parents=[], sweep=STUDY_SWEEP))
    )


def save_study_picture(result: StudyResult, path: Path) -> Path:
    """Save the study's emergence_vs_kinship plot as a PNG (the README's opening picture)."""
    figure = STUDY_PLOTS["emergence_vs_kinship"](result.data)
    if figure is None:
        raise MergescopeError("the study has no pair with both kinship and emergence figures to plot")
    figure.savefig(path, dpi=90, bbox_inches="tight")
    return path
