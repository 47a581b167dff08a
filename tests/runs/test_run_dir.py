"""The run directory (runs/directory.py): the lock, partial merges, provenance records old and new, stored subjects."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from helpers import fake_runs
from mergescope.errors import ConfigError, MergescopeError
from mergescope.runs.directory import (
    JudgingMeta,
    LockedRun,
    RunMeta,
    find_candidate,
    find_subject,
    judging_meta,
    merges_dir,
    read_run_meta,
    run_meta,
    stored_subjects,
    write_judging_meta,
    write_run_meta,
)
from mergescope.runs.records import Candidate, EvalSubject, Evaluation
from mergescope.runs.store import STORE_NAME, ResultsStore

PARENTS = ["/zoo/models/arith", "/zoo/models/facts"]
JUDGING = JudgingMeta(
    judge_model="judge",
    judge_url="http://localhost:1/v1",
    samples=2,
    temperature=0.5,
    pairwise=True,
    logprobs=3,
    rubrics=("mini v1",),
    rubric_sources=("/judges/mini.yaml",),
    complete=False,
    incomplete_subjects=("cand1",),
    last_error="HTTP 500",
)
# A meta table as mergescope wrote it before executors and probability-weighted judging existed: one JSON
# value per key, no "executor", and a "judging" mapping without "logprobs".
OLD_LAYOUT = {
    "spec": {"name": "default", "dtype": "float32", "methods": [{"method": "linear"}]},
    "spec_source": None,
    "parents": PARENTS,
    "parent_names": ["arith", "facts"],
    "base": "/zoo/models/base",
    "architecture": "LlamaForCausalLM",
    "tasks": ["zoo_arith", "zoo_facts"],
    "limit": 20,
    "backend": "hf",
    "versions": {"mergescope": "0.1.0", "torch": "2.5.1"},
    "machine": "x86_64 Linux python 3.11.9",
    "updated_at": "2026-10-01T09:00:00+00:00",
    "judging": {
        "judge_model": "judge",
        "judge_url": "http://localhost:1/v1",
        "samples": 1,
        "temperature": 0.0,
        "pairwise": True,
        "rubrics": ["mini v1"],
        "rubric_sources": ["/judges/mini.yaml"],
        "complete": True,
        "incomplete_subjects": [],
        "last_error": None,
    },
}


def raw_store(run_dir: Path, meta: dict) -> ResultsStore:
    """A store whose meta table holds `meta` written row by row, as the code that predates RunMeta wrote it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(run_dir / STORE_NAME)
    with store.transaction() as db:
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    return store


# -- the lock and partial merges ------------------------------------------------------------------------------
def test_a_locked_run_refuses_a_second_writer_and_removes_only_partial_merges(tmp_path):
    merges = merges_dir(tmp_path / "run")
    (merges / "abc.partial-123").mkdir(parents=True)  # left by a killed merge
    (merges / "abc").mkdir()  # a finished merge
    with LockedRun(tmp_path / "run") as store:
        assert sorted(p.name for p in merges.iterdir()) == ["abc"]
        assert store.path == tmp_path / "run" / STORE_NAME
        with pytest.raises(MergescopeError, match="another sweep is writing this run"):
            LockedRun(tmp_path / "run").__enter__()
    with LockedRun(tmp_path / "run"):  # released on exit
        pass


def test_an_unwritable_run_directory_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(MergescopeError, match="cannot write the run directory"):
        LockedRun(tmp_path / "file" / "run").__enter__()


# -- provenance -------------------------------------------------------------------------------------------------
def test_run_and_judging_meta_round_trip_through_the_store(tmp_path):
    meta = fake_runs.run_meta(PARENTS, executor="ray", limit=5)
    with LockedRun(tmp_path) as store:
        assert run_meta(store) is None and judging_meta(store) is None
        write_run_meta(store, meta)
        write_judging_meta(store, JUDGING)
        assert run_meta(store) == meta and judging_meta(store) == JUDGING
    before = (tmp_path / STORE_NAME).read_bytes()
    assert read_run_meta(tmp_path) == meta
    assert (tmp_path / STORE_NAME).read_bytes() == before  # read-only
    with pytest.raises(ValidationError, match="frozen"):
        meta.parents = ()


