"""The one analysis pass of a run (analysis/run_analysis.py): score intervals, and that a report, or a study's
reports, compute emergence once per split and read the store once per run."""

from __future__ import annotations

import sys

import pytest
from scipy import stats

from helpers import report_runs
from mergescope.analysis import load_run
from mergescope.analysis.emergence import emergence
from mergescope.analysis.kinship_study import study_data
from mergescope.analysis.run_analysis import AnalysisSettings, analyse_run, score_intervals
from mergescope.report import render_report, write_report
from mergescope.report.study_page import write_study_report
from mergescope.runs.records import StudyPair


@pytest.fixture(scope="module")
def run_dir(default_run):
    return default_run[1].run_dir


def spy_everywhere(monkeypatch, function) -> list[tuple[tuple, dict]]:
    """Replace `function` in every mergescope module that holds it by a wrapper recording each call's arguments.

    Modules import functions by name, so patching the defining module alone would miss their callers.
    """
    calls: list[tuple[tuple, dict]] = []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return function(*args, **kwargs)

    holders = [
        m
        for name, m in list(sys.modules.items())
        if name.startswith("mergescope") and getattr(m, function.__name__, None) is function
    ]
    assert holders, f"no mergescope module holds {function.__name__}"
    for module in holders:
        monkeypatch.setattr(module, function.__name__, recording)
    return calls


def splits(calls: list[tuple[tuple, dict]]) -> list[str]:
    return [kwargs.get("split", "all") for _, kwargs in calls]


def test_score_intervals_are_wilson_intervals_of_the_stored_scores(run_dir):
    run = load_run(run_dir)
    intervals = score_intervals(run)
    assert len(intervals) == len(run.subjects) * len(run.tasks())
    for row in intervals.sample(8, random_state=0).itertuples():
        score = run.scores[
            (run.scores.subject_id == row.subject_id)
            & (run.scores.task == row.task)
            & (run.scores.metric == run.primary_metric(row.task))
        ].iloc[0]
        solved = round(score.value * score.n_items)
        expected = stats.binomtest(solved, int(score.n_items)).proportion_ci(0.95, method="wilson")
        assert (row.low, row.high) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_intervals_fall_back_to_the_stored_stderr_and_else_are_unknown(run_dir, tmp_path):
    run = load_run(report_runs.missing_scores(run_dir, tmp_path / "missing"))
    intervals = score_intervals(run)
    without_items = intervals[intervals.task == max(run.tasks())]
    assert without_items.low.isna().all() and without_items.high.isna().all()


@pytest.mark.parametrize("scored", [True, False])
def test_a_report_computes_emergence_once_per_split_and_reads_the_store_once(run_dir, tmp_path, monkeypatch, scored):
    if not scored:  # no emergence rows: the summary shows the analysis' problems instead
        run_dir = report_runs.copy_run(run_dir, tmp_path / "unscored")
        report_runs.execute(run_dir, "DELETE FROM items", "DELETE FROM scores")
    emergence_calls = spy_everywhere(monkeypatch, emergence)
    loads = spy_everywhere(monkeypatch, load_run)
    html = write_report(run_dir, tmp_path / "report").read_text()
    assert sorted(splits(emergence_calls)) == ["all", "selection-reporting"]
    assert len(loads) == 1
    assert scored or "the run has no scores yet" in html


def test_the_study_renders_each_pairs_report_from_the_pairs_analysis(zoo, run_dir, tmp_path, monkeypatch):
    model = zoo.model_path
    pairs = [StudyPair(name, (model("arith"), model("facts")), model("base")) for name in ("first", "second")]
    run_dirs = [report_runs.copy_run(run_dir, tmp_path / "runs" / pair.name) for pair in pairs]
    emergence_calls = spy_everywhere(monkeypatch, emergence)
    loads = spy_everywhere(monkeypatch, load_run)
    write_study_report(study_data(pairs, run_dirs), tmp_path / "study")
    assert sorted(splits(emergence_calls)) == ["all"] * 2 + ["selection-reporting"] * 2
    assert len(loads) == 2
    for pair in pairs:
        assert (tmp_path / "study" / "pairs" / pair.name / "index.html").stat().st_size > 10_000


def test_the_report_states_the_analysis_correction_and_level(run_dir):
    html = render_report(analyse_run(load_run(run_dir), AnalysisSettings(alpha=0.1, correction="bh", seed=3)))
    assert "Benjamini-Hochberg-adjusted" in html and "α = 0.1," in html and "Holm" not in html
    assert '<th scope="row">analysis seed (item halves, bootstrap)</th><td>3</td>' in html
