"""Plots of a search (its `SearchAnalysis`), registered with the run's plots; each returns None for a sweep.

Every objective plotted here is a selection-half figure: what the sampler was told. The chosen trial's
reporting-half figures are in the report's search section, not in these plots.
"""

from __future__ import annotations

import json

import numpy as np
from matplotlib.figure import Figure

from mergescope.analysis.run_analysis import RunAnalysis
from mergescope.report.plots import finish, panel_grid, register_plot

MAX_PARAMETER_PANELS = 12


@register_plot("search_history")
def search_history(analysis: RunAnalysis) -> Figure | None:
    """Optimisation history: each trial's selection-half objective, the best so far, and the chosen trial."""
    search = analysis.search
    if search is None:
        return None
    trials = search.trials
    figure = Figure(figsize=(7.2, 4.2))
    axis = figure.subplots()
    axis.scatter(trials.number, trials.objective, s=22, color="tab:blue", label="trial", zorder=3)
    axis.step(trials.number, trials.best_so_far, where="post", color="tab:orange", label="best so far")
    if search.chosen is not None:
        chosen = trials[trials.number == search.chosen]
        axis.scatter(
            chosen.number,
            chosen.objective,
            s=160,
            marker="*",
            color="gold",
            edgecolors="black",
            zorder=4,
            label="chosen",
        )
    axis.set_xlabel("trial")
    axis.set_ylabel("objective (mean primary metric, selection half)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    return finish(
        figure, f"Search history: {len(trials)} trials, {search.meta.sampler} sampler, seed {search.meta.seed}"
    )


@register_plot("search_parameters")
def search_parameters(analysis: RunAnalysis) -> Figure | None:
    """Objective against each numeric searched parameter (selection half), one panel per parameter."""
    search = analysis.search
    if search is None or not search.parameter_names():
        return None
    names = search.parameter_names()[:MAX_PARAMETER_PANELS]
    trials = search.trials
    figure, axes = panel_grid(len(names), width=3.4, height=2.8)
    for axis, name in zip(axes, names, strict=True):
        values = trials.params.map(lambda p, name=name: p.get(name, np.nan)).astype(float)
        axis.scatter(values, trials.objective, s=16, c=trials.number, cmap="viridis")
        axis.set_title(name, fontsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("objective (selection half)")
    return finish(figure, "Objective against each parameter (colour: trial number, later is yellower)")


@register_plot("search_pareto")
def search_pareto(analysis: RunAnalysis) -> Figure | None:
    """The Pareto front of a multi-objective search: the first two tasks' selection-half objectives."""
    search = analysis.search
    if search is None or search.meta.objective != "pareto" or len(search.tasks) < 2:
        return None
    first, second = search.tasks[:2]
    trials = search.trials
    values = np.array([[json.loads(t)[first], json.loads(t)[second]] for t in trials.task_objectives])
    front = trials.non_dominated.to_numpy()
    figure = Figure(figsize=(6, 4.6))
    axis = figure.subplots()
    axis.scatter(values[~front, 0], values[~front, 1], s=18, color="grey", label="dominated")
    axis.scatter(values[front, 0], values[front, 1], s=40, color="tab:red", label="non-dominated (all tasks)")
    axis.set_xlabel(f"{first} (selection half)")
    axis.set_ylabel(f"{second} (selection half)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return finish(figure, "Pareto front of the search")
