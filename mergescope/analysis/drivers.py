"""What drives gain: gain against the parents' kinship, controlling for the confounds that travel with it.

One point per candidate and task (over one or several runs). The confounds are the gap between the
parents' scores, their mean, the merge method and the mixing weight. For each regressor we report the
OLS coefficient with its CI and p-value, and the partial correlation of gain with it given the others
(the correlation of the two residual vectors after regressing both on the other regressors). The
partial correlation's t-test is exactly the t-test of that coefficient in the full fit, so the p-value
statsmodels gives for the coefficient is the partial correlation's p-value as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from mergescope.analysis.emergence import emergence
from mergescope.analysis.run_data import RunData, load_run
from mergescope.errors import ConfigError, did_you_mean

NUMERIC_REGRESSORS = ("kinship", "parent_gap", "parent_mean", "mix")
KINSHIP_SCOPE = "model"  # whole-model kinship; per-layer and per-module rows are for plots


@dataclass(frozen=True)
class Coefficient:
    """One regressor's OLS estimate and its partial correlation with gain."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    partial_r: float  # NaN for the intercept


@dataclass(frozen=True)
class DriverFit:
    """The fit of gain on kinship and its confounds, or why it could not be made (`coefficients` empty)."""

    gain: str
    n_points: int
    regressors: tuple[str, ...]
    coefficients: tuple[Coefficient, ...]
    r_squared: float
    problems: tuple[str, ...]
    points: pd.DataFrame  # the data fitted: one row per candidate, task and run

    def frame(self) -> pd.DataFrame:
        """The coefficients as a DataFrame."""
        return pd.DataFrame(
            [c.__dict__ for c in self.coefficients],
            columns=["name", "estimate", "ci_low", "ci_high", "p_value", "partial_r"],
        )


def _parent_aliases(run: RunData) -> list[set[str]]:
    """Every name a kinship table may use for each parent: label, subject id, path and folder name."""
    return [
        {row.label, row.id, *([row.path, Path(row.path).name] if row.path else [])}
        for row in run.parents().itertuples()
    ]


def parent_kinship_row(run: RunData) -> tuple[pd.Series | None, str]:
    """The kinship table's whole-model row for the run's two parents, or None and the reason there is none."""
    table = run.tables.get("kinship")
    if table is None or table.empty:
        return None, f"run {run.name}: no kinship table, so kinship is left out of the fit"
    aliases = _parent_aliases(run)
    if len(aliases) != 2:
        return None, f"run {run.name}: kinship is used for two-parent runs only, this one has {len(aliases)}"
    rows = table[table.scope == KINSHIP_SCOPE] if "scope" in table.columns else table
    match = rows[
        (rows.model_a.isin(aliases[0]) & rows.model_b.isin(aliases[1]))
        | (rows.model_a.isin(aliases[1]) & rows.model_b.isin(aliases[0]))
    ]
    if match.empty:
        return None, f"run {run.name}: the kinship table has no whole-model row for its two parents"
    return match.iloc[0], ""


def parent_kinship(run: RunData, metric: str = "cosine") -> tuple[float, str]:
    """The whole-model kinship of the run's two parents, or NaN and the reason it is unavailable."""
    row, reason = parent_kinship_row(run)
    if row is None:
        return np.nan, reason
    if metric not in row.index:
        return (
            np.nan,
            f"run {run.name}: the kinship table has no {metric!r} column ({did_you_mean(metric, set(row.index))})",
        )
    return float(row[metric]), ""


def run_driver_points(
    run: RunData, rows: pd.DataFrame, gain: str = "gain_over_mean", kinship_metric: str = "cosine"
) -> tuple[pd.DataFrame, list[str]]:
    """One run's points from its emergence rows on all items (`emergence(run).frame()`); and messages."""
    if gain not in rows.columns:
        raise ConfigError(f"unknown gain {gain!r}", hint=did_you_mean(gain, [c for c in rows.columns if "gain" in c]))
    kinship, reason = parent_kinship(run, kinship_metric)
    points = pd.DataFrame(
        {
            "run": rows.run,
            "task": rows.task,
            "measure": rows.measure,
            "candidate": rows.candidate,
            "method": rows.method,
            "gain": rows[gain],
            "kinship": kinship,
            "parent_gap": rows.best_parent_score - rows.worse_parent_score,
            "parent_mean": rows.parents_mean,
            "mix": pd.to_numeric(rows.mix, errors="coerce"),
        }
    )
    return points, [reason] if reason else []


