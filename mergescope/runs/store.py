"""The SQLite results store of a run: the source of truth that reports and notebooks read.

Everything about one evaluated subject (its row, scores and per-item outcomes) is written in one
transaction, so a sweep killed at any point leaves either all of it or none of it.

A subject's `coverage` says which items its scores stand on: "all" (the task's items, up to the run's limit),
or "subset" (a search's fitness subset: a few items per task, search.py). Only fully scored subjects are
finished, reported or judged; a subset-scored one is a search trial's estimate until it is scored on all.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mergescope.errors import ConfigError, MergescopeError
from mergescope.faults import kill_point
from mergescope.runs.records import EvalSubject, Evaluation, ModelKind

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, label TEXT NOT NULL, method TEXT, parameters TEXT,
    seed INTEGER, mix REAL, mergekit_config TEXT, path TEXT, status TEXT NOT NULL DEFAULT 'planned',
    position INTEGER, merge_seconds REAL, eval_seconds REAL, finished_at TEXT, coverage TEXT NOT NULL DEFAULT 'all'
);
CREATE TABLE IF NOT EXISTS scores (
    subject_id TEXT NOT NULL REFERENCES subjects(id), task TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL NOT NULL, stderr REAL, n_items INTEGER, PRIMARY KEY (subject_id, task, metric)
);
CREATE TABLE IF NOT EXISTS items (
    subject_id TEXT NOT NULL REFERENCES subjects(id), task TEXT NOT NULL, doc_id INTEGER NOT NULL,
    metric TEXT NOT NULL, doc_hash TEXT NOT NULL, value REAL NOT NULL, prompt TEXT, target TEXT, response TEXT,
    PRIMARY KEY (subject_id, task, doc_id, metric)
);
"""

STORE_NAME = "results.sqlite"
Coverage = Literal["all", "subset"]  # which items a subject's scores stand on: every item, or a fitness subset
FULL: Coverage = "all"
SUBSET: Coverage = "subset"


@dataclass(frozen=True, kw_only=True)
class SubjectScore:
    """One score of a fully scored subject, beside what the subject is (a row of `score_table`)."""

    subject_id: str
    kind: ModelKind
    label: str
    method: str | None  # the merge method; the kind for a parent or the base
    parameters: dict[str, Any]  # the candidate's swept parameters ({} for a parent or the base)
    seed: int | None
    mix: float | None
    task: str
    metric: str
    value: float
    stderr: float | None
    n_items: int | None


