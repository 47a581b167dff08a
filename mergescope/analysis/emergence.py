"""Emergence: per candidate and task, does the child beat its parents, on how many items, how surely.

Figures of one row (a candidate point on one measure, on the items named by `split`/`half`):
  - gain over the best parent, over the parents' mean (the "expected" score of Lu et al. 2024) and over
    the linear-interpolation expectation (1 - mix) * score(parent 1) + mix * score(parent 2);
  - transitions: `gained_vs_best` / `lost_vs_best` are the items the child scores higher / lower than
    the best parent (0->1 / 1->0 for binary outcomes); `new_items` are items the child scores higher on
    than every parent (both parents fail, the child solves), `lost_items` those some parent scores higher
    on (a parent solved, the child fails);
  - paired tests against each parent (exact McNemar, or Wilcoxon for graded scores) and a seeded paired
    bootstrap CI of child - best parent.

Labels, at level `alpha`, with p-values adjusted (Holm or BH) across the candidates of one family
(same task, measure and items):
  - *emergent*: the child is significantly better than every parent: the intersection-union p (the largest
    one-sided p against each parent) is below alpha after adjustment;
  - *degraded*: the child is significantly worse than the worse parent (one-sided, adjusted);
  - *intermediate*: neither; *untested*: no item-level data, so no test could run.

Several seeds of one merge config (DARE, DELLA) form one point: its per-item score is the mean over the
seeds, so seed noise averages out instead of being picked from, binary outcomes become graded (Wilcoxon)
and `seed_sd`, the between-seed SD of the score on the row's items, says how far one seed could stray.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeGuard

import pandas as pd

from mergescope.analysis.itemscores import (
    REPORTING_HALF,
    SELECTION_HALF,
    CandidatePoint,
    Half,
    Measure,
    ScoreSourceName,
    candidate_points,
    item_halves,
    item_scores,
    point_item_scores,
)
from mergescope.analysis.run_data import RunData, load_run
from mergescope.analysis.stats import (
    Correction,
    PairedTestName,
    adjust_p_values,
    between_seed_sd,
    bootstrap_difference_ci,
    checked_correction,
    intersection_union_p,
    paired_test,
)
from mergescope.errors import ConfigError, did_you_mean

NAN = float("nan")
SplitName = Literal["all", "selection-reporting", "cross-fit"]  # which items the figures use (SPLITS)
RowSplit = Literal["all", "selection", "reporting"]  # the items one row stands on
RowHalf = Literal["", "A", "B"]  # "" for all items, else the hashed half (itemscores.Half) of a split
Label = Literal["emergent", "intermediate", "degraded", "untested"]


@dataclass(frozen=True, kw_only=True)
class Gains:
    """A child's score against its parents' on the same items: the best, the worse, their mean, the interpolation."""

    score: float
    best_parent: str
    best_parent_score: float
    worse_parent: str
    worse_parent_score: float
    parents_mean: float
    interpolation_expected: float  # (1 - mix) * score(parent 1) + mix * score(parent 2); NaN without a mix
    gain_over_best: float
    gain_over_mean: float
    gain_over_interpolation: float


@dataclass(frozen=True, kw_only=True)
class EmergenceRow:
    """The emergence figures of one candidate point on one measure, computed on the items of `split`."""

    run: str
    source: ScoreSourceName
    task: str
    measure: str  # metric or judge criterion
    split: RowSplit
    half: RowHalf
    candidate: str
    candidate_id: str
    method: str
    mix: float | None
    n_seeds: int
    seed_sd: float
    n_items: int
    gains: Gains  # flattened into the row's columns (`as_dict`)
    ci_low: float  # paired bootstrap CI of child - best parent
    ci_high: float
    gained_vs_best: int | None
    lost_vs_best: int | None
    new_items: int | None
    lost_items: int | None
    test: PairedTestName | Literal[""]  # "": no item-level data, so no test
    p_vs_best: float  # one-sided, child better
    p_vs_best_two_sided: float
    p_vs_parents: dict[str, float]  # one-sided p against each parent, by parent label
    p_all_parents: float  # intersection-union p of "better than every parent"
    p_below_worse: float  # one-sided p of "worse than the worse parent"
    p_adjusted: float = NAN
    p_below_adjusted: float = NAN
    label: Label = "untested"
    selected: bool = False  # chosen as the best candidate on the selection half
    note: str = ""

    def as_dict(self) -> dict:
        """The row's figures under their column names, its gains' in their place."""
        fields = dataclasses.asdict(self)
        gains = fields.pop("gains")
        return {name: gains[name] if name in gains else fields[name] for name in COLUMNS}


# The columns of a frame of rows (and the keys of a row's JSON): the row's fields, its gains' in their place.
COLUMNS = tuple(
    name
    for field in dataclasses.fields(EmergenceRow)
    for name in ([g.name for g in dataclasses.fields(Gains)] if field.name == "gains" else [field.name])
)


@dataclass(frozen=True, kw_only=True)
class EmergenceReport:
    """All emergence rows of a run, and a message for every figure that could not be computed."""

    rows: tuple[EmergenceRow, ...]
    problems: tuple[str, ...]
    alpha: float
    correction: Correction
    split: SplitName | Literal["reporting"]  # "reporting": one candidate chosen elsewhere (reported_on_half)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, one column per figure."""
        return pd.DataFrame([row.as_dict() for row in self.rows], columns=list(COLUMNS))

    def to_json(self) -> dict:
        """A JSON-ready dict; NaN becomes null."""

        def clean(value):
            if isinstance(value, float) and math.isnan(value):
                return None
            return {k: clean(v) for k, v in value.items()} if isinstance(value, dict) else value

        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "split": self.split,
            "rows": [clean(row.as_dict()) for row in self.rows],
            "problems": list(self.problems),
        }


