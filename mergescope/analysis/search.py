"""A search's figures for its report: the trials, the chosen one, and the chosen one on the reporting half.

The search (search.py) told its sampler objectives computed on the selection half of each task's items only;
the trial chosen from them (the best objective, or with a fitness subset the best finalist by its whole
selection half) is reported here on the reporting half, which no trial was ranked on: its figures cannot be
inflated by the search (the winner's curse). A multi-objective search reports its non-dominated trials and
chooses among them the one with the best mean selection objective.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mergescope.analysis.emergence import EmergenceReport, reported_on_half
from mergescope.analysis.run_data import FINALISTS_TABLE, TRIALS_TABLE, RunData
from mergescope.runs.directory import SearchMeta


@dataclass(frozen=True)
class SearchAnalysis:
    """A run's search: its settings, every trial, and the chosen trial's figures on the reporting half."""

    meta: SearchMeta
    trials: pd.DataFrame  # one row per trial in trial order, with best_so_far and non_dominated
    chosen: int | None  # the chosen trial's number (None: no trial has an objective yet)
    chosen_id: str | None  # its candidate id
    reported: EmergenceReport  # the chosen trial against every parent, on reporting-half items only

    @property
    def tasks(self) -> list[str]:
        return list(json.loads(self.trials.task_objectives.iloc[0])) if not self.trials.empty else []

    def parameter_names(self) -> list[str]:
        """The trials' numeric parameters, in first-seen order."""
        names: dict[str, None] = {}
        for params in self.trials.params:
            names.update(
                (k, None) for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            )
        return list(names)


def analyse_search(run: RunData, seed: int, alpha: float) -> SearchAnalysis | None:
    """The search analysis of `run`; None for a run no search wrote."""
    table = run.tables.get(TRIALS_TABLE)
    if run.search is None or table is None or table.empty:
        return None
    trials = _with_finalists(
        table.sort_values("number", kind="stable").reset_index(drop=True), run.tables.get(FINALISTS_TABLE)
    )
    trials["params"] = trials.params.map(json.loads)
    trials["best_so_far"] = trials.objective.cummax()
    trials["non_dominated"] = non_dominated(np.array([list(json.loads(t).values()) for t in trials.task_objectives]))
    chosen = _chosen(trials, run.search)
    chosen_id = None if chosen is None else str(trials.set_index("number").at[chosen, "subject_id"])
    reported = (
        reported_on_half(run, chosen_id, alpha, seed)
        if chosen_id
        else EmergenceReport(rows=(), problems=(), alpha=alpha, correction="holm", split="reporting")
    )
    return SearchAnalysis(run.search, trials, chosen, chosen_id, reported)


def _with_finalists(trials: pd.DataFrame, finalists: pd.DataFrame | None) -> pd.DataFrame:
    """The trials with `finalist` and `full_objective` columns from the search's finalists table (runs written
    before that table marked them in the trials table itself)."""
    if finalists is None:
        return trials
    marked = finalists.set_index("number").full_objective
    return trials.assign(
        finalist=trials.number.isin(marked.index).astype(int), full_objective=trials.number.map(marked)
    )


def _chosen(trials: pd.DataFrame, meta: SearchMeta) -> int | None:
    """The chosen trial: the best mean selection objective (of a Pareto search: among its non-dominated trials);
    with a fitness subset, the best finalist by its whole selection half. Ties: the earliest trial."""
    pool = trials[trials.non_dominated] if meta.objective == "pareto" else trials
    score = pool.full_objective.where(pool.finalist.astype(bool)) if meta.fitness_items else pool.objective
    score = score.dropna()
    return None if score.empty else int(pool.loc[score.idxmax(), "number"])


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Whether each row (one trial's objectives, all maximised) is dominated by no other row; NaN rows never are
    kept."""
    keep = np.zeros(len(values), dtype=bool)
    for index, row in enumerate(values):
        if np.isnan(row).any():
            continue
        others = values[~np.isnan(values).any(axis=1)]
        keep[index] = not ((others >= row).all(axis=1) & (others > row).any(axis=1)).any()
    return keep
