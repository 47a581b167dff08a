"""`mergescope search` on the zoo: every trial a stored candidate, objectives from selection-half items only,
reruns and larger budgets resume, bad input refused before any trial, the report's search section honest.

The tests that run a search are marked slow (the module's search takes ~25 s on a busy 2-core machine)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mergescope.analysis.run_analysis import AnalysisSettings
from mergescope.analysis.run_data import load_run
from mergescope.analysis.search import analyse_search
from mergescope.cli.app import app
from mergescope.merging.spec import SWEEPS_DIR
from mergescope.recipes.search import SearchSettings, search
from mergescope.recipes.sweep import SweepSettings
from mergescope.report import write_report

LIMIT = 10
BUDGET = 5
SPACE = SWEEPS_DIR / "space_lu2024.yaml"
runner = CliRunner()


def settings_for(zoo, out, **search_options) -> SearchSettings:
    run = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        base=str(zoo.model_path("base")),
        out=out,
        backend="hf",
        limit=LIMIT,
        progress=False,
    )
    return SearchSettings(**{"run": run, "space": SPACE, "budget": BUDGET, "seed": 0, **search_options})


@pytest.fixture(scope="module")
def searched(zoo, tmp_path_factory):
    """A TPE search of the lu2024 space over arith x facts, BUDGET trials, run once for this module."""
    settings = settings_for(zoo, tmp_path_factory.mktemp("search") / "run")
    return settings, search(settings)


# Each trial with its finalist mark and whole-selection-half objective (NULL unless a finalist).
TRIALS = (
    "(SELECT t.*, f.rank IS NOT NULL AS finalist, f.rank AS finalist_rank, f.full_objective"
    " FROM search_trials t LEFT JOIN search_finalists f USING (number))"
)


def rows(run_dir, sql: str, *params):
    db = sqlite3.connect(run_dir / "results.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute(sql, params)]
    finally:
        db.close()


@pytest.mark.slow
def test_every_trial_is_a_stored_candidate_with_its_number_sampler_and_objective(searched):
    _, result = searched
    trials = rows(result.run_dir, "SELECT * FROM search_trials ORDER BY number")
    assert [t["number"] for t in trials] == list(range(BUDGET)) and result.n_trials == BUDGET
    candidates = {r["id"]: r for r in rows(result.run_dir, "SELECT * FROM subjects WHERE kind = 'candidate'")}
    for trial in trials:
        subject = candidates[trial["subject_id"]]
        assert subject["status"] == "done" and trial["sampler"] == "tpe"
        assert json.loads(subject["parameters"]) == json.loads(trial["params"])  # the drawn values, by name
        assert trial["objective"] is not None
    # seven searched gradient points, each drawn anew: five distinct merges
    assert len({t["subject_id"] for t in trials}) == BUDGET == result.n_evaluated


def _selection_half(doc_hash: str) -> bool:
    """Half A of the report's split, recomputed here from its definition (seed 0, first digest byte < 128)."""
    return hashlib.sha256(f"0:{doc_hash}".encode()).digest()[0] < 128


@pytest.mark.slow
def test_the_objective_is_the_mean_over_tasks_of_selection_half_items_only(searched):
    _, result = searched
    for trial in rows(result.run_dir, "SELECT * FROM search_trials"):
        items = rows(
            result.run_dir,
            "SELECT task, doc_hash, value FROM items WHERE subject_id = ? AND metric LIKE 'exact_match%'",
            trial["subject_id"],
        )
        tasks = sorted({i["task"] for i in items})
        per_task = {
            t: np.mean([i["value"] for i in items if i["task"] == t and _selection_half(i["doc_hash"])]) for t in tasks
        }
        assert json.loads(trial["task_objectives"]) == pytest.approx(per_task)
        assert trial["objective"] == pytest.approx(np.mean(list(per_task.values())))
        assert len(tasks) >= 3 and 0 < sum(_selection_half(i["doc_hash"]) for i in items) < len(items)