class FigureUnavailable(Exception):
    """A figure that cannot be computed from the run's data; the message says which and why."""


@dataclass(frozen=True)
class Family:
    """The candidates compared on one measure: the unit of multiple-comparison correction."""

    run: str
    measure: Measure
    parents: tuple[tuple[str, str], ...]  # (subject id, label), in the order the sweep was given them
    points: tuple[CandidatePoint, ...]


# -- one row ---------------------------------------------------------------------------------------------


def _interpolation(parent_scores: pd.Series, mix: float | None) -> tuple[float, str]:
    """The linear-interpolation expectation of a child mixing its parents by `mix`, or NaN and why not."""
    if mix is None:
        return NAN, "no interpolation expectation: the candidate has no mixing weight"
    if len(parent_scores) != 2:
        return NAN, f"no interpolation expectation: it needs two parents, {len(parent_scores)} scored"
    return (1 - mix) * parent_scores.iloc[0] + mix * parent_scores.iloc[1], ""


def _gains(score: float, parent_scores: pd.Series, mix: float | None) -> tuple[Gains, str]:
    """The gains of a child scoring `score` over parents scoring `parent_scores` (label -> score), and a note
    where the interpolation expectation is missing."""
    interpolation, note = _interpolation(parent_scores, mix)
    gains = Gains(
        score=score,
        best_parent=parent_scores.idxmax(),
        best_parent_score=parent_scores.max(),
        worse_parent=parent_scores.idxmin(),
        worse_parent_score=parent_scores.min(),
        parents_mean=parent_scores.mean(),
        interpolation_expected=interpolation,
        gain_over_best=score - parent_scores.max(),
        gain_over_mean=score - parent_scores.mean(),
        gain_over_interpolation=score - interpolation,
    )
    return gains, note


