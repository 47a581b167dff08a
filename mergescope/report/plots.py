"""Plots of a run, one function each, registered by name so that a new plot is one function.

A plot function takes a RunData and returns a matplotlib Figure, or None when the run has nothing
for it to show (for example no interpolating candidates); it never raises on missing scores.
"""

from __future__ import annotations

from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mergescope.analysis.run import RunData  # noqa: E402

PlotFunction = Callable[[RunData], Figure | None]
PLOTS: dict[str, PlotFunction] = {}


def register_plot(name: str) -> Callable[[PlotFunction], PlotFunction]:
    """Register a plot function under `name` (it appears in reports in registration order)."""

    def decorator(function: PlotFunction) -> PlotFunction:
        PLOTS[name] = function
        return function

    return decorator


@register_plot("interpolation")
def interpolation_curves(run: RunData) -> Figure | None:
    """Score against the second parent's share t, one line per task, parents marked at the ends."""
    wide = run.wide_scores()
    curve = wide[(wide.kind == "candidate") & wide.mix.notna()]
    if curve.empty:
        return None
    parent_labels = list(run.parents().label)
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for task in run.tasks():
        points = curve[["mix", task]].dropna().sort_values("mix")
        by_method = curve.loc[points.index, "method"]
        for method in by_method.unique():
            chosen = points[by_method == method]
            style = "-o" if len(chosen) > 1 else "s"
            axis.plot(chosen.mix, chosen[task], style, label=f"{task} ({method})")
        parent_scores = wide[wide.kind == "parent"][task]
        color = axis.lines[-1].get_color() if axis.lines else None
        for share, score in zip((0.0, 1.0), parent_scores):
            axis.plot([share], [score], marker="*", markersize=14, color=color, linestyle="none")
    axis.set_xlabel(f"t (share of {parent_labels[1]})  ← {parent_labels[0]} · {parent_labels[1]} →"
                    if len(parent_labels) == 2 else "t")
    axis.set_ylabel("score")
    axis.set_ylim(-0.03, 1.03)
    axis.set_title("Interpolation curves (★ = parents)")
    axis.legend(fontsize=7, loc="best")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