@pytest.mark.slow
def test_a_rerun_costs_nothing_and_a_larger_budget_only_adds_trials(searched, tmp_path):
    settings, first = searched
    copy = tmp_path / "run"
    shutil.copytree(first.run_dir, copy)
    settings = dataclasses.replace(settings, run=dataclasses.replace(settings.run, out=copy))
    before = rows(copy, "SELECT * FROM search_trials ORDER BY number")
    finalists_before = rows(copy, "SELECT * FROM search_finalists ORDER BY rank")
    again = search(settings)
    assert (again.n_trials, again.n_evaluated) == (BUDGET, 0)
    assert rows(copy, "SELECT * FROM search_trials ORDER BY number") == before
    assert rows(copy, "SELECT * FROM search_finalists ORDER BY rank") == finalists_before
    more = search(dataclasses.replace(settings, budget=BUDGET + 2))
    assert (more.n_trials, more.n_evaluated) == (BUDGET + 2, 2)
    # every trial told before is stored exactly as it was: a later trial never rewrites an earlier one's row
    assert rows(copy, "SELECT * FROM search_trials WHERE number < ? ORDER BY number", BUDGET) == before
    # the finalists are the search's choice as it stands: the best objectives, the earlier trial first on ties
    trials = rows(copy, "SELECT number, objective FROM search_trials ORDER BY number")
    ranked = sorted(trials, key=lambda trial: (-trial["objective"], trial["number"]))[: settings.finalists]
    assert [f["number"] for f in rows(copy, "SELECT number FROM search_finalists ORDER BY rank")] == [
        trial["number"] for trial in ranked
    ]


def test_tied_trials_rank_by_number_and_added_ties_never_relabel_earlier_finalists(tmp_path):
    """Finalists among tied objectives (a search where most trials score 0.0) are the earliest trials, and trials
    added with the same objective leave them where they are; a better trial added later takes its place first."""
    from mergescope.recipes.search import TRIALS_SCHEMA, finalist_rows
    from mergescope.runs.directory import SearchMeta
    from mergescope.runs.store import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    store.connection.executescript(TRIALS_SCHEMA)
    meta = SearchMeta.model_construct(objective="mean", finalists=3)

    def tell(number: int, objective: float) -> list[int]:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO search_trials (number, subject_id, sampler, block, params, objective,"
                " task_objectives, n_items) VALUES (?, ?, 'tpe', 'b', '{}', ?, ?, 1)",
                (number, f"s{number}", objective, json.dumps({"t": objective})),
            )
        return [row["number"] for row in finalist_rows(store, meta)]

    for number in range(5):
        finalists = tell(number, 0.0)
    assert finalists == [0, 1, 2]
    assert tell(5, 0.0) == [0, 1, 2] and tell(6, 0.0) == [0, 1, 2]  # added ties relabel nothing
    assert tell(7, 0.25) == [7, 0, 1]  # a better trial ranks first; of the tied, the latest drops out
    store.close()


@pytest.mark.slow
def test_a_repeated_config_is_one_candidate(zoo, tmp_path):
    """A space of two choices searched for four trials merges and scores at most two candidates."""
    space = tmp_path / "space.yaml"
    space.write_text("name: two\nspace:\n  - method: slerp\n    parameters: {t: {grid: [0.25, 0.75]}}\n")
    result = search(dataclasses.replace(settings_for(zoo, tmp_path / "run"), space=space, budget=4, sampler="random"))
    trials = rows(result.run_dir, "SELECT subject_id FROM search_trials")
    assert len(trials) == 4 and result.n_evaluated == len({t["subject_id"] for t in trials}) <= 2


@pytest.mark.slow
def test_the_report_shows_the_search_and_its_plots(searched, tmp_path):
    _, result = searched
    html = write_report(result.run_dir, tmp_path / "report").read_text()
    assert '<section id="search">' in html and f"{BUDGET} trials searched" in html
    assert 'id="search-reported"' in html
    for plot in ("search_history", "search_parameters"):
        assert f'id="plot-{plot}"' in html
    assert 'id="plot-search_pareto"' not in html  # a single-objective search has no front


def _reported(run_dir) -> tuple[int, pd.DataFrame]:
    """The chosen trial and its reported rows, as the report's analysis computes them (the run's name aside)."""
    analysis = analyse_search(load_run(run_dir), seed=AnalysisSettings().seed, alpha=AnalysisSettings().alpha)
    return analysis.chosen, analysis.reported.frame().drop(columns=["run"])


def _flip_items(run_dir, subject_id: str, in_selection_half: bool) -> int:
    db = sqlite3.connect(run_dir / "results.sqlite")
    hashes = [
        h
        for (h,) in db.execute("SELECT DISTINCT doc_hash FROM items WHERE subject_id = ?", (subject_id,))
        if _selection_half(h) == in_selection_half
    ]
    with db:
        db.executemany(
            "UPDATE items SET value = 1 - value WHERE subject_id = ? AND doc_hash = ?",
            [(subject_id, h) for h in hashes],
        )
    db.close()
    return len(hashes)


