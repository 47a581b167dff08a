"""The study report: one self-contained page over every pair of a kinship study, linking each pair's own report.

Sections are typed records built from `StudyData`; the template (`study.html`) only lays them out, with the
run report's escaping, style, script and Content-Security-Policy (`html.render_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from mergescope.analysis.drivers import DriverFit
from mergescope.analysis.kinship_study import GAINS, KINSHIP_METRIC, StudyData
from mergescope.analysis.run_analysis import SPLIT
from mergescope.analysis.run_data import RunData
from mergescope.errors import MergescopeError
from mergescope.report import study_plots  # noqa: F401  (registers the study plots)
from mergescope.report.html import render_page, render_plots, write_analysed_report, write_page
from mergescope.report.plots import STUDY_PLOTS
from mergescope.report.sections import Table, frame_table, number, sort_key
from mergescope.runs.directory import RunMeta

GAIN_TITLES = {"gain_over_best": "gain over the best parent", "gain_over_mean": "gain over the parents' mean"}


@dataclass(frozen=True)
class PairEntry:
    """One pair as the report lists it, with the relative link to its own report."""

    key: str
    group: str
    kind: str
    parents: str
    base: str
    basis: str
    pearson: float
    cosine: float
    report_href: str
    run_dir: str


@dataclass(frozen=True)
class FitSection:
    title: str
    n_points: int
    r_squared: float
    coefficients: Table | None
    problems: tuple[str, ...]


def pair_entries(data: StudyData, links: dict[str, str]) -> tuple[PairEntry, ...]:
    """The pairs in study order, each with its kinship and the link to its report."""
    return tuple(
        PairEntry(
            f.pair.key,
            f.pair.group,
            f.pair.kind,
            " + ".join(_meta(f.run).parent_names),
            f.base or "none",
            f.basis or "unknown",
            f.pearson,
            f.cosine,
            links[f.pair.key],
            str(f.run.path),
        )
        for f in data.pairs
    )


def _with_ci(value: float, low: float, high: float) -> str:
    return f"{number(value)} ({number(low)} to {number(high)})"


def best_table(data: StudyData) -> Table:
    """Per pair and measure: the candidate chosen on the selection half and its reporting-half gains with CIs."""
    rows, keys = [], []
    for row in data.best.itertuples():
        rows.append(
            (
                row.pair,
                row.group,
                f"{row.task} ({row.measure})",
                row.candidate,
                f"{number(row.selection_score)} ({row.selection_half})",
                f"{number(row.score)} ({row.reporting_half}, {row.n_items})",
                f"{row.best_parent} {number(row.best_parent_score)}",
                _with_ci(row.gain_over_best, row.ci_low, row.ci_high),
                number(row.parents_mean),
                _with_ci(row.gain_over_mean, row.mean_ci_low, row.mean_ci_high),
                f"{row.p_all_parents:.3g}",
                row.label,
            )
        )
        keys.append(
            (
                row.pair,
                row.group,
                row.task,
                row.candidate,
                sort_key(row.selection_score),
                sort_key(row.score),
                sort_key(row.best_parent_score),
                sort_key(row.gain_over_best),
                sort_key(row.parents_mean),
                sort_key(row.gain_over_mean),
                sort_key(row.p_all_parents),
                row.label,
            )
        )
    columns = (
        "pair",
        "group",
        "measure",
        "best candidate",
        "selection score (half)",
        "reporting score (half, items)",
        "best parent (reporting)",
        "gain over best parent (95% CI)",
        "parents' mean",
        "gain over parents' mean (95% CI)",
        "p (beats every parent)",
        "label",
    )
    return Table(columns, tuple(rows), tuple(keys))


def parents_table(data: StudyData) -> Table:
    """Per pair and measure: kinship beside the parents' scores, gap and mean, and the emergence labels (all items)."""
    frame = data.parents
    if frame.empty:
        return Table((), ())
    shown = pd.DataFrame(
        {
            "pair": frame.pair,
            "group": frame.group,
            "measure": frame.task + " (" + frame.measure + ")",
            "kinship basis": frame.basis,
            "Pearson": frame.pearson,
            "cosine": frame.cosine,
            "best parent": frame.best_parent,
            "best parent score": frame.best_parent_score,
            "worse parent score": frame.worse_parent_score,
            "parent gap": frame.parent_gap,
            "parents' mean": frame.parents_mean,
            "candidates": frame.n_candidates,
            "emergent": frame.n_emergent,
            "degraded": frame.n_degraded,
        }
    )
    return frame_table(shown)


def fit_sections(data: StudyData) -> tuple[FitSection, ...]:
    """One section per driver fit: its coefficients with CIs and partial correlations, or why it has none."""
    return tuple(_fit_section(gain, fit) for gain, fit in zip(GAINS, data.fits, strict=True))


def _fit_section(gain: str, fit: DriverFit) -> FitSection:
    coefficients = frame_table(
        fit.frame().rename(
            columns={
                "name": "regressor",
                "ci_low": "95% CI low",
                "ci_high": "95% CI high",
                "p_value": "p",
                "partial_r": "partial r",
            }
        )
    )
    return FitSection(
        GAIN_TITLES[gain], fit.n_points, fit.r_squared, coefficients if fit.coefficients else None, fit.problems
    )


def _meta(run: RunData) -> RunMeta:
    """A pair's run provenance: every pair is a run the study swept, so it has one."""
    if run.meta is None:
        raise MergescopeError(f"{run.path}: no sweep provenance in the run's store", hint="rerun the study")
    return run.meta


def settings_rows(data: StudyData) -> tuple[tuple[str, str], ...]:
    """The settings every pair shares (from the first pair's run) and the analysis settings."""
    meta = _meta(data.pairs[0].run)
    return (
        ("sweep spec", str(meta.spec_source or "(built-in default)")),
        ("item limit", str(meta.limit or "none")),
        ("backend", str(meta.backend or "default")),
        ("best candidate", f"split {SPLIT}: chosen on one half of the items, reported on the other"),
        ("labels", f"{data.correction}-adjusted across each pair's candidates, alpha {data.alpha}"),
        ("driver fits", f"OLS over every pair's candidates and measures, all items; kinship = {KINSHIP_METRIC}"),
        ("analysis seed (item halves, bootstrap)", str(data.seed)),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(meta.versions.items()))),
    )


def render_study_report(data: StudyData, links: dict[str, str]) -> str:
    """The study report as one HTML document; `links` maps each pair's key to its report, relative to the page."""
    return render_page(
        "study.html",
        data=data,
        pairs=pair_entries(data, links),
        plots=render_plots(data, STUDY_PLOTS),
        best=best_table(data),
        parents=parents_table(data),
        fits=fit_sections(data),
        settings=settings_rows(data),
    )


def write_study_report(data: StudyData, out: str | Path) -> Path:
    """Write each pair's report under `out/pairs/KEY/` (from the pair's analysis in `data`) and the study's
    `out/index.html`; returns the latter."""
    out = Path(out)
    links = {}
    for figures in data.pairs:
        target = write_analysed_report(figures.analysis, out / "pairs" / figures.pair.key)
        links[figures.pair.key] = quote(target.relative_to(out).as_posix())
    return write_page(out / "index.html", render_study_report(data, links))
