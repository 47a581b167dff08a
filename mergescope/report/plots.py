"""Plots of a run, one function each, registered by name so that a new plot is one function.

A plot function takes a run's `RunAnalysis` (analysis/run_analysis.py: built once per report, so no plot
recomputes emergence or intervals) and returns a matplotlib Figure, or None when the run has nothing for it
to show (no interpolating candidates, no kinship table, no judge); it never raises on missing scores.
Figures are made without pyplot: no backend is chosen and no global figure list grows, so the functions
work alike in a script, a report and a notebook (where a returned Figure displays inline).
Plots that compare several runs (a kinship series) take a sequence of runs and live in SERIES_PLOTS; the
plots of a kinship study take its `StudyData` and live in STUDY_PLOTS (`study_plots.py`).
The plots of weights and judges are in `model_plots.py`; importing `mergescope.report` registers all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from mergescope.analysis.run_analysis import RunAnalysis
from mergescope.analysis.run_data import RunData

if TYPE_CHECKING:
    from mergescope.analysis.kinship_study import StudyData

PlotFunction = Callable[[RunAnalysis], Figure | None]
SeriesPlotFunction = Callable[[Sequence[RunData]], Figure | None]
StudyPlotFunction = Callable[["StudyData"], Figure | None]
PLOTS: dict[str, PlotFunction] = {}
SERIES_PLOTS: dict[str, SeriesPlotFunction] = {}
STUDY_PLOTS: dict[str, StudyPlotFunction] = {}

MAX_TICK_LABELS = 24
# Marker and colour of each emergence label: significance is read from the marker at a glance.
LABEL_STYLES: dict[str, dict[str, Any]] = {
    "emergent": dict(marker="*", s=180, edgecolors="black", linewidths=0.6),
    "intermediate": dict(marker="o", s=45, edgecolors="none"),
    "degraded": dict(marker="v", s=70, edgecolors="black", linewidths=0.6),
    "untested": dict(marker="o", s=45, facecolors="none"),
}


def _register(registry: dict[str, Callable], name: str) -> Callable[[Callable], Callable]:
    """A decorator that stores a plot function in `registry` under `name` and returns it unchanged."""

    def decorator(function: Callable) -> Callable:
        registry[name] = function
        return function

    return decorator


def register_plot(name: str) -> Callable[[PlotFunction], PlotFunction]:
    """Register a one-run plot under `name` (it appears in reports in registration order)."""
    return _register(PLOTS, name)


def register_series_plot(name: str) -> Callable[[SeriesPlotFunction], SeriesPlotFunction]:
    """Register a plot of several runs (a series of parent pairs, sizes ...) under `name`."""
    return _register(SERIES_PLOTS, name)


def register_study_plot(name: str) -> Callable[[StudyPlotFunction], StudyPlotFunction]:
    """Register a plot of a kinship study (`StudyData`: its pairs, best candidates and driver fits) under `name`."""
    return _register(STUDY_PLOTS, name)


# -- shared pieces ------------------------------------------------------------------------------------


def set_tick_labels(axis: Axes, labels: Sequence[str], which: str = "x") -> None:
    """Label ticks 0..n-1 with `labels`, showing every k-th one and rotating long ones so none overlap."""
    positions = np.arange(len(labels))
    step = max(1, math.ceil(len(labels) / MAX_TICK_LABELS))
    shown = [str(label) if i % step == 0 else "" for i, label in enumerate(labels)]
    longest = max((len(str(label)) for label in labels), default=0)
    size = 8 if len(labels) <= 12 else 6.5
    if which == "x":
        rotation = 0 if len(labels) * max(longest, 1) <= 48 else 40
        axis.set_xticks(positions, shown, rotation=rotation, ha="right" if rotation else "center", fontsize=size)
    else:
        axis.set_yticks(positions, shown, fontsize=size)


def panel_grid(n_panels: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    """A figure with `n_panels` axes in rows of up to three; extra cells are hidden."""
    columns = min(3, n_panels)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(width * columns, height * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    flat = list(axes.flat)
    for extra in flat[n_panels:]:
        extra.set_visible(False)
    return figure, flat[:n_panels]


def height_for_rows(n_rows: int, minimum: float = 4.6) -> float:
    """A figure height (inches) that gives each of `n_rows` bar rows room, up to a screenful."""
    return min(max(minimum, 1.2 + 0.2 * n_rows), 16.0)


def task_colors(tasks: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per task (the tab10 cycle)."""
    palette = matplotlib.colormaps["tab10"]
    return {task: palette(i % 10) for i, task in enumerate(tasks)}


def finish(figure: Figure, title: str) -> Figure:
    """Title and lay out a figure; labels from runs are shown as typed (a '$' in one is not math)."""
    figure.suptitle(title, fontsize=11)
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    figure.tight_layout()
    return figure


