"""Per-item score tables for paired comparisons, from any score source, and the item splits.

A *score source* turns a run into `ItemScores`: one table per measure (a task's primary lm-eval
metric, or one criterion of a judge task, which the judge stage writes to the same `items` table)
with one row per item and one column per subject. The emergence analysis only ever sees these
tables, so a new kind of score plugs in by registering one function in `SCORE_SOURCES`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mergescope.analysis.run_data import RunData
from mergescope.analysis.stats import ScoreKind, score_kind

ScoreSourceName = Literal["lm-eval", "judge"]  # SCORE_SOURCES' names
Half = Literal["A", "B"]  # a hashed half of a task's items (item_halves)


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One thing scored per item: a task's lm-eval metric or a judge's criterion."""

    source: ScoreSourceName
    task: str
    name: str  # the metric or criterion
    kind: ScoreKind


@dataclass(frozen=True)
class ItemScores:
    """Per-item scores of one measure: index = item key (doc_hash), one column per subject id, NaN = unscored."""

    measure: Measure
    values: pd.DataFrame


@dataclass(frozen=True)
class SkippedSource:
    """A score source, or part of one, that could not be read, and why."""

    source: ScoreSourceName
    reason: str


ScoreSource = Callable[[RunData], Iterator["ItemScores | SkippedSource"]]


def judge_tasks(run: RunData) -> set[str]:
    """The `scores` tasks the judge stage wrote (one per rubric and judge), named as it names them."""
    from mergescope.scoring.judge_store import judge_task

    judgments = run.tables.get("judgments")
    if judgments is None or judgments.empty:
        return set()
    return {
        judge_task(rubric, judge)
        for rubric, judge in judgments[["rubric", "judge"]].drop_duplicates().itertuples(index=False)
    }


def _pivot(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.pivot_table(index="doc_hash", columns="subject_id", values="value", aggfunc="mean").sort_index()


def lmeval_scores(run: RunData) -> Iterator[ItemScores | SkippedSource]:
    """One table per lm-eval task: its primary metric per item (lm-eval's doc_hash) and subject."""
    judged = judge_tasks(run)
    for task in (t for t in run.tasks() if t not in judged):
        metric = run.primary_metric(task)
        rows = run.items[(run.items.task == task) & (run.items.metric == metric)]
        if rows.empty:
            yield SkippedSource(
                "lm-eval",
                f"task {task}: no item-level results ({metric}), so transition counts "
                "and paired tests cannot be computed; gains come from the aggregate scores",
            )
            continue
        values = _pivot(rows)
        yield ItemScores(Measure(source="lm-eval", task=task, name=metric, kind=score_kind(values.to_numpy())), values)


def judge_scores(run: RunData) -> Iterator[ItemScores | SkippedSource]:
    """One table per judge task and criterion (and `overall`): per-question means over the judge's samples."""
    for task in sorted(judge_tasks(run)):
        rows = run.items[run.items.task == task]
        if rows.empty:
            yield SkippedSource("judge", f"{task}: judgments but no per-question scores, so judge gains are skipped")
        for criterion, criterion_rows in rows.groupby("metric", sort=False):
            # Unreadable grades were left out of the per-question means by the judge stage, never scored zero.
            measure = Measure(source="judge", task=task, name=str(criterion), kind="graded")
            yield ItemScores(measure, _pivot(criterion_rows))


SCORE_SOURCES: dict[ScoreSourceName, ScoreSource] = {"lm-eval": lmeval_scores, "judge": judge_scores}


def item_scores(
    run: RunData, sources: tuple[ScoreSourceName, ...] = tuple(SCORE_SOURCES)
) -> tuple[list[ItemScores], list[str]]:
    """Every measure of the run from the named sources, and a message for each part that was skipped."""
    tables: list[ItemScores] = []
    skipped: list[SkippedSource] = []
    for name in sources:
        for entry in SCORE_SOURCES[name](run):
            if isinstance(entry, ItemScores):
                tables.append(entry)
            else:
                skipped.append(entry)
    return tables, [f"{entry.source}: {entry.reason}" for entry in skipped]


# -- candidates merged with several seeds ----------------------------------------------------------------


@dataclass(frozen=True)
class CandidatePoint:
    """One point of a sweep: a candidate, or the candidates that differ only in their merge seed."""

    label: str
    method: str
    mix: float | None
    subject_ids: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def id(self) -> str:
        return self.subject_ids[0]


def _without_seed(label: str) -> str:
    return " ".join(part for part in label.split() if not re.fullmatch(r"seed=\d+", part))


def candidate_points(run: RunData) -> list[CandidatePoint]:
    """The run's candidates grouped by merge config, so several seeds of one config form one point."""
    candidates = run.candidates()
    # The mergekit config is the same for every seed of a point (the id hashes config and seed).
    key = candidates.mergekit_config.fillna(candidates.method + candidates.parameters.map(str))
    points = []
    for _, members in candidates.groupby(key, sort=False):
        first = members.iloc[0]
        mix = None if pd.isna(first["mix"]) else float(first["mix"])
        seeds = tuple(int(s) for s in members.seed.dropna())
        label = _without_seed(first["label"]) if len(members) > 1 else first["label"]
        points.append(CandidatePoint(label, first["method"], mix, tuple(members.id), seeds))
    return points


def point_item_scores(values: pd.DataFrame, point: CandidatePoint) -> pd.Series:
    """The point's per-item score: the mean over its seeds (the seed spread is noise, not signal)."""
    present = [s for s in point.subject_ids if s in values.columns]
    return values[present].mean(axis=1, skipna=False) if present else pd.Series(np.nan, index=values.index)


# -- selection and reporting halves -----------------------------------------------------------------------


# The half of each task's items that candidates are chosen on, and the half the chosen one is reported on.
SELECTION_HALF: Half = "A"
REPORTING_HALF: Half = "B"


def item_halves(item_keys: pd.Index, seed: int = 0) -> pd.Series:
    """'A' or 'B' for each item, from a seeded hash of its key: stable across subjects, runs and orderings."""

    def half(key: str) -> Half:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return "A" if digest[0] < 128 else "B"

    return pd.Series([half(str(key)) for key in item_keys], index=item_keys, dtype=object)
