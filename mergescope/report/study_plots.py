"""Plots of a kinship study: each takes the study's `StudyData` (analysis/kinship_study.py) and is registered with
`register_study_plot`, so the study report shows every one in registration order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mergescope.report.plots import finish, register_study_plot, task_colors

if TYPE_CHECKING:
    from mergescope.analysis.kinship_study import StudyData


@dataclass(frozen=True)
class Panel:
    """One panel of a study plot: the columns of the pairs' rows it plots, and its axis labels."""

    x: str
    y: str
    x_label: str
    y_label: str


GAIN_PANELS = tuple(
    Panel(metric, "gain_over_best", f"kinship: {label} of the parents", "gain over the best parent")
    for metric, label in (("cosine", "cosine"), ("pearson", "Pearson"))
)
PARENT_PANELS = tuple(
    Panel("cosine", column, "kinship: cosine of the parents", label)
    for column, label in (("parents_mean", "parents' mean score"), ("parent_gap", "parents' score gap (best - worse)"))
)
BASIS_MARKERS = {"task vectors": "o", "raw weights": "s"}  # the two kinship scales must not be read as one
ErrorBars = Callable[[pd.Series], "list[list[float]] | None"]


def group_colors(data: StudyData) -> dict[str, tuple]:
    """A stable colour per group, in the study's order of pairs."""
    return task_colors(list(dict.fromkeys(f.pair.group for f in data.pairs)))


def pair_grid(data: StudyData, rows: pd.DataFrame, panels: Sequence[Panel], errors: ErrorBars | None = None) -> Figure:
    """A row of `panels` per measure of `rows`, one point per pair in each, coloured by group and marked by the
    kinship basis."""
    colors = group_colors(data)
    measures = list(dict.fromkeys(zip(rows.task, rows.measure, strict=True)))
    figure = Figure(figsize=(10.5, 1.0 + 3.1 * len(measures)))
    axes = figure.subplots(len(measures), len(panels), squeeze=False)
    for row_axes, (task, measure) in zip(axes, measures, strict=True):
        part = rows[(rows.task == task) & (rows.measure == measure)]
        for axis, panel in zip(row_axes, panels, strict=True):
            for nth, (_, row) in enumerate(part.dropna(subset=[panel.x]).sort_values(panel.x).iterrows()):
                _point(axis, row, panel, colors[row["group"]], errors(row) if errors else None, nth)
            axis.margins(x=0.12, y=0.1)
            axis.set_title(f"{task} ({measure})", fontsize=9)
            axis.set_xlabel(panel.x_label)
            axis.set_ylabel(panel.y_label)
            axis.grid(alpha=0.3)
    _legend(axes[0][-1], rows, colors)
    return figure


def _legend(axis: Axes, rows: pd.DataFrame, colors: dict[str, tuple]) -> None:
    handles = [
        Line2D([], [], marker="s", linestyle="none", color=color, label=group or "(no group)")
        for group, color in colors.items()
    ]
    handles += [
        Line2D([], [], marker=marker, linestyle="none", color="dimgray", label=f"kinship of {basis}")
        for basis, marker in BASIS_MARKERS.items()
        if basis in set(rows.basis)
    ]
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _point(axis: Axes, row: pd.Series, panel: Panel, color: tuple, yerr, nth: int) -> None:
    """One pair's point (one errorbar container per point), named after the pair; names alternate above and
    below so that pairs of close kinship stay readable."""
    x, y = row[panel.x], row[panel.y]
    axis.errorbar(
        [x],
        [y],
        yerr=yerr,
        fmt=BASIS_MARKERS.get(row["basis"], "D"),
        color=color,
        markersize=7,
        capsize=3,
        elinewidth=1,
    )
    axis.annotate(row["pair"], (x, y), fontsize=6.5, xytext=(5, 5 if nth % 2 == 0 else -11), textcoords="offset points")


def _gain_error(row: pd.Series) -> list[list[float]] | None:
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        return None
    return [[max(row["gain_over_best"] - row["ci_low"], 0.0)], [max(row["ci_high"] - row["gain_over_best"], 0.0)]]


@register_study_plot("emergence_vs_kinship")
def emergence_vs_kinship(data: StudyData) -> Figure | None:
    """Gain of each pair's best candidate over its best parent (95% CI) against the parents' kinship, per measure."""
    best = data.best.dropna(subset=["gain_over_best"]) if not data.best.empty else data.best
    if best.empty:
        return None
    figure = pair_grid(data, best, GAIN_PANELS, _gain_error)
    for axis in figure.axes:
        axis.axhline(0, color="grey", linewidth=0.8)
        low, high = axis.get_ylim()  # no gain at all still shows a readable range around zero
        axis.set_ylim(min(low, -0.05), max(high, 0.05))
    halves = f"chosen on half {best.selection_half.iloc[0]}, shown on half {best.reporting_half.iloc[0]}"
    return finish(figure, f"Emergence vs kinship: each pair's best candidate per measure ({halves} of the items)")


@register_study_plot("kinship_vs_parents")
def kinship_vs_parents(data: StudyData) -> Figure | None:
    """The parents' mean score and score gap against their kinship (cosine), per pair and measure: the confounds."""
    rows = data.parents.dropna(subset=["cosine"]) if not data.parents.empty else data.parents
    if rows.empty:
        return None
    return finish(
        pair_grid(data, rows, PARENT_PANELS), "What kinship travels with: the parents' performance and gap (all items)"
    )
