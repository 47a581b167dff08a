"""The kinship table of a run's results store: a sweep stores its parents' kinship once, reports read it back.

The statistic itself is `kinship.py`'s; this module only writes its figures as rows and reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mergescope.analysis.kinship import METRICS, KinshipFigure, KinshipReport, Scope, kinship
from mergescope.analysis.run_data import load_run
from mergescope.runs.records import ParentSet
from mergescope.runs.store import ResultsStore, nan_to_null, null_to_nan

KINSHIP_SCHEMA = """
CREATE TABLE IF NOT EXISTS kinship (
    parent_set TEXT NOT NULL, scope TEXT NOT NULL, scope_name TEXT NOT NULL, model_a TEXT NOT NULL,
    model_b TEXT NOT NULL, pearson REAL, cosine REAL, abs_cosine REAL, euclidean REAL, n_params INTEGER NOT NULL,
    relative_to_base INTEGER NOT NULL, base TEXT,
    PRIMARY KEY (parent_set, scope, scope_name, model_a, model_b)
);
"""


def parent_set_key(paths: Sequence[str | Path], base: str | Path | None) -> str:
    """Returns the key of a set of compared models in the kinship table: their paths and the base's."""
    return json.dumps({"models": [str(p) for p in paths], "base": str(base) if base else None})


def save_kinship(store: ResultsStore, report: KinshipReport) -> None:
    """Writes the report's figures to the store's kinship table, replacing those of the same models;
    the base figures are the rows whose model_b is the base (relative_to_base 0)."""
    key = parent_set_key(report.paths, report.base)
    _create_table(store)
    with store.transaction() as db:
        db.execute("DELETE FROM kinship WHERE parent_set = ?", (key,))
        db.executemany(
            "INSERT INTO kinship VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    key,
                    f.scope,
                    f.scope_name,
                    f.model_a,
                    f.model_b,
                    nan_to_null(f.pearson),
                    nan_to_null(f.cosine),
                    nan_to_null(f.abs_cosine),
                    nan_to_null(f.euclidean),
                    f.n_params,
                    int(f.relative_to_base),
                    report.base,
                )
                for f in (*report.figures, *report.base_figures)
            ],
        )


def load_kinship(store: ResultsStore, parent_set: str | None = None) -> list[KinshipFigure]:
    """Returns the stored kinship figures (of one parent set, if given), in stored order."""
    _create_table(store)
    rows = store.query("SELECT * FROM kinship WHERE ? IS NULL OR parent_set = ? ORDER BY rowid", parent_set, parent_set)
    return [
        KinshipFigure(
            scope=row["scope"],
            scope_name=row["scope_name"],
            model_a=row["model_a"],
            model_b=row["model_b"],
            **{metric: null_to_nan(row[metric]) for metric in METRICS},
            n_params=row["n_params"],
            relative_to_base=bool(row["relative_to_base"]),
        )
        for row in rows
    ]


def record_kinship(store: ResultsStore, parents: ParentSet) -> None:
    """Computes and stores the parents' kinship unless the store already holds it."""
    paths = [p.path for p in parents.parents]
    base = parents.base.path if parents.base else None
    if not load_kinship(store, parent_set_key(paths, base)):
        # The sweep's names for the parents, so that kinship rows join the subjects table by label.
        # A sweep may merge unrelated models on purpose; the base figures stored with the rest show it.
        save_kinship(store, kinship(paths, base, names=[p.name for p in parents.parents], require_shared_base=False))


def kinship_frame(run: str | Path, scope: Scope | None = None) -> pd.DataFrame:
    """Returns the kinship table of a run as a DataFrame (one scope, if given); empty if it has none."""
    table = load_run(run).tables.get("kinship", pd.DataFrame(columns=["scope"]))
    return table[table.scope == scope].reset_index(drop=True) if scope else table


def _create_table(store: ResultsStore) -> None:
    with store.transaction() as db:
        db.executescript(KINSHIP_SCHEMA)