def _paired_items(
    family: Family, point: CandidatePoint, values: pd.DataFrame
) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    """The child's and the parents' (one column per label) scores on the items all of them have, and notes."""
    present = [(pid, label) for pid, label in family.parents if pid in values.columns]
    if not present:
        raise FigureUnavailable(
            f"{family.measure.task}/{family.measure.name}: no parent has item scores, "
            "so no gain or test can be computed"
        )
    if not any(s in values.columns for s in point.subject_ids):
        raise FigureUnavailable(
            f"{point.label} on {family.measure.task}/{family.measure.name}: no item scores "
            "(not evaluated yet, or its evaluation failed)"
        )
    table = pd.concat(
        [
            point_item_scores(values, point),
            values[[pid for pid, _ in present]].set_axis([label for _, label in present], axis=1),
        ],
        axis=1,
    )
    notes = [f"parent {label} has no scores here" for pid, label in family.parents if pid not in values.columns]
    complete = table.dropna()
    if len(complete) < 2:  # a paired test or bootstrap needs two items (a split half can hold one)
        raise FigureUnavailable(
            f"{point.label} on {family.measure.task}/{family.measure.name}: "
            f"{len(complete)} items scored for both the child and its parents, too few to test"
        )
    if len(complete) < len(table):
        notes.append(f"{len(table) - len(complete)} items lack a score of the child or a parent and are left out")
    return complete.iloc[:, 0], complete.iloc[:, 1:], notes


def emergence_row(
    family: Family, point: CandidatePoint, values: pd.DataFrame, split: RowSplit, half: RowHalf = "", seed: int = 0
) -> EmergenceRow:
    """The unadjusted emergence row of one candidate point on the items (rows) of `values`."""
    child, parents, notes = _paired_items(family, point, values)
    gains, interpolation_note = _gains(child.mean(), parents.mean(), point.mix)
    kind = "graded" if len(point.subject_ids) > 1 else family.measure.kind
    tests = {label: paired_test(child.to_numpy(), parents[label].to_numpy(), kind) for label in parents}
    best, worse, strongest = gains.best_parent, gains.worse_parent, parents.max(axis=1)
    ci_low, ci_high = bootstrap_difference_ci(child.to_numpy(), parents[best].to_numpy(), seed=seed)
    seed_scores = [values.loc[child.index, s].mean() for s in point.subject_ids if s in values.columns]
    return EmergenceRow(
        run=family.run,
        source=family.measure.source,
        task=family.measure.task,
        measure=family.measure.name,
        split=split,
        half=half,
        candidate=point.label,
        candidate_id=point.id,
        method=point.method,
        mix=point.mix,
        n_seeds=len(point.subject_ids),
        seed_sd=between_seed_sd(seed_scores),
        n_items=len(child),
        gains=gains,
        ci_low=ci_low,
        ci_high=ci_high,
        gained_vs_best=tests[best].wins,
        lost_vs_best=tests[best].losses,
        new_items=int((child > strongest).sum()),
        lost_items=int((child < strongest).sum()),
        test=tests[best].test,
        p_vs_best=tests[best].p_greater,
        p_vs_best_two_sided=tests[best].p_two_sided,
        p_vs_parents={label: t.p_greater for label, t in tests.items()},
        p_all_parents=intersection_union_p([t.p_greater for t in tests.values()]),
        p_below_worse=tests[worse].p_less,
        note="; ".join(filter(None, [interpolation_note, *notes])),
    )


def row_items(run: RunData, row: EmergenceRow, seed: int = 0) -> tuple[pd.Series, pd.DataFrame]:
    """The paired per-item scores behind `row`: the child's, and the parents' (one column per label).

    The items are those the row's figures were computed on (its measure, and its half of a split, drawn
    with the same `seed`), so any further statistic of the row (a CI of the gain over the parents' mean)
    sees exactly its items. FigureUnavailable for a row without item data.
    """
    tables, _ = item_scores(run)
    key = (row.source, row.task, row.measure)
    table = next((t for t in tables if (t.measure.source, t.measure.task, t.measure.name) == key), None)
    point = next((p for p in candidate_points(run) if p.id == row.candidate_id), None)
    if table is None or point is None:
        raise FigureUnavailable(f"{row.candidate} on {row.task}/{row.measure}: no item scores in run {run.name}")
    values = table.values[item_halves(table.values.index, seed) == row.half] if row.half else table.values
    family = Family(run.name, table.measure, tuple(zip(run.parents().id, run.parents().label, strict=True)), (point,))
    child, parents, _ = _paired_items(family, point, values)
    return child, parents


