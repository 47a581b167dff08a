"""A run's results store as pandas DataFrames, the form notebooks and plots work with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mergescope.runs.directory import RunMeta, SearchMeta, run_meta, search_meta
from mergescope.runs.store import FULL, SUBSET, ResultsStore

TRIALS_TABLE = "search_trials"  # the search's own table (search.py): it lists subset-scored trials too
FINALISTS_TABLE = "search_finalists"  # the search's finalists as it stands, by rank (recipes/search.py)


@dataclass(frozen=True)
class RunData:
    """A finished (or partly finished) run, read once from its store."""

    path: Path
    meta: RunMeta | None  # None for a store no sweep wrote
    subjects: pd.DataFrame  # one row per parent, base and candidate, in sweep order
    scores: pd.DataFrame  # one row per (subject_id, task, metric)
    items: pd.DataFrame  # one row per (subject_id, task, doc_id, metric)
    # Every other table of the store (kinship, judgments, ...) by table name, as written by its stage.
    tables: dict[str, pd.DataFrame]
    search: SearchMeta | None = None  # what the run's search was; None for a sweep
    # A search's trials scored on its fitness subset only (store.py's coverage): left out of every frame above
    # (their scores, items and stage rows too) so that no table, test or plot takes them for scored subjects.
    subset_scored: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def name(self) -> str:
        return self.path.name

    def parents(self) -> pd.DataFrame:
        return self.subjects[self.subjects.kind == "parent"]

    def candidates(self) -> pd.DataFrame:
        return self.subjects[self.subjects.kind == "candidate"]

    def primary_metric(self, task: str) -> str:
        """The metric a task is judged by: exact_match or acc where present, else the first one."""
        return primary_metric(list(self.scores[self.scores.task == task].metric.unique()))

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(self.scores.task))

    def wide_scores(self) -> pd.DataFrame:
        """One row per subject, one column per task (its primary metric), subjects in sweep order."""
        frames = []
        for task in self.tasks():
            rows = self.scores[(self.scores.task == task) & (self.scores.metric == self.primary_metric(task))]
            frames.append(rows.set_index("subject_id")["value"].rename(task))
        table = self.subjects.set_index("id")[["kind", "label", "method", "mix"]]
        return table.join(pd.concat(frames, axis=1) if frames else pd.DataFrame(index=table.index))


def primary_metric(metrics: list[str]) -> str:
    """Of a task's metrics (in stored order), the one it is judged by: exact_match or acc where present, else the
    first."""
    for preferred in ("exact_match", "acc", "acc_norm"):
        if preferred in metrics:
            return preferred
    return metrics[0]


def load_run(path: str | Path) -> RunData:
    """The run in directory `path` (the --out of a sweep) as DataFrames: its fully scored subjects (and planned
    ones); a search's subset-scored trials are in `subset_scored` and its trial table only."""
    path = Path(path)
    store = ResultsStore.of_run(path)
    try:
        subjects = pd.read_sql_query("SELECT * FROM subjects ORDER BY position", store.connection)
        subjects["parameters"] = subjects["parameters"].map(lambda text: json.loads(text or "{}"))
        subset = subjects.coverage == SUBSET
        scores, items = (
            pd.read_sql_query(
                f"SELECT t.* FROM {table} t JOIN subjects s ON s.id = t.subject_id WHERE s.coverage = ?",
                store.connection,
                params=(FULL,),
            )
            for table in ("scores", "items")
        )
        names = [row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {
            name: _without(
                pd.read_sql_query(f'SELECT * FROM "{name}"', store.connection),
                set(subjects.id[subset]) if name != TRIALS_TABLE else set(),
            )
            for name in names
            if name not in {"meta", "subjects", "scores", "items"}
        }
        return RunData(
            path=path,
            meta=run_meta(store),
            subjects=subjects[~subset].reset_index(drop=True),
            scores=scores,
            items=items,
            tables=tables,
            search=search_meta(store),
            subset_scored=subjects[subset].reset_index(drop=True),
        )
    finally:
        store.close()


def _without(table: pd.DataFrame, subject_ids: set[str]) -> pd.DataFrame:
    """A stage's table without the rows of `subject_ids` (by its subject_id or candidate_id column, if any)."""
    key = next((column for column in ("subject_id", "candidate_id") if column in table.columns), None)
    return table if key is None or not subject_ids else table[~table[key].isin(subject_ids)].reset_index(drop=True)