@pytest.mark.slow
def test_the_chosen_trials_reported_figures_come_from_the_reporting_half_only(searched, tmp_path):
    _, result = searched
    chosen, reported = _reported(result.run_dir)
    best = max(rows(result.run_dir, "SELECT number, objective FROM search_trials"), key=lambda t: t["objective"])
    assert chosen == best["number"] and len(reported) >= 3
    assert set(reported.split) == {"reporting"} and set(reported.half) == {"B"}
    chosen_id = rows(result.run_dir, "SELECT subject_id FROM search_trials WHERE number = ?", chosen)[0]["subject_id"]
    selection_changed = tmp_path / "selection"
    shutil.copytree(result.run_dir, selection_changed, ignore=shutil.ignore_patterns("merges"))
    assert _flip_items(selection_changed, chosen_id, in_selection_half=True) > 0
    chosen_again, reported_again = _reported(selection_changed)
    assert chosen_again == chosen
    pd.testing.assert_frame_equal(reported_again, reported)
    reporting_changed = tmp_path / "reporting"  # the test has teeth: the reporting half does move them
    shutil.copytree(result.run_dir, reporting_changed, ignore=shutil.ignore_patterns("merges"))
    _flip_items(reporting_changed, chosen_id, in_selection_half=False)
    assert list(_reported(reporting_changed)[1].score) != list(reported.score)


# -- bad input: one line, exit 2, before any trial ---------------------------------------------------------


def _search_args(zoo, out, *extra) -> list[str]:
    return [
        "search",
        "--parents",
        str(zoo.model_path("arith")),
        str(zoo.model_path("facts")),
        "--base",
        str(zoo.model_path("base")),
        "--backend",
        "hf",
        "--limit",
        str(LIMIT),
        "--out",
        str(out),
        "--space",
        str(SPACE),
        "--budget",
        str(BUDGET),
        *extra,
    ]


