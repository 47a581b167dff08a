"""A run's results store as pandas DataFrames, the form notebooks and plots work with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import pandas as pd

from mergescope.run_dir import RunMeta, SearchMeta, run_meta, search_meta
from mergescope.store import ResultsStore


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
    """Of a task's metrics (in stored order), the one it is judged by: exact_match or acc where present, else the first."""
    for preferred in ("exact_match", "acc", "acc_norm"):
        if preferred in metrics:
            return preferred
    return metrics[0]


def load_run(path: str | Path) -> RunData:
    """The run in directory `path` (the --out of a sweep) as DataFrames."""
    path = Path(path)
    store = ResultsStore.of_run(path)
    try:
        subjects = pd.read_sql_query("SELECT * FROM subjects ORDER BY position", store.connection)
        subjects["parameters"] = subjects["parameters"].map(lambda text: json.loads(text or "{}"))
        scores = pd.read_sql_query("SELECT * FROM scores", store.connection)
        items = pd.read_sql_query("SELECT * FROM items", store.connection)
        names = [row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {name: pd.read_sql_query(f'SELECT * FROM "{name}"', store.connection)
                  for name in names if name not in {"meta", "subjects", "scores", "items"}}
        return RunData(path=path, meta=run_meta(store), subjects=subjects, scores=scores, items=items, tables=tables,
                       search=search_meta(store))
    finally:
        store.close()
