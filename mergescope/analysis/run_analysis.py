"""One analysis pass over a run: every figure its report shows that takes more than a lookup, computed once.

The report's sections and plots all read one `RunAnalysis` (built by `analyse_run`), so emergence is
computed once per split, the judges' bootstrap CIs once, and the store is read once, by `load_run`.
A kinship study builds one per pair with its own settings and renders each pair's report from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from mergescope.analysis.emergence import EmergenceReport, SplitName, emergence
from mergescope.analysis.emergent_items import ItemTransitions, emergent_items
from mergescope.analysis.run_data import RunData
from mergescope.analysis.search import SearchAnalysis, analyse_search
from mergescope.analysis.stats import Correction, score_kind

SPLIT: SplitName = "selection-reporting"  # how the best candidate per measure is chosen and reported
EXAMPLES_PER_TRANSITION = 3  # example items shown for each candidate's new and lost items
CORRECTION_TITLES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


@dataclass(frozen=True)
class AnalysisSettings:
    """The level, multiple-comparison correction and seed (item halves, bootstrap CIs) of an analysis."""

    alpha: float = 0.05
    correction: Correction = "holm"
    seed: int = 0

    @property
    def correction_title(self) -> str:
        """The correction as a reader names it ("Holm")."""
        return CORRECTION_TITLES.get(self.correction, self.correction)


@dataclass(frozen=True)
class RunAnalysis:
    """A run and its analysed figures, as its report and plots read them."""

    run: RunData
    settings: AnalysisSettings
    emergence: EmergenceReport  # all items
    split_emergence: EmergenceReport  # chosen on the selection half, reported on the other (SPLIT)
    emergence_rows: pd.DataFrame  # `emergence` as a frame: every source and measure
    lmeval_rows: pd.DataFrame  # its lm-eval rows (judge measures have other scales and their own plot)
    score_intervals: (
        pd.DataFrame
    )  # per subject and task: value with a 95% CI, and the subject's kind, label, method, mix
    transitions: tuple[ItemTransitions, ...]  # new and lost items per candidate and binary task, with examples
    kinship: pd.DataFrame | None  # the kinship table; None when the run has none
    slerp_tensors: pd.DataFrame | None  # per SLERP candidate and tensor; None without SLERP diagnostics
    slerp_summary: pd.DataFrame | None  # per SLERP candidate: linear shares and angles
    judge_intervals: pd.DataFrame | None  # per subject, rubric, judge and criterion: mean with bootstrap CI
    search: SearchAnalysis | None = None  # the run's search trials and chosen trial; None for a sweep

    @property
    def name(self) -> str:
        return self.run.name


def analyse_run(run: RunData, settings: AnalysisSettings = AnalysisSettings()) -> RunAnalysis:
    """The analysis of `run`: emergence on all items and split, transitions, intervals, kinship, SLERP, judges."""
    on_all = emergence(run, settings.alpha, settings.correction, split="all", seed=settings.seed)
    split = emergence(run, settings.alpha, settings.correction, split=SPLIT, seed=settings.seed)
    rows = on_all.frame()
    slerp_tensors = stage_table(run, "slerp_diagnostics")
    return RunAnalysis(
        run=run,
        settings=settings,
        emergence=on_all,
        split_emergence=split,
        emergence_rows=rows,
        lmeval_rows=rows[rows.source == "lm-eval"].reset_index(drop=True),
        score_intervals=labelled_intervals(run),
        transitions=tuple(emergent_items(run, examples=EXAMPLES_PER_TRANSITION)),
        kinship=stage_table(run, "kinship"),
        slerp_tensors=slerp_tensors,
        slerp_summary=_slerp_summary(run) if slerp_tensors is not None else None,
        judge_intervals=_judge_intervals(run),
        search=analyse_search(run, settings.seed, settings.alpha),
    )


def stage_table(run: RunData, name: str) -> pd.DataFrame | None:
    """A stage's table of the run, or None when that stage has not written it (or wrote nothing)."""
    table = run.tables.get(name)
    return None if table is None or table.empty else table


def _slerp_summary(run: RunData) -> pd.DataFrame:
    from mergescope.analysis.slerp_diagnostics import slerp_summary  # imports torch: only when there is a table

    return slerp_summary(run)


def _judge_intervals(run: RunData) -> pd.DataFrame | None:
    from mergescope.scoring.agreement import criterion_intervals  # scikit-learn: only for judged runs

    judgments = stage_table(run, "judgments")
    return criterion_intervals(judgments) if judgments is not None else None


# -- score intervals -------------------------------------------------------------------------------------


def score_intervals(run: RunData) -> pd.DataFrame:
    """Per subject and task (primary metric): value with a 95% CI, Wilson for 0/1 items, else +-1.96 stderr."""
    records = []
    for task in run.tasks():
        metric = run.primary_metric(task)
        items = run.items[(run.items.task == task) & (run.items.metric == metric)]
        binary = not items.empty and score_kind(items.value.to_numpy()) == "binary"
        for score in run.scores[(run.scores.task == task) & (run.scores.metric == metric)].itertuples():
            low, high = _interval(score.value, score.n_items, score.stderr, binary)
            records.append(dict(subject_id=score.subject_id, task=task, value=score.value, low=low, high=high))
    return pd.DataFrame(records, columns=["subject_id", "task", "value", "low", "high"])


def _interval(value: float, n_items, stderr, binary: bool) -> tuple[float, float]:
    if binary and n_items and n_items > 0:
        low, high = proportion_confint(round(value * n_items), int(n_items), alpha=0.05, method="wilson")
        return float(low), float(high)
    if stderr is not None and not pd.isna(stderr):
        return value - 1.96 * stderr, value + 1.96 * stderr
    return math.nan, math.nan


def labelled_intervals(run: RunData) -> pd.DataFrame:
    """score_intervals joined with each subject's kind, label, method and mix."""
    subjects = run.subjects.set_index("id")[["kind", "label", "method", "mix"]]
    return score_intervals(run).join(subjects, on="subject_id")