def _labelled(row: EmergenceRow, alpha: float) -> EmergenceRow:
    label: Label
    if math.isnan(row.p_adjusted):
        label = "untested"
    elif row.p_adjusted < alpha:
        label = "emergent"
    elif row.p_below_adjusted < alpha:
        label = "degraded"
    else:
        label = "intermediate"
    return dataclasses.replace(row, label=label)


def corrected(rows: list[EmergenceRow], correction: Correction, alpha: float) -> list[EmergenceRow]:
    """The rows of one family with p-values adjusted across them and labels set."""
    above = adjust_p_values([r.p_all_parents for r in rows], correction)
    below = adjust_p_values([r.p_below_worse for r in rows], correction)
    return [
        _labelled(dataclasses.replace(r, p_adjusted=float(a), p_below_adjusted=float(b)), alpha)
        for r, a, b in zip(rows, above, below, strict=True)
    ]


# -- families and splits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSettings:
    correction: Correction
    alpha: float
    seed: int


def _family_rows(
    family: Family,
    points: Sequence[CandidatePoint],
    values: pd.DataFrame,
    split: RowSplit,
    half: RowHalf,
    settings: SplitSettings,
    problems: list[str],
) -> list[EmergenceRow]:
    rows = []
    for point in points:
        try:
            rows.append(emergence_row(family, point, values, split, half, settings.seed))
        except FigureUnavailable as reason:
            problems.append(f"{split} items: {reason}")
    return corrected(rows, settings.correction, settings.alpha)


def _all_items(
    family: Family, values: pd.DataFrame, settings: SplitSettings, problems: list[str]
) -> list[EmergenceRow]:
    return _family_rows(family, family.points, values, "all", "", settings, problems)


def _select_then_report(
    family: Family,
    values: pd.DataFrame,
    settings: SplitSettings,
    problems: list[str],
    folds: tuple[tuple[Half, Half], ...] = ((SELECTION_HALF, REPORTING_HALF),),
) -> list[EmergenceRow]:
    """Choose the best-scoring candidate on one half of the items; report it alone on the other half."""
    halves = item_halves(values.index, settings.seed)
    rows = []
    for chosen_on, reported_on in folds:
        selection = _family_rows(
            family, family.points, values[halves == chosen_on], "selection", chosen_on, settings, problems
        )
        if not selection:
            continue
        winner = max(selection, key=lambda row: row.gains.score)  # the first in sweep order on ties
        point = next(p for p in family.points if p.id == winner.candidate_id)
        # A family of one: the reporting half tests only the candidate chosen beforehand, so no correction.
        reporting = _family_rows(
            family, [point], values[halves == reported_on], "reporting", reported_on, settings, problems
        )
        rows += [dataclasses.replace(r, selected=r.candidate_id == point.id) for r in selection + reporting]
    return rows


def _cross_fit(
    family: Family, values: pd.DataFrame, settings: SplitSettings, problems: list[str]
) -> list[EmergenceRow]:
    folds = ((SELECTION_HALF, REPORTING_HALF), (REPORTING_HALF, SELECTION_HALF))
    return _select_then_report(family, values, settings, problems, folds=folds)


SPLITS: dict[SplitName, Callable[..., list[EmergenceRow]]] = {
    "all": _all_items,
    "selection-reporting": _select_then_report,
    "cross-fit": _cross_fit,
}


# -- a whole run -----------------------------------------------------------------------------------------


def _aggregate_rows(run: RunData, tasks: list[str], points: list[CandidatePoint]) -> list[EmergenceRow]:
    """Gains from the aggregate scores for tasks without item-level data; no transitions, no tests."""
    wide, parents = run.wide_scores(), run.parents()
    rows = []
    for task in tasks:
        parent_scores = wide.loc[parents.id, task].set_axis(list(parents.label)).dropna()
        for point in points:
            score = wide.loc[list(point.subject_ids), task].mean()
            if parent_scores.empty or math.isnan(score):
                continue
            gains, note = _gains(score, parent_scores, point.mix)
            rows.append(
                EmergenceRow(
                    run=run.name,
                    source="lm-eval",
                    task=task,
                    measure=run.primary_metric(task),
                    split="all",
                    half="",
                    candidate=point.label,
                    candidate_id=point.id,
                    method=point.method,
                    mix=point.mix,
                    n_seeds=len(point.subject_ids),
                    seed_sd=between_seed_sd(wide.loc[list(point.subject_ids), task]),
                    n_items=0,
                    gains=gains,
                    ci_low=NAN,
                    ci_high=NAN,
                    gained_vs_best=None,
                    lost_vs_best=None,
                    new_items=None,
                    lost_items=None,
                    test="",
                    p_vs_best=NAN,
                    p_vs_best_two_sided=NAN,
                    p_vs_parents={},
                    p_all_parents=NAN,
                    p_below_worse=NAN,
                    note=note,
                )
            )
    return rows


