"""Emergence figures on small item tables with known answers, written to a real results store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from mergescope.analysis import load_run
from mergescope.analysis.drivers import fit_drivers, gain_drivers
from mergescope.analysis.emergence import EmergenceRow, emergence
from mergescope.analysis.emergent_items import emergent_items, examples_frame
from mergescope.analysis.itemscores import item_halves
from mergescope.cli.app import app
from mergescope.errors import ConfigError
from mergescope.runs.records import Candidate, EvalSubject, Evaluation, ItemOutcome, TaskScore
from mergescope.runs.store import ResultsStore

N_ITEMS = 200
TASK = "arith"


def solved(*ranges: range) -> np.ndarray:
    """A binary outcome vector over N_ITEMS items, solved on the given index ranges."""
    outcome = np.zeros(N_ITEMS)
    for indices in ranges:
        outcome[list(indices)] = 1
    return outcome


# Parent A solves items 0-99, B solves 50-139; no parent solves 140-199.
PARENT_A, PARENT_B = solved(range(0, 100)), solved(range(50, 140))


def parent(label: str) -> EvalSubject:
    return EvalSubject(id=f"parent-{label}", kind="parent", label=label, path=Path(f"/models/{label}"))


def candidate(
    label: str, mix: float | None = 0.5, seed: int | None = None, config: str | None = None, method: str = "linear"
) -> EvalSubject:
    merge = Candidate(
        id=f"{config or label}-{seed}",
        method=method,
        label=label,
        mergekit_config={"merge_method": method, "name": config or label},
        parameters={},
        seed=seed,
        mix=mix,
    )
    return EvalSubject(id=merge.id, kind="candidate", label=label, candidate=merge)


def write_run(
    directory: Path, outcomes: list[tuple[EvalSubject, dict[str, np.ndarray]]], planned: tuple[EvalSubject, ...] = ()
) -> Path:
    """A run directory whose store holds these per-item outcomes (task -> vector) for each subject."""
    directory.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(directory / "results.sqlite")
    store.plan([*(subject for subject, _ in outcomes), *planned])
    for subject, tasks in outcomes:
        items = tuple(
            ItemOutcome(
                subject_id=subject.id,
                task=task,
                doc_id=i,
                doc_hash=f"{task}-h{i:03d}",
                metric="exact_match",
                value=float(value),
                prompt=f"{task} question {i}",
                target=f"answer {i}",
                response=f"{subject.label} says {i}",
            )
            for task, vector in tasks.items()
            for i, value in enumerate(vector)
            if not np.isnan(value)
        )
        scores = tuple(
            TaskScore(
                subject_id=subject.id,
                task=task,
                metric="exact_match",
                value=float(np.nanmean(vector)),
                stderr=None,
                n_items=len(vector),
            )
            for task, vector in tasks.items()
        )
        store.record(subject, Evaluation(scores, items, 0.1))
    store.close()
    return directory


def rows_of(report, candidate_label: str, split: str = "all") -> list[EmergenceRow]:
    return [r for r in report.rows if r.candidate == candidate_label and r.split == split]


@pytest.fixture
def known_run(tmp_path):
    """Parents A and B; children solving 30 and 2 extra items that both parents fail, and a degraded child."""
    return write_run(
        tmp_path / "run",
        [
            (parent("A"), {TASK: PARENT_A}),
            (parent("B"), {TASK: PARENT_B}),
            (candidate("plus30", mix=0.25), {TASK: solved(range(0, 100), range(140, 170))}),
            (candidate("plus2"), {TASK: solved(range(0, 100), range(140, 142))}),
            (candidate("broken"), {TASK: solved(range(0, 20))}),
        ],
    )


def test_child_solving_30_extra_items_is_emergent_and_2_extra_is_not(known_run):
    report = emergence(known_run, alpha=0.05)
    labels = {r.candidate: r.label for r in report.rows}
    assert labels == {"plus30": "emergent", "plus2": "intermediate", "broken": "degraded"}
    assert report.problems == ()


def test_gains_and_transitions_match_the_outcome_vectors(known_run):
    (row,) = rows_of(emergence(known_run), "plus30")
    child = solved(range(0, 100), range(140, 170))
    assert (row.gains.best_parent, row.gains.worse_parent, row.n_items) == ("A", "B", N_ITEMS)
    assert row.gains.score == pytest.approx(child.mean())
    assert row.gains.gain_over_best == pytest.approx(child.mean() - PARENT_A.mean())
    assert row.gains.gain_over_mean == pytest.approx(child.mean() - (PARENT_A.mean() + PARENT_B.mean()) / 2)
    interpolation = 0.75 * PARENT_A.mean() + 0.25 * PARENT_B.mean()
    assert row.gains.gain_over_interpolation == pytest.approx(child.mean() - interpolation)
    assert (row.gained_vs_best, row.lost_vs_best) == (30, 0)
    strongest = np.maximum(PARENT_A, PARENT_B)
    assert row.new_items == int(((child == 1) & (strongest == 0)).sum()) == 30
    assert row.lost_items == int(((child == 0) & (strongest == 1)).sum()) == 40  # items 100-139 B solved


def test_p_values_and_ci_match_scipy_directly(known_run):
    (row,) = rows_of(emergence(known_run), "plus30")
    child = solved(range(0, 100), range(140, 170))
    p_vs = {}
    for label, reference in (("A", PARENT_A), ("B", PARENT_B)):
        wins, losses = int(((child == 1) & (reference == 0)).sum()), int(((child == 0) & (reference == 1)).sum())
        p_vs[label] = stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
    assert row.p_vs_parents == pytest.approx(p_vs)
    assert row.p_vs_best == pytest.approx(p_vs["A"])
    assert row.p_vs_best_two_sided == pytest.approx(stats.binomtest(30, 30, 0.5).pvalue)
    assert row.p_all_parents == pytest.approx(max(p_vs.values()))
    ci = stats.bootstrap(
        (child, PARENT_A),
        lambda c, r, axis: np.mean(c - r, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("correction, statsmodels_name", [("holm", "holm"), ("bh", "fdr_bh")])
def test_p_values_are_adjusted_across_the_candidates(known_run, correction, statsmodels_name):
    report = emergence(known_run, correction=correction)
    raw = [r.p_all_parents for r in report.rows]
    expected = multipletests(raw, method=statsmodels_name)[1]
    assert [r.p_adjusted for r in report.rows] == pytest.approx(list(expected))
    below = multipletests([r.p_below_worse for r in report.rows], method=statsmodels_name)[1]
    assert [r.p_below_adjusted for r in report.rows] == pytest.approx(list(below))


def test_frame_and_json_have_one_entry_per_row(known_run):
    report = emergence(known_run)
    frame = report.frame()
    assert list(frame.candidate) == ["plus30", "plus2", "broken"]
    assert set(frame.split) == {"all"}
    document = report.to_json()
    assert len(document["rows"]) == 3 and document["correction"] == "holm"
    assert json.loads(json.dumps(document))["rows"][0]["label"] == "emergent"


def test_seeds_of_one_config_form_one_point_tested_on_the_seed_mean(tmp_path):
    rng = np.random.default_rng(3)
    seed_outcomes = [np.where(rng.random(N_ITEMS) < 0.1, 1 - PARENT_A, PARENT_A) for _ in range(3)]
    run = write_run(
        tmp_path / "run",
        [
            (parent("A"), {TASK: PARENT_A}),
            (parent("B"), {TASK: PARENT_B}),
            *[
                (candidate(f"dare seed={s}", mix=None, seed=s, config="dare", method="dare_ties"), {TASK: outcome})
                for s, outcome in enumerate(seed_outcomes)
            ],
        ],
    )
    (row,) = emergence(run).rows
    seed_mean = np.mean(seed_outcomes, axis=0)
    assert (row.candidate, row.n_seeds, row.test) == ("dare", 3, "wilcoxon")
    assert row.seed_sd == pytest.approx(np.std([o.mean() for o in seed_outcomes], ddof=1))
    assert row.gains.score == pytest.approx(seed_mean.mean())
    assert row.p_vs_best == pytest.approx(stats.wilcoxon(seed_mean, PARENT_A, alternative="greater").pvalue)
    assert np.isnan(row.gains.interpolation_expected) and "mixing weight" in row.note


def test_item_halves_are_stable_and_seeded():
    keys = pd.Index([f"h{i}" for i in range(400)])
    halves = item_halves(keys, seed=0)
    assert halves.equals(item_halves(keys[::-1], seed=0).loc[keys])
    assert 150 < (halves == "A").sum() < 250
    assert not halves.equals(item_halves(keys, seed=1))


def lucky_run(directory: Path, lucky_outcome: np.ndarray) -> Path:
    return write_run(
        directory,
        [
            (parent("A"), {TASK: PARENT_A}),
            (parent("B"), {TASK: PARENT_B}),
            (candidate("steady"), {TASK: solved(range(0, 100), range(140, 150))}),
            (candidate("lucky"), {TASK: lucky_outcome}),
        ],
    )


def test_selection_reporting_keeps_the_reported_gain_free_of_the_selection_items(tmp_path):
    halves = item_halves(pd.Index([f"{TASK}-h{i:03d}" for i in range(N_ITEMS)])).to_numpy()
    # "lucky" equals parent A except that it solves every item of the selection half (A) that no parent does.
    lucky = np.where((halves == "A") & (np.maximum(PARENT_A, PARENT_B) == 0), 1.0, PARENT_A)
    report = emergence(lucky_run(tmp_path / "one", lucky), split="selection-reporting")
    (reported,) = [r for r in report.rows if r.split == "reporting"]
    assert (reported.candidate, reported.selected, reported.half) == ("lucky", True, "B")
    assert reported.n_items == int((halves == "B").sum())
    assert reported.gains.gain_over_best == pytest.approx(lucky[halves == "B"].mean() - PARENT_A[halves == "B"].mean())
    assert reported.gains.gain_over_best == 0 and reported.label == "intermediate"
    assert reported.p_adjusted == reported.p_all_parents  # a family of one: chosen before it was tested
    (chosen_on,) = [r for r in report.rows if r.split == "selection" and r.selected]
    assert chosen_on.candidate == "lucky" and chosen_on.label == "emergent"
    # Changing the chosen candidate's selection-half outcomes does not move what is reported.
    luckier = np.where(halves == "A", 1.0, lucky)
    again = emergence(lucky_run(tmp_path / "two", luckier), split="selection-reporting")
    (reported_again,) = [r for r in again.rows if r.split == "reporting"]
    assert (reported_again.candidate, reported_again.gains.score) == ("lucky", reported.gains.score)


def test_cross_fit_reports_each_half_with_a_candidate_chosen_on_the_other(known_run):
    report = emergence(known_run, split="cross-fit")
    reported = [r for r in report.rows if r.split == "reporting"]
    assert sorted(r.half for r in reported) == ["A", "B"]
    selection_halves = {r.half for r in report.rows if r.split == "selection"}
    assert selection_halves == {"A", "B"}
    assert sum(r.n_items for r in reported) == N_ITEMS


def test_a_candidate_without_scores_is_named_and_the_rest_still_runs(tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            (parent("A"), {TASK: PARENT_A}),
            (parent("B"), {TASK: PARENT_B}),
            (candidate("done"), {TASK: solved(range(0, 100))}),
        ],
        planned=(candidate("never-evaluated"),),
    )
    report = emergence(run)
    assert [r.candidate for r in report.rows] == ["done"]
    assert any("never-evaluated" in p and "no item scores" in p for p in report.problems)


def test_missing_items_are_left_out_with_a_note(tmp_path):
    partial = solved(range(0, 100))
    partial[:10] = np.nan
    run = write_run(
        tmp_path / "run",
        [(parent("A"), {TASK: PARENT_A}), (parent("B"), {TASK: PARENT_B}), (candidate("partial"), {TASK: partial})],
    )
    (row,) = emergence(run).rows
    assert row.n_items == N_ITEMS - 10 and "10 items lack a score" in row.note


def test_one_parent_only_gives_gains_and_tests_but_no_interpolation(tmp_path):
    child = solved(range(0, 100), range(140, 170))
    run = write_run(tmp_path / "run", [(parent("A"), {TASK: PARENT_A}), (candidate("child"), {TASK: child})])
    (row,) = emergence(run).rows
    assert row.gains.best_parent == row.gains.worse_parent == "A"
    assert row.gains.gain_over_best == row.gains.gain_over_mean == pytest.approx(0.15)
    assert np.isnan(row.gains.gain_over_interpolation) and "two parents" in row.note
    assert row.p_all_parents == pytest.approx(stats.binomtest(30, 30, 0.5, alternative="greater").pvalue)
    assert row.label == "emergent"


def test_a_run_without_item_data_still_gives_gains_from_the_aggregate_scores(known_run):
    store = ResultsStore.of_run(known_run)
    with store.transaction() as db:
        db.execute("DELETE FROM items")
    store.close()
    report = emergence(known_run)
    (row,) = rows_of(report, "plus30")
    assert row.gains.gain_over_best == pytest.approx(0.15) and row.label == "untested" and row.gained_vs_best is None
    assert any("no item-level results" in p and "paired tests cannot be computed" in p for p in report.problems)
    assert emergent_items(known_run) == []


def test_judge_criteria_are_graded_rows_tested_with_wilcoxon(tmp_path):
    rng = np.random.default_rng(5)
    grades = {"A": rng.integers(1, 6, 40).astype(float), "B": rng.integers(1, 6, 40).astype(float)}
    grades["child"] = np.clip(np.maximum(grades["A"], grades["B"]) + rng.choice([0, 1], 40), 1, 5)
    subjects = {"A": parent("A"), "B": parent("B"), "child": candidate("child")}
    run = write_run(
        tmp_path / "run", [(subjects[k], {TASK: solved(range(0, 100)), "judge_chat_j": grades[k]}) for k in subjects]
    )
    store = ResultsStore.of_run(run)
    with store.transaction() as db:  # the judge stage's own table, as it names its judge tasks
        db.execute("CREATE TABLE judgments (subject_id TEXT, rubric TEXT, judge TEXT, criterion TEXT, score REAL)")
        db.execute("INSERT INTO judgments VALUES ('candidate', 'chat', 'j', 'clarity', 4)")
    store.close()
    (row,) = [r for r in emergence(run).rows if r.source == "judge"]
    best = "A" if grades["A"].mean() >= grades["B"].mean() else "B"
    assert (row.task, row.test, row.gains.best_parent) == ("judge_chat_j", "wilcoxon", best)
    assert row.p_vs_best == pytest.approx(stats.wilcoxon(grades["child"], grades[best], alternative="greater").pvalue)


def test_emergent_items_count_and_show_every_answer(known_run):
    transitions = {t.candidate: t for t in emergent_items(known_run, examples=2)}
    plus30 = transitions["plus30"]
    assert (plus30.n_new, plus30.n_lost, plus30.split) == (30, 40, "all")
    first = plus30.new_examples[0]
    assert (first.doc_id, first.prompt, first.child_response) == (140, f"{TASK} question 140", "plus30 says 140")
    assert first.parent_responses == {"A": "A says 140", "B": "B says 140"}
    frame = examples_frame(list(transitions.values()))
    assert len(frame) == sum(len(t.new_examples) + len(t.lost_examples) for t in transitions.values())
    assert set(frame.change) == {"new", "lost"}


def test_bad_options_are_config_errors(known_run):
    for options in ({"alpha": 1.5}, {"correction": "bonferoni"}, {"split": "halves"}):
        with pytest.raises(ConfigError):
            emergence(known_run, **options)


def test_drivers_fit_matches_ols_and_partial_correlation_by_numpy():
    rng = np.random.default_rng(11)
    n = 40
    points = pd.DataFrame(
        {
            "kinship": rng.uniform(0.2, 0.9, n),
            "parent_gap": rng.uniform(0, 0.3, n),
            "parent_mean": rng.uniform(0.3, 0.7, n),
            "mix": rng.choice([0.25, 0.5, 0.75], n),
            "method": rng.choice(["linear", "slerp"], n),
        }
    )
    points["gain"] = 0.2 * points.kinship - 0.5 * points.parent_gap + rng.normal(0, 0.02, n)
    fit = fit_drivers(points)
    design = np.column_stack(
        [np.ones(n), points[["kinship", "parent_gap", "parent_mean", "mix"]], (points.method == "slerp").astype(float)]
    )
    estimates, *_ = np.linalg.lstsq(design, points.gain, rcond=None)
    assert [c.estimate for c in fit.coefficients] == pytest.approx(list(estimates))
    others = np.delete(design, 1, axis=1)
    residual = lambda y: y - others @ np.linalg.lstsq(others, y, rcond=None)[0]  # noqa: E731
    partial = np.corrcoef(residual(points.gain.to_numpy()), residual(points.kinship.to_numpy()))[0, 1]
    kinship = next(c for c in fit.coefficients if c.name == "kinship")
    assert kinship.partial_r == pytest.approx(partial)
    assert kinship.ci_low < 0.2 < kinship.ci_high and kinship.p_value < 0.001


def test_drivers_say_why_they_cannot_fit(tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            (parent("A"), {TASK: PARENT_A}),
            (parent("B"), {TASK: PARENT_B}),
            (candidate("quarter", mix=0.25), {TASK: PARENT_A}),
            (candidate("half", mix=0.5), {TASK: PARENT_B}),
        ],
    )
    fit = gain_drivers([run])
    assert fit.coefficients == ()
    assert any("no kinship table" in p for p in fit.problems)
    assert any("too few points to fit" in p for p in fit.problems)


def test_cli_prints_the_table_and_json(known_run):
    runner = CliRunner()
    text = runner.invoke(app, ["emergence", str(known_run), "--correction", "bh"])
    assert text.exit_code == 0, text.output
    assert "plus30" in text.output and "emergent" in text.output and "degraded" in text.output
    as_json = runner.invoke(app, ["emergence", str(known_run), "--json", "--split", "selection-reporting"])
    document = json.loads(as_json.output)
    assert {row["split"] for row in document["rows"]} == {"selection", "reporting"}
    bad = runner.invoke(app, ["emergence", str(known_run), "--alpha", "2"])
    assert bad.exit_code == 2 and "alpha" in bad.output


@pytest.mark.slow
def test_zoo_sweep_has_one_consistent_row_per_candidate_and_task(default_run, zoo):
    run = load_run(default_run[1].run_dir)  # the session's real default sweep of the zoo's two parents (conftest)
    frame = emergence(run).frame()
    rows = frame[frame.source == "lm-eval"]
    assert len(rows) == len(run.candidates()) * len(zoo.task_names())
    assert set(zip(rows.candidate_id, rows.task, strict=True)) == {
        (c, t) for c in run.candidates().id for t in zoo.task_names()
    }
    assert {
        "gain_over_best",
        "gain_over_mean",
        "gain_over_interpolation",
        "gained_vs_best",
        "lost_vs_best",
        "p_vs_best",
        "p_adjusted",
        "label",
        "split",
    } <= set(rows.columns)
    items_per_task = run.items.groupby("task").doc_hash.nunique()  # every subject answered every item
    assert (rows.n_items == rows.task.map(items_per_task)).all() and (rows.split == "all").all()
    # The paired counts against the best parent add up to the score difference on the same items.
    assert np.allclose(rows.gained_vs_best - rows.lost_vs_best, (rows.score - rows.best_parent_score) * rows.n_items)
    assert (rows.new_items <= rows.gained_vs_best).all() and (rows.lost_vs_best <= rows.lost_items).all()
    assert rows.p_adjusted.between(0, 1).all() and set(rows.label) <= {"emergent", "intermediate", "degraded"}
    # SLERP and the linear merge interpolate the two parents, so every row has its interpolation expectation.
    assert rows.gain_over_interpolation.notna().all()
    transitions = {(t.candidate_id, t.task): t.n_new for t in emergent_items(run)}
    assert transitions == {(r.candidate_id, r.task): r.new_items for r in rows.itertuples()}
