"""Plots of the weights and the judges: kinship per layer, SLERP interpolation, judge rubric profiles, and
gain against kinship across runs. Registered in the same registries as the score plots (plots.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from mergescope.analysis.run_analysis import RunAnalysis
from mergescope.analysis.run_data import RunData
from mergescope.report.plots import (
    finish,
    height_for_rows,
    panel_grid,
    register_plot,
    register_series_plot,
    set_tick_labels,
)

KINSHIP_METRICS = ("pearson", "cosine")
MAX_JUDGED_CANDIDATES = 3


@register_plot("kinship_layers")
def kinship_heatmap(analysis: RunAnalysis) -> Figure | None:
    """Kinship of the parents' task vectors per layer (Pearson and cosine), one row per pair and metric."""
    table = analysis.kinship
    layers = table[table.scope == "layer"] if table is not None else None
    if layers is None or layers.empty:
        return None
    layers = layers.assign(layer=layers.scope_name.astype(int)).drop_duplicates(["model_a", "model_b", "layer"])
    columns = sorted(layers.layer.unique())
    row_labels, matrix = [], []
    for (model_a, model_b), pair in layers.groupby(["model_a", "model_b"], sort=False):
        by_layer = pair.set_index("layer").reindex(columns)
        for metric in KINSHIP_METRICS:
            row_labels.append(f"{model_a} · {model_b}\n{metric}")
            matrix.append(by_layer[metric].to_numpy(float))
    figure = Figure(figsize=(max(5.0, 0.42 * len(columns) + 2.5), 1.0 + 0.55 * len(row_labels)))
    axis = figure.subplots()
    image = axis.imshow(np.array(matrix), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    if len(columns) <= 24:
        for (row, column), value in np.ndenumerate(np.array(matrix)):
            if not math.isnan(value):
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6.5)
    set_tick_labels(axis, [str(c) for c in columns])
    set_tick_labels(axis, row_labels, which="y")
    axis.set_xlabel("layer")
    figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
    return finish(figure, "Per-layer kinship of the parents' task vectors")