def _scatter_by_label(axis: Axes, rows: pd.DataFrame, x: str, colors: dict[str, tuple]) -> None:
    """Candidates' scores against column `x`, coloured by task, marker by emergence label."""
    for (task, label), part in rows.groupby(["task", "label"], sort=False):
        style = dict(LABEL_STYLES.get(label, LABEL_STYLES["untested"]))
        color_key = "edgecolors" if label == "untested" else "c"
        style[color_key] = [colors[task]]
        axis.scatter(part[x], part["score"], zorder=3, **style)


def _diagonal(axis: Axes, values: pd.Series) -> None:
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(0.02, (high - low) * 0.08)
    # Scores of 0 or more get no axis running far below zero, only room for the markers.
    limits = (low - pad if low < 0 else max(low - pad, -pad / 4), high + pad)
    axis.plot(limits, limits, color="grey", linestyle="--", linewidth=1, zorder=1)
    axis.set_xlim(limits)
    axis.set_ylim(limits)
    axis.set_aspect("equal", adjustable="box")
    axis.grid(alpha=0.3)


def _legend(axis: Axes, rows: pd.DataFrame, colors: dict[str, tuple]) -> None:
    handles = [
        Line2D([], [], marker="s", linestyle="none", color=colors[task], label=task) for task in rows.task.unique()
    ]
    for label in (lab for lab in LABEL_STYLES if lab in set(rows.label)):
        marker = LABEL_STYLES[label]["marker"]
        handles.append(
            Line2D(
                [],
                [],
                marker=marker,
                linestyle="none",
                markersize=9 if marker == "*" else 6,
                markerfacecolor="none" if label == "untested" else "dimgray",
                markeredgecolor="black",
                label=label,
            )
        )
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _annotate_emergent(axis: Axes, rows: pd.DataFrame, x: str, limit: int = 6) -> None:
    """Name the most significant emergent points (at most `limit`, so labels stay readable)."""
    emergent = (
        rows[rows.label == "emergent"]
        .sort_values(  # ties: the larger gain, then the candidate id
            ["p_adjusted", "gain_over_best", "candidate_id"], ascending=[True, False, True], kind="stable"
        )
        .head(limit)
    )
    for row in emergent.itertuples():
        axis.annotate(
            f"{row.candidate}\np={row.p_adjusted:.2g}",
            (getattr(row, x), row.score),
            fontsize=6.5,
            xytext=(6, 4),
            textcoords="offset points",
        )


# -- emergence -----------------------------------------------------------------------------------------


@register_plot("emergence_vs_parents")
def emergence_vs_parents(analysis: RunAnalysis) -> Figure | None:
    """Child score against the best parent's score per task: above the diagonal the child beats both parents."""
    rows = analysis.lmeval_rows.dropna(subset=["score", "best_parent_score"])
    if rows.empty:
        return None
    colors = task_colors(analysis.run.tasks())
    figure = Figure(figsize=(6.8, 4.6))
    axis = figure.subplots()
    _scatter_by_label(axis, rows, "best_parent_score", colors)
    _diagonal(axis, pd.concat([rows.score, rows.best_parent_score]))
    _annotate_emergent(axis, rows, "best_parent_score")
    axis.set_xlabel("best parent's score")
    axis.set_ylabel("child's score")
    _legend(axis, rows, colors)
    adjusted = analysis.settings.correction_title
    return finish(figure, f"Emergence vs parent performance (★ emergent, ▼ degraded; {adjusted}-adjusted, all items)")


@register_plot("actual_vs_expected")
def actual_vs_expected(analysis: RunAnalysis) -> Figure | None:
    """Child score against the mean of its parents (Lu et al. 2024), with the items gained (0->1) and lost (1->0)."""
    rows = analysis.lmeval_rows.dropna(subset=["score", "parents_mean"])
    if rows.empty:
        return None
    colors = task_colors(analysis.run.tasks())
    height = height_for_rows(rows.candidate.nunique())
    figure = Figure(figsize=(11, height))
    scatter, bars = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    _scatter_by_label(scatter, rows, "parents_mean", colors)
    _diagonal(scatter, pd.concat([rows.score, rows.parents_mean]))
    scatter.set_xlabel("expected: mean of the parents' scores")
    scatter.set_ylabel("actual: child's score")
    _legend(scatter, rows, colors)
    _transition_bars(bars, rows)
    return finish(figure, "Actual vs expected, and item transitions against the parents")


def _transition_bars(axis: Axes, rows: pd.DataFrame) -> None:
    """Per candidate, summed over tasks: items no parent solves that the child does (0->1), and the reverse."""
    counts = rows.groupby("candidate", sort=False)[["new_items", "lost_items"]].sum(min_count=1)
    positions = np.arange(len(counts))
    axis.barh(positions, counts.new_items.fillna(0), color="tab:green", label="0→1: no parent, child solves")
    axis.barh(positions, -counts.lost_items.fillna(0), color="tab:red", label="1→0: a parent solves, child fails")
    axis.axvline(0, color="black", linewidth=0.8)
    set_tick_labels(axis, list(counts.index), which="y")
    axis.invert_yaxis()
    axis.set_xlabel("items (summed over tasks)")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(axis="x", alpha=0.3)


