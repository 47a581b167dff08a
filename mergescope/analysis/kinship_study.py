"""A kinship study's figures: per pair its kinship, parent scores and honestly chosen best candidate, and the
driver model of gain on kinship and its confounds fitted over every pair's candidates.

The best candidate of a pair on a measure is chosen on the selection half of the items and its figures
are those on the reporting half (`emergence(..., split="selection-reporting")`), so the gain plotted
against kinship carries no winner's curse. The driver fit uses every candidate on all items, as
`gain_drivers` does for a list of runs. Each pair's `RunAnalysis` is built once, with the study's
settings, and its own report is rendered from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mergescope.analysis.drivers import DriverFit, concat_points, fit_drivers, parent_kinship_row, run_driver_points
from mergescope.analysis.emergence import EmergenceReport, EmergenceRow, row_items
from mergescope.analysis.run_analysis import AnalysisSettings, RunAnalysis, analyse_run
from mergescope.analysis.run_data import RunData, load_run
from mergescope.analysis.stats import Correction, bootstrap_difference_ci
from mergescope.runs.records import StudyPair

GAINS = ("gain_over_best", "gain_over_mean")  # one driver fit each
KINSHIP_METRIC = "cosine"  # the kinship regressor of the driver fits
KinshipBasis = Literal["task vectors", "raw weights"]  # relative to the base, or the weights themselves (no base)


@dataclass(frozen=True, kw_only=True)
class PairFigures:
    """One pair of a study: its analysed run and its parents' whole-model kinship."""

    pair: StudyPair
    analysis: RunAnalysis
    pearson: float
    cosine: float
    basis: KinshipBasis | Literal[""]  # "": no kinship table
    base: str  # the base's folder name, "" without one

    @property
    def run(self) -> RunData:
        return self.analysis.run


@dataclass(frozen=True, kw_only=True)
class StudyData:
    """Everything the study report shows, computed from the pairs' runs."""

    pairs: tuple[PairFigures, ...]
    # One row per pair and measure, all items: the parents' scores, gap and mean, and how many candidates
    # were labelled emergent / degraded (adjusted across the pair's candidates).
    parents: pd.DataFrame
    # One row per pair and measure: the candidate chosen on the selection half, its figures on the reporting half.
    best: pd.DataFrame
    fits: tuple[DriverFit, ...]  # per gain in GAINS: OLS on kinship (cosine), parent gap, parent mean, mix, method
    problems: tuple[str, ...]
    alpha: float
    correction: Correction
    seed: int


def study_data(
    pairs: Sequence[StudyPair],
    run_dirs: Sequence[str | Path],
    alpha: float = 0.05,
    correction: Correction = "holm",
    seed: int = 0,
) -> StudyData:
    """The study's figures from each pair's run (`run_dirs[i]` is the run of `pairs[i]`)."""
    figures, parent_rows, best_rows, problems = [], [], [], []
    points: dict[str, list[pd.DataFrame]] = {gain: [] for gain in GAINS}
    fit_problems: list[str] = []
    settings = AnalysisSettings(alpha=alpha, correction=correction, seed=seed)
    for pair, run_dir in zip(pairs, run_dirs, strict=True):
        analysis = analyse_run(load_run(run_dir), settings)
        on_all, split = analysis.emergence, analysis.split_emergence
        problems += [f"pair {pair.key}: {problem}" for problem in dict.fromkeys(on_all.problems + split.problems)]
        pair_figures, reason = _pair_figures(pair, analysis)
        problems += [f"pair {pair.key}: {reason}"] if reason else []
        figures.append(pair_figures)
        parent_rows += _parent_rows(pair_figures, on_all)
        best_rows += _best_rows(pair_figures, split, seed)
        for gain in GAINS:
            frame, reasons = run_driver_points(analysis.run, analysis.emergence_rows, gain, KINSHIP_METRIC)
            points[gain].append(frame.assign(pair=pair.key, group=pair.group))
            fit_problems += reasons if gain == GAINS[0] else []
    problems += _basis_note(figures)
    fits = tuple(fit_drivers(concat_points(points[gain]), "gain", alpha, fit_problems) for gain in GAINS)
    return StudyData(
        pairs=tuple(figures),
        parents=pd.DataFrame(parent_rows),
        best=pd.DataFrame(best_rows),
        fits=fits,
        problems=tuple(problems),
        alpha=alpha,
        correction=correction,
        seed=seed,
    )