def test_the_store_keeps_one_json_row_per_field_as_before(tmp_path):
    """SQL readers of `meta` (and older mergescope versions) see the layout they always saw."""
    with LockedRun(tmp_path) as store:
        write_run_meta(store, fake_runs.run_meta(PARENTS))
        write_judging_meta(store, JUDGING)
    rows = dict(sqlite3.connect(tmp_path / STORE_NAME).execute("SELECT key, value FROM meta"))
    assert json.loads(rows["parents"]) == PARENTS and json.loads(rows["executor"]) == "local"
    assert json.loads(rows["judging"])["incomplete_subjects"] == ["cand1"]
    assert set(rows) == {*RunMeta.model_fields, "judging"}


def test_an_old_layout_store_still_reads(tmp_path):
    raw_store(tmp_path, {**OLD_LAYOUT, "some_later_key": 1}).close()
    meta = read_run_meta(tmp_path)
    assert meta.parents == tuple(PARENTS) and meta.tasks == ("zoo_arith", "zoo_facts") and meta.limit == 20
    assert meta.executor == "local"  # before executors, every subject ran in-process
    assert meta.spec == OLD_LAYOUT["spec"] and meta.versions["torch"] == "2.5.1"
    store = ResultsStore.of_run(tmp_path)
    judged = judging_meta(store)
    assert judged.logprobs == 0 and judged.complete and judged.rubric_sources == ("/judges/mini.yaml",)


def test_damaged_metadata_is_one_line_naming_the_field(tmp_path):
    raw_store(tmp_path, {key: value for key, value in OLD_LAYOUT.items() if key != "parents"}).close()
    with pytest.raises(MergescopeError, match=r"results.sqlite \(run metadata\): parents: Field required"):
        read_run_meta(tmp_path)


def test_no_store_and_an_empty_store_have_no_provenance(tmp_path):
    assert read_run_meta(tmp_path) is None
    ResultsStore(tmp_path / STORE_NAME).close()
    assert read_run_meta(tmp_path) is None


# -- stored subjects --------------------------------------------------------------------------------------------
CANDIDATE = Candidate(
    id="abc123",
    method="linear",
    label="linear w=0.5",
    mergekit_config={"merge_method": "linear", "dtype": "float32"},
    parameters={"weight": 0.5},
    seed=None,
    mix=0.5,
)
SUBJECTS = [
    EvalSubject(id="parent-arith", kind="parent", label="arith", path=Path(PARENTS[0])),
    EvalSubject(id="abc123", kind="candidate", label="linear w=0.5", candidate=CANDIDATE),
    EvalSubject(
        id="abd456",
        kind="candidate",
        label="other",
        candidate=Candidate(
            id="abd456", method="slerp", label="other", mergekit_config={"merge_method": "slerp"}, seed=3
        ),
    ),
]


@pytest.fixture
def run(tmp_path) -> Path:
    """A run whose parent and first candidate are done; the second candidate is planned only."""
    store = ResultsStore(tmp_path / STORE_NAME)
    store.plan(SUBJECTS)
    for subject in SUBJECTS[:2]:
        store.record(subject, Evaluation((), (), 0.0))
    store.close()
    return tmp_path


def test_stored_subjects_are_the_records_that_were_planned_with_merge_paths(run):
    store = ResultsStore.of_run(run)
    found = stored_subjects(store, run)
    store.close()
    assert [s.id for s in found] == ["parent-arith", "abc123"]  # finished ones, in sweep order
    assert found[0] == SUBJECTS[0]
    assert found[1].candidate == CANDIDATE and found[1].path == run / "merges" / "abc123"


def test_a_subject_is_found_by_exact_id_and_a_candidate_by_prefix(run):
    assert find_subject(run, "abd456").candidate.seed == 3  # planned, not finished: still servable
    with pytest.raises(ConfigError, match="has no subject 'abc12'") as caught:
        find_subject(run, "abc12")
    assert "abc123" in caught.value.one_line()
    assert find_candidate(run, "abc1") == CANDIDATE
    with pytest.raises(ConfigError, match="2 candidates with id 'ab'"):
        find_candidate(run, "ab")
    with pytest.raises(ConfigError, match="no candidate with id 'parent'"):
        find_candidate(run, "parent")
    with pytest.raises(ConfigError, match="no candidate with id 'abd457'") as caught:
        find_candidate(run, "abd457")
    assert "did you mean 'abd456'" in caught.value.one_line()
