"""Plots of a kinship study: each takes the study's `StudyData` (analysis/study.py) and is registered with
`register_study_plot`, so the study report shows every one in registration order."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mergescope.report.plots import finish, register_study_plot, task_colors

if TYPE_CHECKING:
    from mergescope.analysis.study import StudyData

KINSHIP_PANELS = (("cosine", "cosine of the parents"), ("pearson", "Pearson of the parents"))
PARENT_PANELS = (("parents_mean", "parents' mean score"), ("parent_gap", "parents' score gap (best - worse)"))
BASIS_MARKERS = {"task vectors": "o", "raw weights": "s"}  # the two kinship scales must not be read as one


def group_colors(data: StudyData) -> dict[str, tuple]:
    """A stable colour per group, in the study's order of pairs."""
    return task_colors(list(dict.fromkeys(f.pair.group for f in data.pairs)))


def _measure_grid(rows: pd.DataFrame, n_columns: int) -> tuple[Figure, list[tuple[str, pd.DataFrame, list[Axes]]]]:
    """A figure with a row of `n_columns` panels per measure; per measure its title, rows and panels."""
    measures = list(dict.fromkeys(zip(rows.task, rows.measure)))
    figure = Figure(figsize=(10.5, 1.0 + 3.1 * len(measures)))
    axes = figure.subplots(len(measures), n_columns, squeeze=False)
    return figure, [(f"{task} ({measure})", rows[(rows.task == task) & (rows.measure == measure)], list(row_axes))
                    for (task, measure), row_axes in zip(measures, axes)]


def _label(axis: Axes, title: str, x_label: str, y_label: str) -> None:
    axis.margins(x=0.12, y=0.1)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.grid(alpha=0.3)


def _legend(axis: Axes, rows: pd.DataFrame, colors: dict[str, tuple]) -> None:
    handles = [Line2D([], [], marker="s", linestyle="none", color=color, label=group or "(no group)")
               for group, color in colors.items()]
    handles += [Line2D([], [], marker=marker, linestyle="none", color="dimgray", label=f"kinship of {basis}")
                for basis, marker in BASIS_MARKERS.items() if basis in set(rows.basis)]
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _point(axis: Axes, row, x: str, y: str, color: tuple, yerr=None, nth: int = 0) -> None:
    """One pair's point (one errorbar container per point), named after the pair; names alternate above and
    below so that pairs of close kinship stay readable."""
    axis.errorbar([row[x]], [row[y]], yerr=yerr, fmt=BASIS_MARKERS.get(row["basis"], "D"), color=color,
                  markersize=7, capsize=3, elinewidth=1)
    axis.annotate(row["pair"], (row[x], row[y]), fontsize=6.5, xytext=(5, 5 if nth % 2 == 0 else -11),
                  textcoords="offset points")


def _gain_error(row) -> list[list[float]] | None:
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        return None
    return [[max(row["gain_over_best"] - row["ci_low"], 0.0)], [max(row["ci_high"] - row["gain_over_best"], 0.0)]]


@register_study_plot("emergence_vs_kinship")
def emergence_vs_kinship(data: StudyData) -> Figure | None:
    """Gain of each pair's best candidate over its best parent (95% CI) against the parents' kinship, per measure."""
    best = data.best.dropna(subset=["gain_over_best"]) if not data.best.empty else data.best
    if best.empty:
        return None
    colors = group_colors(data)
    figure, measures = _measure_grid(best, len(KINSHIP_PANELS))
    for title, part, row_axes in measures:
        for axis, (metric, label) in zip(row_axes, KINSHIP_PANELS):
            for nth, (_, row) in enumerate(part.dropna(subset=[metric]).sort_values(metric).iterrows()):
                _point(axis, row, metric, "gain_over_best", colors[row["group"]], _gain_error(row), nth)
            axis.axhline(0, color="grey", linewidth=0.8)
            _label(axis, title, f"kinship: {label}", "gain over the best parent")
            low, high = axis.get_ylim()  # no gain still shows a readable range around zero
            axis.set_ylim(min(low, -0.05), max(high, 0.05))
    _legend(measures[0][2][-1], best, colors)
    halves = f"chosen on half {best.selection_half.iloc[0]}, shown on half {best.reporting_half.iloc[0]}"
    return finish(figure, f"Emergence vs kinship: each pair's best candidate per measure ({halves} of the items)")


@register_study_plot("kinship_vs_parents")
def kinship_vs_parents(data: StudyData) -> Figure | None:
    """The parents' mean score and score gap against their kinship (cosine), per pair and measure: the confounds."""
    rows = data.parents.dropna(subset=["cosine"]) if not data.parents.empty else data.parents
    if rows.empty:
        return None
    colors = group_colors(data)
    figure, measures = _measure_grid(rows, len(PARENT_PANELS))
    for title, part, row_axes in measures:
        for axis, (column, label) in zip(row_axes, PARENT_PANELS):
            for nth, (_, row) in enumerate(part.sort_values("cosine").iterrows()):
                _point(axis, row, "cosine", column, colors[row["group"]], nth=nth)
            _label(axis, title, "kinship: cosine of the parents", label)
    _legend(measures[0][2][-1], rows, colors)
    return finish(figure, "What kinship travels with: the parents' performance and gap (all items)")