def _pair_figures(pair: StudyPair, analysis: RunAnalysis) -> tuple[PairFigures, str]:
    """The pair's whole-model Pearson and cosine from its run's kinship table (NaN, and why, without one)."""
    run = analysis.run
    row, reason = parent_kinship_row(run)
    base = Path(run.meta.base).name if run.meta and run.meta.base else ""
    if row is None:
        return PairFigures(pair=pair, analysis=analysis, pearson=np.nan, cosine=np.nan, basis="", base=base), reason
    basis: KinshipBasis = "task vectors" if bool(row.get("relative_to_base", bool(base))) else "raw weights"
    return PairFigures(
        pair=pair, analysis=analysis, pearson=float(row["pearson"]), cosine=float(row["cosine"]), basis=basis, base=base
    ), ""


def _pair_columns(figures: PairFigures) -> dict:
    pair = figures.pair
    return dict(
        pair=pair.key,
        name=pair.name,
        group=pair.group,
        kind=pair.kind,
        basis=figures.basis,
        pearson=figures.pearson,
        cosine=figures.cosine,
    )


def _parent_rows(figures: PairFigures, report: EmergenceReport) -> list[dict]:
    """Per measure on all items: the parents' scores (the same for every candidate row) and the label counts."""
    rows = report.frame()
    records = []
    for (source, task, measure), part in rows.groupby(["source", "task", "measure"], sort=False):
        first = part.iloc[0]
        records.append(
            dict(
                **_pair_columns(figures),
                source=source,
                task=task,
                measure=measure,
                best_parent=first.best_parent,
                best_parent_score=first.best_parent_score,
                worse_parent=first.worse_parent,
                worse_parent_score=first.worse_parent_score,
                parent_gap=first.best_parent_score - first.worse_parent_score,
                parents_mean=first.parents_mean,
                n_candidates=len(part),
                n_emergent=int((part.label == "emergent").sum()),
                n_degraded=int((part.label == "degraded").sum()),
            )
        )
    return records


def _best_rows(figures: PairFigures, report: EmergenceReport, seed: int) -> list[dict]:
    """Per measure: the candidate chosen on the selection half, with its reporting-half gains and their CIs."""
    chosen = {(r.task, r.measure): r for r in report.rows if r.selected and r.split == "selection"}
    records = []
    for row in (r for r in report.rows if r.selected and r.split == "reporting"):
        selection = chosen[(row.task, row.measure)]
        mean_ci_low, mean_ci_high = _gain_over_mean_ci(figures.run, row, seed)
        records.append(
            dict(
                **_pair_columns(figures),
                source=row.source,
                task=row.task,
                measure=row.measure,
                candidate=row.candidate,
                method=row.method,
                selection_half=selection.half,
                selection_score=selection.gains.score,
                reporting_half=row.half,
                n_items=row.n_items,
                score=row.gains.score,
                best_parent=row.gains.best_parent,
                best_parent_score=row.gains.best_parent_score,
                parents_mean=row.gains.parents_mean,
                gain_over_best=row.gains.gain_over_best,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
                gain_over_mean=row.gains.gain_over_mean,
                mean_ci_low=mean_ci_low,
                mean_ci_high=mean_ci_high,
                p_all_parents=row.p_all_parents,
                label=row.label,
            )
        )
    return records


def _gain_over_mean_ci(run: RunData, row: EmergenceRow, seed: int) -> tuple[float, float]:
    """The paired bootstrap CI of child - mean of the parents on the row's items (the row's CI is against the
    best parent only)."""
    child, parents = row_items(run, row, seed)
    return bootstrap_difference_ci(child.to_numpy(), parents.mean(axis=1).to_numpy(), seed=seed)


def _basis_note(figures: Sequence[PairFigures]) -> list[str]:
    bases = {f.basis for f in figures if f.basis}
    if len(bases) < 2:
        return []
    return [
        "kinship of pairs with a base compares task vectors (weights minus the base's), of pairs without one "
        "raw weights: the two scales differ, so read the figures of each basis apart (markers in the plots)"
    ]