class ResultsStore:
    """One run's results.sqlite, opened for reading and writing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.connection = sqlite3.connect(self.path, timeout=30)
            self.connection.row_factory = sqlite3.Row
            self.connection.executescript(SCHEMA)
            _add_coverage_column(self.connection)
        except sqlite3.Error as error:
            raise MergescopeError(
                f"cannot open the results store {self.path}: {error}", hint="check that the run directory is writable"
            ) from None

    @classmethod
    def of_run(cls, run_dir: Path) -> ResultsStore:
        """The store of an existing run directory."""
        path = Path(run_dir) / STORE_NAME
        if not path.is_file():
            raise ConfigError(
                f"{run_dir}: no {STORE_NAME} here, so this is not a mergescope run",
                hint="give the --out directory of a sweep",
            )
        return cls(path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connection:
            yield self.connection

    def close(self) -> None:
        self.connection.close()

    # -- writing ---------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, default=str)) for k, v in values.items()],
            )

    def plan(self, subjects: list[EvalSubject], first_position: int = 0) -> None:
        """Record the subjects a sweep will evaluate (in order from `first_position`), keeping finished ones as they
        are."""
        with self.transaction() as db:
            for position, subject in enumerate(subjects, start=first_position):
                db.execute(
                    "INSERT INTO subjects"
                    " (id, kind, label, method, parameters, seed, mix, mergekit_config, path, position)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET position = excluded.position",
                    _subject_row(subject) + (position,),
                )

    def record(
        self,
        subject: EvalSubject,
        evaluation: Evaluation,
        merge_seconds: float | None = None,
        coverage: Coverage = FULL,
    ) -> None:
        """Store a finished evaluation and mark its subject done with that `coverage`, all in one transaction
        (its earlier rows, a subset's too, are replaced)."""
        with self.transaction() as db:
            db.execute("DELETE FROM scores WHERE subject_id = ?", (subject.id,))
            db.execute("DELETE FROM items WHERE subject_id = ?", (subject.id,))
            db.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                [(s.subject_id, s.task, s.metric, s.value, s.stderr, s.n_items) for s in evaluation.scores],
            )
            db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (i.subject_id, i.task, i.doc_id, i.metric, i.doc_hash, i.value, i.prompt, i.target, i.response)
                    for i in evaluation.items
                ],
            )
            db.execute(
                "UPDATE subjects SET status = 'done', merge_seconds = ?, eval_seconds = ?,"
                " finished_at = datetime('now'), coverage = ? WHERE id = ?",
                (merge_seconds, evaluation.seconds, coverage, subject.id),
            )
            kill_point("store.before_commit")

    # -- reading ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {row["key"]: json.loads(row["value"]) for row in self.connection.execute("SELECT * FROM meta")}

    def finished_ids(self, with_subsets: bool = False) -> set[str]:
        """Subjects scored on every item (`with_subsets`: or on a fitness subset only)."""
        coverage = "" if with_subsets else f" AND coverage = '{FULL}'"
        rows = self.connection.execute(f"SELECT id FROM subjects WHERE status = 'done'{coverage}")
        return {row["id"] for row in rows}

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return list(self.connection.execute(sql, params))

    def score_table(self) -> list[SubjectScore]:
        """One row per (subject, task, metric) of fully scored subjects, in sweep order."""
        rows = self.query(
            "SELECT s.id AS subject_id, s.kind, s.label, s.method, s.parameters, s.seed, s.mix, c.task, c.metric,"
            " c.value, c.stderr, c.n_items FROM scores c JOIN subjects s ON s.id = c.subject_id WHERE s.coverage = ?"
            " ORDER BY s.position, c.task, c.metric",
            FULL,
        )
        return [SubjectScore(**{**dict(row), "parameters": json.loads(row["parameters"] or "{}")}) for row in rows]


def read_meta(run_dir: Path) -> dict[str, Any] | None:
    """A run's meta table read without writing anything (the store's file stays untouched); None without a store."""
    path = Path(run_dir) / STORE_NAME
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return {key: json.loads(value) for key, value in connection.execute("SELECT key, value FROM meta")}
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise MergescopeError(
            f"cannot read the results store {path}: {error}", hint="check that the run directory is readable"
        ) from None


def _add_coverage_column(connection: sqlite3.Connection) -> None:
    """Migrate a store written before subjects had a coverage: every subject it holds was scored on all items."""
    columns = {row["name"] for row in connection.execute("PRAGMA table_info(subjects)")}
    if "coverage" not in columns:
        with connection:
            connection.execute(f"ALTER TABLE subjects ADD COLUMN coverage TEXT NOT NULL DEFAULT '{FULL}'")


def _subject_row(subject: EvalSubject) -> tuple:
    candidate = subject.candidate
    return (
        subject.id,
        subject.kind,
        subject.label,
        candidate.method if candidate else subject.kind,
        candidate.parameters_json() if candidate else "{}",
        candidate.seed if candidate else None,
        candidate.mix if candidate else None,
        yaml.safe_dump(candidate.mergekit_config, sort_keys=False) if candidate else None,
        str(subject.path) if subject.path else None,
    )


def nan_to_null(value: float) -> float | None:
    """The value for a SQL REAL column (or JSON): NaN (an undefined figure) becomes NULL."""
    return None if math.isnan(value) else value


def null_to_nan(value: float | None) -> float:
    """A SQL REAL value as a float: NULL (an undefined figure) becomes NaN."""
    return math.nan if value is None else float(value)