def driver_points(
    runs: Sequence[RunData | str | Path], gain: str = "gain_over_mean", kinship_metric: str = "cosine"
) -> tuple[pd.DataFrame, list[str]]:
    """One row per candidate, measure and run: the gain and every candidate driver; and messages."""
    frames, problems = [], []
    for run in runs:
        run = run if isinstance(run, RunData) else load_run(run)
        points, reasons = run_driver_points(run, emergence(run, split="all").frame(), gain, kinship_metric)
        frames.append(points)
        problems += reasons
    return concat_points(frames), problems


def concat_points(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The points of several runs as one frame for `fit_drivers`, rows without a gain left out."""
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["gain", *NUMERIC_REGRESSORS])
    return points.dropna(subset=["gain"])


def _design(points: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The regressor columns worth fitting, and a message for each one left out."""
    columns, problems = {}, []
    for name in NUMERIC_REGRESSORS:
        values = points[name]
        if values.isna().any():
            problems.append(
                f"{name} is unknown for {int(values.isna().sum())} of {len(values)} points: left out of the fit"
            )
        elif values.nunique() < 2:
            problems.append(
                f"{name} is the same for every point: its effect cannot be estimated "
                "(kinship needs runs of several parent pairs)"
                if name == "kinship"
                else f"{name} is the same for every point: its effect cannot be estimated"
            )
        else:
            columns[name] = values.astype(float)
    methods = pd.get_dummies(points["method"], prefix="method", drop_first=True, dtype=float)
    return pd.DataFrame({**columns, **methods}, index=points.index), problems


def _independent(design: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The design without the columns that are linear combinations of the constant and the columns before
    them (kinship comes first, so a confound that moves in lockstep with it is the one left out), and why."""
    kept: list[str] = []
    problems: list[str] = []
    for name in design.columns:
        exog = sm.add_constant(design[[*kept, name]], has_constant="add").to_numpy()
        if np.linalg.matrix_rank(exog) < len(kept) + 2:
            problems.append(
                f"{name} is a linear combination of {', '.join(['a constant', *kept])} on these points: "
                "left out of the fit, its effect cannot be told apart from theirs (add pairs or tasks "
                "that vary it independently)"
            )
        else:
            kept.append(name)
    return design[kept], problems


def _partial_r(y: np.ndarray, design: pd.DataFrame, name: str) -> float:
    """The correlation of y and `name` after regressing both on the other columns (with a constant)."""
    others = sm.add_constant(design.drop(columns=name).to_numpy(), has_constant="add")
    residual_y = sm.OLS(y, others).fit().resid
    residual_x = sm.OLS(design[name].to_numpy(), others).fit().resid
    return float(np.corrcoef(residual_y, residual_x)[0, 1])


def fit_drivers(
    points: pd.DataFrame, gain: str = "gain", alpha: float = 0.05, problems: Sequence[str] = ()
) -> DriverFit:
    """OLS of gain on kinship, parent gap, parent mean, mixing weight and method, with partial correlations."""
    design, left_out = _design(points)
    design, collinear = _independent(design)
    problems = [*problems, *left_out, *collinear]
    n_parameters = design.shape[1] + 1
    unfitted = DriverFit(gain, len(points), tuple(design.columns), (), np.nan, tuple(problems), points)
    if len(points) <= n_parameters:
        return dataclasses.replace(
            unfitted,
            problems=(
                *problems,
                f"too few points to fit: {len(points)} points for "
                f"{n_parameters} parameters (need at least {n_parameters + 1})",
            ),
        )
    if design.shape[1] == 0:
        return dataclasses.replace(
            unfitted, problems=(*problems, "no regressor varies across the points: nothing to fit")
        )
    exog = sm.add_constant(design, has_constant="add")
    fit = sm.OLS(points[gain].to_numpy(float), exog).fit()
    intervals = fit.conf_int(alpha)
    coefficients = tuple(
        Coefficient(
            name,
            float(fit.params[name]),
            float(intervals.loc[name, 0]),
            float(intervals.loc[name, 1]),
            float(fit.pvalues[name]),
            np.nan if name == "const" else _partial_r(points[gain].to_numpy(float), design, name),
        )
        for name in exog.columns
    )
    return dataclasses.replace(unfitted, coefficients=coefficients, r_squared=float(fit.rsquared))


def gain_drivers(
    runs: Sequence[RunData | str | Path],
    gain: str = "gain_over_mean",
    kinship_metric: str = "cosine",
    alpha: float = 0.05,
) -> DriverFit:
    """What drives `gain` across the candidates and tasks of `runs`: the OLS fit and partial correlations."""
    points, problems = driver_points(runs, gain, kinship_metric)
    return fit_drivers(points, "gain", alpha, problems)