@register_plot("slerp_diagnostics")
def slerp_diagnostics(analysis: RunAnalysis) -> Figure | None:
    """Angles between the parents' tensors, and the share of each SLERP candidate interpolated linearly."""
    from mergescope.analysis.slerp_diagnostics import DOT_THRESHOLD  # imports torch: only when there is a table

    table = analysis.slerp_tensors
    if table is None:
        return None
    height = height_for_rows(table.candidate_id.nunique(), minimum=4.0)
    figure = Figure(figsize=(11, height))
    histogram, shares = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.1]})
    # The angle depends on the parent tensors only, not on t: count each tensor once.
    angles = table.drop_duplicates("tensor").angle_degrees.dropna()
    histogram.hist(angles, bins=min(30, max(5, len(angles) // 3)), color="tab:purple", alpha=0.8)
    threshold = math.degrees(math.acos(DOT_THRESHOLD))
    histogram.axvline(
        threshold,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"linear fallback below {threshold:.2f}° (|cos| > {DOT_THRESHOLD})",
    )
    histogram.set_xlabel("angle between parent tensors (degrees)")
    histogram.set_ylabel("tensors")
    histogram.legend(fontsize=7)
    _linear_shares(shares, analysis.run, table)
    return finish(figure, "SLERP diagnostics")


def _linear_shares(axis: Axes, run: RunData, table: pd.DataFrame) -> None:
    table = table.assign(linear_params=table.n_params * table.linear)
    per_candidate = table.groupby("candidate_id", sort=False).agg(
        tensors=("linear", "mean"), params=("linear_params", "sum"), n_params=("n_params", "sum")
    )
    label_of = run.subjects.set_index("id").label
    labels = [label_of.get(candidate_id, candidate_id) for candidate_id in per_candidate.index]
    positions = np.arange(len(per_candidate))
    axis.barh(positions - 0.2, per_candidate.tensors, height=0.4, label="share of tensors", color="tab:blue")
    axis.barh(
        positions + 0.2,
        per_candidate.params / per_candidate.n_params,
        height=0.4,
        label="share of parameters",
        color="tab:cyan",
    )
    set_tick_labels(axis, labels, which="y")
    axis.invert_yaxis()
    axis.set_xlim(0, 1.05)
    axis.set_xlabel("interpolated linearly (fallback from SLERP)")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(axis="x", alpha=0.3)


@register_plot("judge_profile")
def judge_profile(analysis: RunAnalysis) -> Figure | None:
    """Mean judge score per rubric criterion (95% bootstrap CI) of the parents and the best candidates."""
    intervals = analysis.judge_intervals
    if intervals is None or intervals.empty:  # no judgments, or none that parsed into a score
        return None
    panels = list(intervals.groupby(["rubric", "judge"], sort=False))
    figure, axes = panel_grid(len(panels), width=5.2, height=3.6)
    for axis, ((rubric, judge), part) in zip(axes, panels, strict=True):
        _judge_panel(axis, part, analysis.run)
        axis.set_title(f"{rubric} · judge {judge}", fontsize=9)
    return finish(figure, "Judge rubric profile: children vs parents")


def _judged_subjects(part: pd.DataFrame, run: RunData) -> list[str]:
    """The parents (and base) that were judged, then the candidates with the highest mean criterion score
    (ties in sweep order)."""
    kinds = run.subjects.set_index("id").kind
    judged = [s for s in run.subjects.id if s in set(part.subject_id)]
    references = [s for s in judged if kinds[s] in ("parent", "base")]
    means = part.groupby("subject_id")["mean"].mean()
    candidates = means.reindex([s for s in judged if s not in references]).sort_values(ascending=False, kind="stable")
    return references + list(candidates.index[:MAX_JUDGED_CANDIDATES])


def _judge_panel(axis: Axes, part: pd.DataFrame, run: RunData) -> None:
    criteria = list(dict.fromkeys(part.criterion))
    subjects = _judged_subjects(part, run)
    labels = run.subjects.set_index("id").label
    width = 0.8 / max(1, len(subjects))
    for offset, subject in enumerate(subjects):
        rows = part[part.subject_id == subject].set_index("criterion").reindex(criteria)
        positions = np.arange(len(criteria)) - 0.4 + width * (offset + 0.5)
        errors = np.array([(rows["mean"] - rows.ci_low).clip(lower=0), (rows.ci_high - rows["mean"]).clip(lower=0)])
        axis.errorbar(
            positions,
            rows["mean"],
            yerr=np.nan_to_num(errors),
            fmt="o",
            capsize=2,
            markersize=5,
            label=labels.get(subject, subject),
        )
    set_tick_labels(axis, criteria)
    axis.set_ylabel("mean score")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


@register_series_plot("emergence_vs_kinship")
def emergence_vs_kinship(runs: Sequence[RunData]) -> Figure | None:
    """Gain over the parents' mean against the parents' kinship (task-vector cosine), across runs, with an OLS trend."""
    from mergescope.analysis.drivers import driver_points  # statsmodels' formula API is slow to import

    points, _ = driver_points(list(runs), gain="gain_over_mean", kinship_metric="cosine")
    points = points.dropna(subset=["gain", "kinship"])
    if points.empty:
        return None
    figure = Figure(figsize=(6.8, 4.4))
    axis = figure.subplots()
    for run_name, part in points.groupby("run", sort=False):
        axis.scatter(part.kinship, part.gain, s=30, alpha=0.8, label=run_name)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_title(_trend(axis, points), fontsize=8)
    axis.set_xlabel("parents' kinship (cosine of task vectors)")
    axis.set_ylabel("gain over the parents' mean")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return finish(figure, "Emergence vs kinship")


def _trend(axis: Axes, points: pd.DataFrame) -> str:
    """Draw the least-squares line when kinship varies; returns the correlation in words."""
    if points.kinship.nunique() < 2 or len(points) < 3:
        return f"{len(points)} points, {points.kinship.nunique()} kinship value(s): a trend needs several parent pairs"
    fit = stats.linregress(points.kinship, points.gain)
    xs = np.linspace(points.kinship.min(), points.kinship.max(), 50)
    axis.plot(xs, fit.intercept + fit.slope * xs, color="black", linewidth=1.2)
    return f"Pearson r = {fit.rvalue:.2f} (p = {fit.pvalue:.2g}, n = {len(points)}); slope {fit.slope:.3f}"
