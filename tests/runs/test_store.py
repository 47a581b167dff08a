"""The results store (store.py): subjects planned and recorded whole, meta rows, read-only reads, NULL <-> NaN,
subset-scored subjects apart from finished ones, older stores migrated."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from mergescope.errors import MergescopeError
from mergescope.runs.records import EvalSubject, Evaluation, ItemOutcome, TaskScore
from mergescope.runs.store import FULL, STORE_NAME, SUBSET, ResultsStore, nan_to_null, null_to_nan, read_meta

A = EvalSubject(id="parent-a", kind="parent", label="a", path=Path("/zoo/a"))
B = EvalSubject(id="parent-b", kind="parent", label="b", path=Path("/zoo/b"))


def evaluation(subject: EvalSubject, values: list[float]) -> Evaluation:
    items = tuple(
        ItemOutcome(
            subject_id=subject.id,
            task="t",
            doc_id=i,
            doc_hash=f"h{i}",
            metric="acc",
            value=v,
            prompt=f"q{i}",
            target="x",
            response="y",
        )
        for i, v in enumerate(values)
    )
    score = TaskScore(
        subject_id=subject.id, task="t", metric="acc", value=sum(values) / len(values), stderr=None, n_items=len(values)
    )
    return Evaluation((score,), items, 1.5)


def test_record_replaces_a_subjects_rows_and_marks_it_done(tmp_path):
    store = ResultsStore(tmp_path / STORE_NAME)
    store.plan([A, B])
    store.record(A, evaluation(A, [1, 0, 1, 1]))
    store.record(A, evaluation(A, [0, 0]))  # a rerun replaces, never adds
    assert store.finished_ids() == {"parent-a"}
    assert [(r.subject_id, r.value, r.n_items) for r in store.score_table()] == [("parent-a", 0.0, 2)]
    assert store.query("SELECT count(*) AS n FROM items")[0]["n"] == 2


def test_planning_again_keeps_finished_subjects_and_follows_the_new_order(tmp_path):
    store = ResultsStore(tmp_path / STORE_NAME)
    store.plan([A, B])
    store.record(A, evaluation(A, [1]))
    store.plan([B, A])
    rows = store.query("SELECT id, status FROM subjects ORDER BY position")
    assert [(r["id"], r["status"]) for r in rows] == [("parent-b", "planned"), ("parent-a", "done")]


def test_meta_rows_are_json_and_read_meta_does_not_write(tmp_path):
    store = ResultsStore(tmp_path / STORE_NAME)
    store.set_meta(tasks=["t"], limit=None, nested={"k": [1, 2]})
    store.close()
    before = (tmp_path / STORE_NAME).read_bytes()
    assert read_meta(tmp_path) == {"tasks": ["t"], "limit": None, "nested": {"k": [1, 2]}}
    assert (tmp_path / STORE_NAME).read_bytes() == before
    assert read_meta(tmp_path / "elsewhere") is None


def test_a_directory_without_a_store_is_not_a_run(tmp_path):
    with pytest.raises(MergescopeError, match="not a mergescope run"):
        ResultsStore.of_run(tmp_path)


def test_nan_is_stored_as_null_and_read_back_as_nan():
    assert nan_to_null(math.nan) is None and nan_to_null(0.25) == 0.25
    assert math.isnan(null_to_nan(None)) and null_to_nan(1) == 1.0


def test_a_subset_scored_subject_is_not_finished_until_scored_on_every_item(tmp_path):
    store = ResultsStore(tmp_path / STORE_NAME)
    store.plan([A])
    store.record(A, evaluation(A, [1, 0]), coverage=SUBSET)
    assert store.finished_ids() == set() and store.finished_ids(with_subsets=True) == {"parent-a"}
    assert store.score_table() == []  # its scores stand on a subset: not listed as the subject's scores
    store.record(A, evaluation(A, [1, 0, 1, 1]))  # scored on every item: its subset rows are replaced
    assert store.finished_ids() == {"parent-a"}
    assert store.query("SELECT coverage FROM subjects")[0]["coverage"] == FULL
    assert store.query("SELECT count(*) AS n FROM items")[0]["n"] == 4


def test_a_store_written_before_coverage_existed_reads_as_scored_on_every_item(tmp_path):
    old = sqlite3.connect(tmp_path / STORE_NAME)
    old.executescript(
        "CREATE TABLE subjects (id TEXT PRIMARY KEY, kind TEXT NOT NULL, label TEXT NOT NULL,"
        " method TEXT, parameters TEXT, seed INTEGER, mix REAL, mergekit_config TEXT, path TEXT,"
        " status TEXT NOT NULL DEFAULT 'planned', position INTEGER, merge_seconds REAL,"
        " eval_seconds REAL, finished_at TEXT);"
        "INSERT INTO subjects (id, kind, label, status) VALUES ('parent-a', 'parent', 'a', 'done');"
    )
    old.close()
    store = ResultsStore(tmp_path / STORE_NAME)
    assert store.finished_ids() == {"parent-a"}
    assert store.query("SELECT coverage FROM subjects")[0]["coverage"] == FULL
