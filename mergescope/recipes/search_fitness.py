"""A search's objective: per task, the primary metric on the selection half of its items, or on a seeded, fixed
subset of K of them (`--fitness-items`), read from the results store.

With a subset, a trial is evaluated by lm-eval on the subset's documents only (their doc ids, from a scored
reference model's items), so `FitnessItems.doc_ids` is what search.py hands the executor.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import pandas as pd

from mergescope.analysis.itemscores import SELECTION_HALF, item_halves
from mergescope.analysis.run_data import primary_metric
from mergescope.errors import ConfigError
from mergescope.runs.directory import SearchMeta
from mergescope.runs.store import ResultsStore


@dataclass(frozen=True)
class FitnessItems:
    """Per task, its primary metric and the items trials are scored on: selection-half items (a fixed subset)."""

    metrics: dict[str, str]
    items: dict[str, tuple[str, ...]]  # doc hashes
    full: dict[str, tuple[str, ...]]  # the whole selection half, for the finalists
    # lm-eval doc ids of `items`, what a trial is evaluated on; None: trials are evaluated on every item
    doc_ids: dict[str, tuple[int, ...]] | None = None


def fitness_items(store: ResultsStore, reference_id: str, tasks: tuple[str, ...], meta: SearchMeta) -> FitnessItems:
    """The items of a search's objective on the lm-eval `tasks` (never a judge's scores), read from a scored
    reference; ConfigError when K exceeds a task's selection half."""
    metrics, items, full, doc_ids = {}, {}, {}, {}
    for task in tasks:
        metric = primary_metric(
            [
                r["metric"]
                for r in store.query(
                    "SELECT metric FROM scores WHERE subject_id = ? AND task = ? ORDER BY rowid", reference_id, task
                )
            ]
        )
        ids_of = _doc_ids_by_hash(store, reference_id, task, metric)
        hashes = pd.Index(sorted(ids_of))
        selection = tuple(hashes[item_halves(hashes, meta.halves_seed).to_numpy() == SELECTION_HALF])
        if meta.fitness_items is not None and meta.fitness_items > len(selection):
            raise ConfigError(
                f"--fitness-items {meta.fitness_items}: task {task} has only {len(selection)} items in "
                "its selection half",
                hint=f"give at most {len(selection)}",
            )
        metrics[task], full[task] = metric, selection
        items[task] = selection if meta.fitness_items is None else _subset(selection, meta.fitness_items, meta.seed)
        doc_ids[task] = tuple(sorted(i for h in items[task] for i in ids_of[h]))
    return FitnessItems(metrics, items, full, None if meta.fitness_items is None else doc_ids)


def _doc_ids_by_hash(store: ResultsStore, subject_id: str, task: str, metric: str) -> dict[str, list[int]]:
    """A scored subject's items of `task`: doc hash -> lm-eval doc ids (a document repeated in the data has several)."""
    ids: dict[str, list[int]] = {}
    for row in store.query(
        "SELECT doc_hash, doc_id FROM items WHERE subject_id = ? AND task = ? AND metric = ? ORDER BY doc_id",
        subject_id,
        task,
        metric,
    ):
        ids.setdefault(row["doc_hash"], []).append(row["doc_id"])
    return ids


def _subset(hashes: tuple[str, ...], size: int, seed: int) -> tuple[str, ...]:
    """A seeded, fixed subset of `size` items: those whose seeded hash sorts first (the same for every trial)."""
    return tuple(sorted(hashes, key=lambda h: hashlib.sha256(f"fitness:{seed}:{h}".encode()).hexdigest())[:size])


def task_objectives(
    store: ResultsStore, subject_id: str, fitness: FitnessItems, items: dict[str, tuple[str, ...]] | None = None
) -> dict[str, float]:
    """Per task: the subject's mean primary metric over the fitness items (or `items`)."""
    chosen = items or fitness.items
    values = {}
    for task, metric in fitness.metrics.items():
        rows = store.query(
            "SELECT doc_hash, value FROM items WHERE subject_id = ? AND task = ? AND metric = ?",
            subject_id,
            task,
            metric,
        )
        by_hash = {row["doc_hash"]: row["value"] for row in rows}
        scored = [by_hash[h] for h in chosen[task] if h in by_hash]
        values[task] = sum(scored) / len(scored) if scored and len(scored) == len(chosen[task]) else math.nan
    return values