def _refused(args: list[str], *fragments: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.parametrize(
    "space_text, fragments",
    [
        ("name: s\nspace:\n  - method: slerp\n    parameters: {t: {low: 0.9, high: 0.1}}\n", ("low 0.9 > high 0.1",)),
        (
            "name: s\nspace:\n  - method: linear\n    per_parent: {wieght: {low: 0, high: 1}}\n",
            ("linear has no parameter 'wieght'", "did you mean 'weight'"),
        ),
    ],
)
def test_a_bad_space_is_refused_before_any_work(zoo, tmp_path, space_text, fragments):
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    args = _search_args(zoo, tmp_path / "run")
    args[args.index("--space") + 1] = str(space)
    _refused(args, *fragments)
    assert not (tmp_path / "run").exists()


def test_bad_budget_sampler_and_objective_are_refused(zoo, tmp_path):
    out = tmp_path / "run"
    budget = _search_args(zoo, out)
    budget[budget.index("--budget") + 1] = "0"
    _refused(budget, "--budget 0")
    categorical = tmp_path / "categorical.yaml"
    categorical.write_text("name: c\nspace:\n  - method: slerp\n    parameters: {t: {grid: [0.2, 0.8]}}\n")
    cmaes = _search_args(zoo, out, "--sampler", "cmaes")
    cmaes[cmaes.index("--space") + 1] = str(categorical)
    _refused(cmaes, "only categorical parameters")
    _refused(_search_args(zoo, out, "--sampler", "cmaes", "--objective", "pareto"), "one objective")
    _refused(_search_args(zoo, out, "--sampler", "tpee"), "did you mean 'tpe'")
    assert not out.exists()


@pytest.mark.slow
def test_a_resumed_search_with_another_seed_or_space_or_too_many_fitness_items_is_refused(searched, zoo, tmp_path):
    _, result = searched
    copy = tmp_path / "run"
    shutil.copytree(result.run_dir, copy)
    before = rows(copy, "SELECT * FROM search_trials ORDER BY number")
    _refused(_search_args(zoo, copy, "--seed", "1"), "holds another search", "seed 0 (now 1)")
    other = _search_args(zoo, copy)
    other[other.index("--space") + 1] = str(SWEEPS_DIR / "space_methods.yaml")
    _refused(other, "holds another search", "space_digest")
    _refused(_search_args(zoo, tmp_path / "fresh", "--fitness-items", "999"), "--fitness-items 999", "selection half")
    assert "search" not in {r["key"] for r in rows(tmp_path / "fresh", "SELECT key FROM meta")}  # not bound to 999
    assert rows(copy, "SELECT * FROM search_trials ORDER BY number") == before
    assert rows(tmp_path / "fresh", "SELECT count(*) AS n FROM subjects WHERE kind = 'candidate'") == [{"n": 0}]


# -- a fitness subset and a Pareto objective ---------------------------------------------------------------

FITNESS_ITEMS, FINALISTS = 3, 2


@pytest.fixture(scope="module")
def pareto_searched(zoo, tmp_path_factory):
    """An NSGA-II search with one objective per task, trials scored on FITNESS_ITEMS selection-half items per task."""
    settings = settings_for(
        zoo,
        tmp_path_factory.mktemp("pareto") / "run",
        budget=4,
        sampler="nsga2",
        objective="pareto",
        fitness_items=FITNESS_ITEMS,
        finalists=FINALISTS,
    )
    return settings, search(settings)


def _subset(hashes: list[str]) -> list[str]:
    """The fitness subset by its definition: the items whose seeded (seed 0) SHA-256 sorts first."""
    return sorted(hashes, key=lambda h: hashlib.sha256(f"fitness:0:{h}".encode()).hexdigest())[:FITNESS_ITEMS]


def _selection_means(run_dir, subject_id: str, subset: bool) -> dict[str, float]:
    items = rows(
        run_dir,
        "SELECT task, doc_hash, value FROM items WHERE subject_id = ? AND metric LIKE 'exact_match%'",
        subject_id,
    )
    means = {}
    for task in sorted({i["task"] for i in items}):
        values = {i["doc_hash"]: i["value"] for i in items if i["task"] == task and _selection_half(i["doc_hash"])}
        chosen = _subset(sorted(values)) if subset else list(values)
        means[task] = np.mean([values[h] for h in chosen])
    return means


@pytest.mark.slow
def test_trials_are_scored_on_the_fitness_subset_and_finalists_on_the_whole_selection_half(pareto_searched):
    _, result = pareto_searched
    trials = rows(result.run_dir, f"SELECT * FROM {TRIALS} ORDER BY number")
    for trial in trials:
        expected = _selection_means(result.run_dir, trial["subject_id"], subset=True)
        assert json.loads(trial["task_objectives"]) == pytest.approx(expected)
        assert trial["n_items"] == FITNESS_ITEMS * len(expected)
    finalists = [t for t in trials if t["finalist"]]
    assert 1 <= len(finalists) <= FINALISTS
    for trial in finalists:
        full = _selection_means(result.run_dir, trial["subject_id"], subset=False)
        assert trial["full_objective"] == pytest.approx(np.mean(list(full.values())))
    assert all(t["full_objective"] is None for t in trials if not t["finalist"])


def _items_per_task(run_dir, subject_id: str) -> dict[str, int]:
    return {
        r["task"]: r["n"]
        for r in rows(
            run_dir,
            "SELECT task, count(DISTINCT doc_id) AS n FROM items WHERE subject_id = ? GROUP BY task",
            subject_id,
        )
    }


@pytest.mark.slow
def test_only_the_finalists_are_evaluated_on_every_item(pareto_searched):
    _, result = pareto_searched
    trials = rows(result.run_dir, f"SELECT subject_id, finalist FROM {TRIALS}")
    finalists = {t["subject_id"] for t in trials if t["finalist"]}
    coverage = {r["id"]: r["coverage"] for r in rows(result.run_dir, "SELECT id, coverage FROM subjects")}
    assert finalists and len({t["subject_id"] for t in trials} - finalists) >= 1
    for trial in trials:
        counts = _items_per_task(result.run_dir, trial["subject_id"])
        assert len(counts) == 4
        if trial["subject_id"] in finalists:
            assert coverage[trial["subject_id"]] == "all" and set(counts.values()) == {LIMIT}
        else:  # lm-eval scored the fitness subset only: K items per task
            assert coverage[trial["subject_id"]] == "subset" and set(counts.values()) == {FITNESS_ITEMS}
    assert result.n_rescored == len(finalists)


@pytest.mark.slow
def test_subset_scored_trials_are_told_and_report_what_trials_scored_on_every_item_gave(pareto_searched, tmp_path):
    """Scoring every subset-scored trial on every item (what each trial cost before subsets were evaluated alone)
    leaves the told objectives, the chosen trial and its reporting-half figures as they are; until then the report
    shows those trials in the search section only."""
    from mergescope.recipes.search import plan_search
    from mergescope.recipes.sweep import evaluate_subjects
    from mergescope.runs.directory import LockedRun, stored_subject

    settings, result = pareto_searched
    subset_ids = {r["id"] for r in rows(result.run_dir, "SELECT id FROM subjects WHERE coverage = 'subset'")}
    run = load_run(result.run_dir)
    assert subset_ids and not subset_ids & (
        set(run.subjects.id) | set(run.items.subject_id) | set(run.scores.subject_id)
    )
    assert len(analyse_search(run, seed=0, alpha=0.05).trials) == 4  # the search section lists every trial
    chosen, reported = _reported(result.run_dir)
    everything = tmp_path / "every-item"
    shutil.copytree(result.run_dir, everything)
    plan = plan_search(dataclasses.replace(settings, run=dataclasses.replace(settings.run, out=everything)))
    with LockedRun(everything) as store:
        subjects = [
            stored_subject(row, everything) for row in store.query("SELECT * FROM subjects") if row["id"] in subset_ids
        ]
        evaluate_subjects(subjects, store, plan.run, settings.run)
    for trial in rows(everything, "SELECT * FROM search_trials"):
        assert json.loads(trial["task_objectives"]) == _selection_means(everything, trial["subject_id"], subset=True)
    chosen_again, reported_again = _reported(everything)
    assert chosen_again == chosen
    pd.testing.assert_frame_equal(reported_again, reported)


@pytest.mark.slow
def test_a_pareto_search_reports_its_non_dominated_trials(pareto_searched, tmp_path):
    _, result = pareto_searched
    trials = rows(result.run_dir, f"SELECT * FROM {TRIALS} ORDER BY number")
    objectives = [list(json.loads(t["task_objectives"]).values()) for t in trials]
    dominated = [
        any(all(o >= s for o, s in zip(other, own, strict=True)) and other != own for other in objectives)
        for own in objectives
    ]
    analysis = analyse_search(load_run(result.run_dir), seed=0, alpha=0.05)
    assert list(analysis.trials.non_dominated) == [not d for d in dominated]
    finalists = [t for t in trials if t["finalist"]]
    assert all(not dominated[t["number"]] for t in finalists)
    assert analysis.chosen == max(finalists, key=lambda t: (t["full_objective"], -t["number"]))["number"]
    html = write_report(result.run_dir, tmp_path / "report").read_text()
    for element in ('id="search-pareto"', 'id="search-finalists"', 'id="plot-search_pareto"', 'id="search-reported"'):
        assert element in html
    subset_labels = [r["label"] for r in rows(result.run_dir, "SELECT label FROM subjects WHERE coverage = 'subset'")]
    assert subset_labels and not [label for label in subset_labels if label in html]  # in no candidate table or plot


@pytest.mark.slow
@pytest.mark.parametrize("fitness", [{}, {"fitness_items": 2, "finalists": 1}], ids=["every-item", "fitness-subset"])
def test_a_judged_search_judges_its_fully_scored_trials_and_ranks_on_lm_eval_tasks_only(zoo, tmp_path, fitness):
    """The sweep's judge stage runs on every trial scored on every item (with a fitness subset: the finalists
    only); the objective still reads only the lm-eval tasks' items."""
    from helpers.judge_server import JudgeServer
    from mergescope.scoring.judge_run import JudgeSettings

    rubric = "zoo_skills"  # a shipped rubric, by name
    with JudgeServer() as server:
        judge = JudgeSettings(url=server.url, model="stub-judge", rubrics=(str(rubric),))
        settings = settings_for(zoo, tmp_path / "run", budget=2, **fitness)
        settings = dataclasses.replace(
            settings, run=dataclasses.replace(settings.run, judge=judge, tasks=["zoo_arith"])
        )
        result = search(settings)
    assert result.judging_incomplete == []
    trials = rows(result.run_dir, f"SELECT subject_id, task_objectives, finalist FROM {TRIALS}")
    judged = {r["subject_id"] for r in rows(result.run_dir, "SELECT DISTINCT subject_id FROM judgments")}
    fully_scored = {t["subject_id"] for t in trials if t["finalist"] or not fitness}
    assert len(fully_scored) == (1 if fitness else 2) and {t["subject_id"] for t in trials} & judged == fully_scored
    assert all(list(json.loads(t["task_objectives"])) == ["zoo_arith"] for t in trials)


@pytest.mark.slow
def test_a_replay_that_proposes_other_trials_than_the_stored_ones_is_refused(searched, zoo, tmp_path):
    """Stored trials that the seed does not propose (another Optuna, or a damaged store) are not mixed in."""
    _, first = searched
    copy = tmp_path / "run"
    shutil.copytree(first.run_dir, copy)
    db = sqlite3.connect(copy / "results.sqlite")
    with db:
        db.execute("UPDATE search_trials SET params = '{\"t[rest]\": 0.5}' WHERE number = 2")
    db.close()
    result = runner.invoke(app, _search_args(zoo, copy))
    assert result.exit_code == 1
    assert "trial 2 replays differently from the stored one" in result.output
    assert rows(copy, "SELECT count(*) AS n FROM search_trials") == [{"n": BUDGET}]