# -- scores of the sweep ---------------------------------------------------------------------------------


@register_plot("interpolation")
def interpolation_curves(analysis: RunAnalysis) -> Figure | None:
    """Score against the second parent's share t, one panel per task, 95% CI bands, parents (★) at the ends."""
    scores = analysis.score_intervals
    curve = scores[(scores.kind == "candidate") & scores.mix.notna()]
    if curve.empty:
        return None
    tasks = list(dict.fromkeys(curve.task))
    figure, axes = panel_grid(len(tasks))
    for axis, task in zip(axes, tasks, strict=True):
        _interpolation_panel(axis, curve[curve.task == task], scores[scores.task == task])
        axis.set_title(task, fontsize=9)
    parents = list(analysis.run.parents().label)
    axes[0].set_xlabel(f"t: share of {parents[1]} (t=0 is {parents[0]})" if len(parents) == 2 else "t")
    axes[0].legend(fontsize=7, loc="best")
    return finish(figure, "Interpolation curves (bands: 95% CI; ★ parents, dotted: base)")


def _interpolation_panel(axis: Axes, curve: pd.DataFrame, task_scores: pd.DataFrame) -> None:
    for method, points in curve.groupby("method", sort=False):
        points = points.sort_values("mix")
        (line,) = axis.plot(points.mix, points.value, "-o" if len(points) > 1 else "s", markersize=4, label=method)
        axis.fill_between(points.mix, points.low, points.high, color=line.get_color(), alpha=0.18, linewidth=0)
    parents = task_scores[task_scores.kind == "parent"]
    for share, parent in zip((0.0, 1.0), parents.itertuples(), strict=False):
        axis.errorbar([share], [parent.value], yerr=_yerr(parent), fmt="*", markersize=13, color="black", capsize=3)
        axis.annotate(
            parent.label,
            (share, parent.value),
            fontsize=7,
            xytext=(6 if share == 0 else -6, -12),
            textcoords="offset points",
            ha="left" if share == 0 else "right",
        )
    for base in task_scores[task_scores.kind == "base"].itertuples():
        axis.axhline(base.value, color="grey", linestyle=":", linewidth=1)
    axis.set_xlim(-0.08, 1.08)
    axis.set_ylabel("score")
    axis.grid(alpha=0.3)


def _yerr(row) -> list[list[float]] | None:
    """Matplotlib's error-bar lengths of one row with value/low/high, or None when the CI is unknown."""
    if pd.isna(row.low) or pd.isna(row.high):
        return None
    return [[max(row.value - row.low, 0.0)], [max(row.high - row.value, 0.0)]]


@register_plot("method_comparison")
def method_comparison(analysis: RunAnalysis) -> Figure | None:
    """The best setting of each merge method per task with its 95% CI; other settings as ticks, parents as bands."""
    scores = analysis.score_intervals
    candidates = scores[scores.kind == "candidate"].dropna(subset=["value"])
    if candidates.empty:
        return None
    tasks = list(dict.fromkeys(candidates.task))
    methods = list(dict.fromkeys(candidates.method))
    figure, axes = panel_grid(len(tasks), width=4.2, height=1.2 + 0.35 * len(methods))
    for axis, task in zip(axes, tasks, strict=True):
        _method_panel(axis, candidates[candidates.task == task], scores[scores.task == task], methods)
        axis.set_title(task, fontsize=9)
    return finish(figure, "Merge methods: best setting per method (chosen and shown on the same items: optimistic)")


def _method_panel(axis: Axes, candidates: pd.DataFrame, task_scores: pd.DataFrame, methods: list[str]) -> None:
    for position, method in enumerate(methods):
        settings = candidates[candidates.method == method]
        if settings.empty:
            continue
        axis.plot(settings.value, [position] * len(settings), "|", color="grey", markersize=10)
        best = settings.loc[settings.value.idxmax()]
        error = _yerr(best)
        axis.errorbar([best.value], [position], xerr=error, fmt="o", color="tab:blue", capsize=3)
    for parent, color in zip(
        task_scores[task_scores.kind == "parent"].itertuples(), ("tab:orange", "tab:green"), strict=False
    ):
        axis.axvline(parent.value, color=color, linewidth=1, label=parent.label)
        if not pd.isna(parent.low):
            axis.axvspan(parent.low, parent.high, color=color, alpha=0.12, linewidth=0)
    set_tick_labels(axis, methods, which="y")
    axis.set_ylim(-0.6, len(methods) - 0.4)
    axis.invert_yaxis()
    axis.set_xlabel("score")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(fontsize=7, loc="best")
