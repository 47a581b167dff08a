"""The judge's tables in a results store (scoring/judge_store.py): weighted scores and their column in an
older store, unscored judgments stored as NULL and left out of the means."""

from __future__ import annotations

import sqlite3

from test_judge_run import judge_all

from helpers import judge_server as js
from helpers.judged_runs import store_with_subjects
from mergescope.runs.directory import judging_meta


def test_weighted_scores_reach_the_store_and_an_older_store_gains_their_column(server, tmp_path, rubric):
    run_dir = tmp_path / "run"
    store = store_with_subjects(run_dir)
    with store.transaction() as db:  # the judgments table as runs judged before logprobs have it
        db.execute(
            "CREATE TABLE judgments (subject_id TEXT NOT NULL, rubric TEXT NOT NULL, rubric_version TEXT NOT NULL,"
            " question_id TEXT NOT NULL, criterion TEXT NOT NULL, judge TEXT NOT NULL, sample INTEGER NOT NULL,"
            " score REAL, parse_status TEXT NOT NULL, raw_reply TEXT NOT NULL, self_preference INTEGER NOT NULL,"
            " PRIMARY KEY (subject_id, rubric, question_id, criterion, judge, sample))"
        )
    assert judge_all(server, run_dir, rubric, store, [], logprobs=3) == []
    db = sqlite3.connect(run_dir / "results.sqlite")
    expected = dict(
        db.execute(
            "SELECT subject_id || '/' || question_id, avg(expected_score) FROM judgments "
            "GROUP BY subject_id, question_id"
        )
    )
    assert expected == {
        "parent-arith/add": 4.75,
        "parent-arith/sub": 1.25,
        "parent-facts/add": 1.25,
        "parent-facts/sub": 1.25,
        "cand1/add": 4.75,
        "cand1/sub": 4.75,
    }
    overall = dict(db.execute("SELECT subject_id, value FROM scores WHERE metric = 'overall_weighted'"))
    assert overall == {"parent-arith": 3.0, "parent-facts": 1.25, "cand1": 4.75}
    metrics = {m for (m,) in db.execute("SELECT DISTINCT metric FROM scores WHERE subject_id = 'cand1'")}
    assert metrics == {
        "overall",
        "correctness",
        "conciseness",
        "overall_weighted",
        "correctness_weighted",
        "conciseness_weighted",
    }
    assert judging_meta(store).logprobs == 3


def test_missing_scores_are_null_in_the_store_and_left_out_of_means(server, tmp_path, rubric):
    run_dir = tmp_path / "run"
    store = store_with_subjects(run_dir)
    # the parents' 4 grades, then cand1's "sub" (its "add" answer equals parent-arith's: served from the cache)
    server.queue(js.honest, js.honest, js.honest, js.honest, js.garbage)
    judge_all(server, run_dir, rubric, store, [], concurrency=1, pairwise=False)
    assert len(server.requests) == 5
    db = sqlite3.connect(run_dir / "results.sqlite")
    rows = db.execute(
        "SELECT question_id, score, parse_status, raw_reply FROM judgments WHERE subject_id = 'cand1'"
        " ORDER BY question_id, criterion"
    ).fetchall()
    assert rows[2][1:] == (None, "unparseable", "I am not able to grade this, sorry.")
    assert [r[1] for r in rows] == [5.0, 5.0, None, None]
    means = dict(db.execute("SELECT metric, n_items FROM scores WHERE subject_id = 'cand1'"))
    assert means == {"overall": 1, "correctness": 1, "conciseness": 1}