def _run_problems(run: RunData, points: list[CandidatePoint]) -> list[str]:
    problems = []
    if run.parents().empty:
        problems.append("the run has no parent subjects: no gain over a parent can be computed")
    if not points:
        problems.append("the run has no candidates: nothing to compare with the parents")
    if run.scores.empty:
        problems.append("the run has no scores yet: run or finish the sweep first")
    return problems


def check_options(alpha: float, correction: str, split: str) -> tuple[Correction, SplitName]:
    """The correction and the split named; ConfigError for an alpha outside (0, 1) or an unknown name."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha {alpha} is not between 0 and 1", hint="use e.g. --alpha 0.05")
    checked = checked_correction(correction)
    if not _is_split(split):
        raise ConfigError(f"unknown split {split!r}", hint=did_you_mean(split, set(SPLITS)))
    return checked, split


def _is_split(name: str) -> TypeGuard[SplitName]:
    return name in SPLITS


def emergence(
    run: RunData | str | Path, alpha: float = 0.05, correction: str = "holm", split: str = "all", seed: int = 0
) -> EmergenceReport:
    """The emergence report of a run: one row per candidate point, measure and item split ("all",
    "selection-reporting" or "cross-fit"), p-values adjusted by `correction` ("holm" or "bh")."""
    known_correction, known_split = check_options(alpha, correction, split)
    run = run if isinstance(run, RunData) else load_run(run)
    points = candidate_points(run)
    problems = _run_problems(run, points)
    tables, skipped = item_scores(run)
    problems += skipped
    parents = tuple(zip(run.parents().id, run.parents().label, strict=True))
    settings = SplitSettings(known_correction, alpha, seed)
    rows: list[EmergenceRow] = []
    for table in tables:
        family = Family(run.name, table.measure, parents, tuple(points))
        rows += SPLITS[known_split](family, table.values, settings, problems)
    with_items = {t.measure.task for t in tables}
    without_items = [task for task in run.tasks() if task not in with_items]
    rows += _aggregate_rows(run, without_items, points)
    return EmergenceReport(
        rows=tuple(rows), problems=tuple(problems), alpha=alpha, correction=known_correction, split=known_split
    )


def reported_on_half(
    run: RunData, candidate_id: str, alpha: float = 0.05, seed: int = 0, half: Half = REPORTING_HALF
) -> EmergenceReport:
    """The emergence rows of one candidate chosen beforehand (a search's winner) on `half` of each lm-eval measure.

    The reporting half of the selection/reporting split for a choice made elsewhere: the candidate is a family
    of one, so no correction, and its figures read only the items of `half`.
    """
    check_options(alpha, "holm", "all")
    points = [p for p in candidate_points(run) if p.id == candidate_id]
    tables, problems = item_scores(run, ("lm-eval",))
    parents = tuple(zip(run.parents().id, run.parents().label, strict=True))
    settings = SplitSettings("holm", alpha, seed)
    rows: list[EmergenceRow] = []
    for table in tables:
        values = table.values[item_halves(table.values.index, seed) == half]
        rows += _family_rows(
            Family(run.name, table.measure, parents, tuple(points)),
            points,
            values,
            "reporting",
            half,
            settings,
            problems,
        )
    return EmergenceReport(
        rows=tuple(rows), problems=tuple(problems), alpha=alpha, correction="holm", split="reporting"
    )
