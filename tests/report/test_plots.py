"""Every registered plot on the default run and on copies with one candidate, missing scores, many candidates."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

from helpers import report_runs
from mergescope.analysis import load_run
from mergescope.analysis.run_analysis import analyse_run
from mergescope.report import PLOTS, SERIES_PLOTS
from mergescope.report.plots import MAX_TICK_LABELS, set_tick_labels

SCORE_PLOTS = ("emergence_vs_parents", "actual_vs_expected", "interpolation", "method_comparison")
WEIGHT_PLOTS = ("kinship_layers", "slerp_diagnostics")


@pytest.fixture(scope="module")
def run_dir(default_run):
    return default_run[1].run_dir


@pytest.fixture(scope="module")
def variants(run_dir, judged_run, tmp_path_factory):
    """The analyses of the default run, a judged copy, and copies with one candidate, missing scores, many
    candidates, hostile text."""
    root = tmp_path_factory.mktemp("plot-variants")
    run_dirs = {
        "default": run_dir,
        "judged": judged_run,
        "single": report_runs.single_candidate(run_dir, root / "single"),
        "missing": report_runs.missing_scores(run_dir, root / "missing"),
        "many": report_runs.many_candidates(run_dir, root / "many"),
        "hostile": report_runs.hostile(run_dir, root / "hostile")[0],
    }
    return {name: analyse_run(load_run(path)) for name, path in run_dirs.items()}


def draw(figure: Figure | None) -> Figure | None:
    """Render the figure to PNG (drawing is where bad text or data would fail); returns it."""
    if figure is not None:
        figure.savefig(io.BytesIO(), format="png")
    return figure


@pytest.mark.parametrize("variant", ["default", "judged", "single", "missing", "many", "hostile"])
@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_returns_a_figure_or_none(variants, name, variant):
    figure = draw(PLOTS[name](variants[variant]))
    assert figure is None or isinstance(figure, Figure)
    has_data = (
        name in SCORE_PLOTS + WEIGHT_PLOTS and variant != "missing" or name == "judge_profile" and variant == "judged"
    )
    if has_data:
        assert isinstance(figure, Figure), f"{name} has data in the {variant} run but drew nothing"


def test_the_judge_profile_shows_the_parents_and_the_best_candidates(variants):
    run = variants["judged"].run
    axis = PLOTS["judge_profile"](variants["judged"]).axes[0]
    shown = [text.get_text() for text in axis.get_legend().get_texts()]
    # One sample per answer and every criterion graded: the mean of all scores is the mean of criterion means.
    means = run.tables["judgments"].groupby("subject_id").score.mean()
    candidates = means.reindex(run.candidates().id).sort_values(ascending=False, kind="stable")
    best = run.subjects.set_index("id").label[candidates.index[:3]]
    references = run.subjects[run.subjects.kind.isin(["parent", "base"])].label
    assert sorted(shown) == sorted([*references, *best])
    assert [t.get_text() for t in axis.get_xticklabels()] == ["conciseness", "correctness"]


def test_plots_without_data_return_none(variants):
    analysis = variants["default"]
    assert "judgments" not in analysis.run.tables
    assert PLOTS["judge_profile"](analysis) is None
    no_weights = analyse_run(dataclasses.replace(analysis.run, tables={}))
    assert PLOTS["kinship_layers"](no_weights) is None
    assert PLOTS["slerp_diagnostics"](no_weights) is None


def visible_labels(axis, which: str) -> list[str]:
    ticks = axis.get_xticklabels() if which == "x" else axis.get_yticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


def test_many_candidates_are_labelled_sparsely(variants):
    analysis = variants["many"]
    assert len(analysis.run.candidates()) > MAX_TICK_LABELS
    figure = draw(PLOTS["actual_vs_expected"](analysis))
    labels = visible_labels(figure.axes[1], "y")
    assert 0 < len(labels) <= MAX_TICK_LABELS
    figure = draw(PLOTS["slerp_diagnostics"](analysis))
    labels = visible_labels(figure.axes[1], "y")
    assert 0 < len(labels) <= MAX_TICK_LABELS


def test_long_tick_labels_are_turned_so_they_do_not_overlap():
    axis = Figure().subplots()
    set_tick_labels(axis, [f"a long candidate label number {i}" for i in range(60)])
    shown = [t for t in axis.get_xticklabels() if t.get_text()]
    assert 0 < len(shown) <= MAX_TICK_LABELS and all(t.get_rotation() > 0 for t in shown)


def test_interpolation_puts_the_parents_at_the_ends(variants):
    run = variants["default"].run
    axis = PLOTS["interpolation"](variants["default"]).axes[0]
    stars = [line for line in axis.lines if line.get_marker() == "*"]
    task = run.tasks()[0]
    wide = run.wide_scores()
    parents = wide[wide.kind == "parent"][task].to_numpy()
    assert [tuple(s.get_xdata()) for s in stars] == [(0.0,), (1.0,)]
    assert np.allclose([s.get_ydata()[0] for s in stars], parents)


def test_kinship_series_fits_a_trend_only_across_several_kinship_values(variants, run_dir, tmp_path):
    other = report_runs.copy_run(run_dir, tmp_path / "other-pair")
    # A second "parent pair": less kin, and children that solve every third item besides.
    report_runs.execute(
        other,
        "UPDATE kinship SET cosine = cosine - 0.5 WHERE scope = 'model'",
        "UPDATE items SET value = 1 WHERE doc_id % 3 = 0"
        " AND subject_id IN (SELECT id FROM subjects WHERE kind = 'candidate')",
    )
    runs = [variants["default"].run, load_run(other)]
    one = draw(SERIES_PLOTS["emergence_vs_kinship"](runs[:1]))
    assert "needs several parent pairs" in one.axes[0].get_title()
    title = draw(SERIES_PLOTS["emergence_vs_kinship"](runs)).axes[0].get_title()
    from mergescope.analysis.drivers import driver_points

    points, _ = driver_points(runs)
    assert points.kinship.nunique() == 2
    expected = stats.pearsonr(points.kinship, points.gain).statistic
    shown = float(re.search(r"Pearson r = (-?[0-9.]+)", title).group(1))
    assert expected < -0.1 and shown == pytest.approx(expected, abs=0.005)


def test_kinship_series_without_kinship_is_none(variants):
    run = variants["default"].run
    assert SERIES_PLOTS["emergence_vs_kinship"]([dataclasses.replace(run, tables={})]) is None
