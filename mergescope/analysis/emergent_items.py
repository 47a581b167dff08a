"""Emergent and lost items: what a child solves that no parent does, and what it forgot, with examples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mergescope.analysis.run_data import RunData, load_run
from mergescope.analysis.stats import score_kind


@dataclass(frozen=True)
class ItemExample:
    """One item with the child's and the parents' answers."""

    doc_id: int
    doc_hash: str
    prompt: str
    target: str
    child_response: str
    parent_responses: dict[str, str]  # by parent label


@dataclass(frozen=True)
class ItemTransitions:
    """A candidate's new and lost items on one task, counted over all its items (split "all")."""

    run: str
    task: str
    metric: str
    candidate: str
    candidate_id: str
    n_items: int
    n_new: int  # solved by the child and by no parent (0->1)
    n_lost: int  # solved by some parent and failed by the child (1->0)
    new_examples: tuple[ItemExample, ...]
    lost_examples: tuple[ItemExample, ...]
    split: str = "all"


def _examples(
    rows: pd.DataFrame, hashes: pd.Index, child_id: str, parents: pd.DataFrame, limit: int
) -> tuple[ItemExample, ...]:
    """The first `limit` items of `hashes` (by doc_id), with every model's answer."""
    texts = rows.set_index(["subject_id", "doc_hash"])
    chosen = texts.loc[child_id].loc[list(hashes)].sort_values("doc_id").head(limit)
    return tuple(
        ItemExample(
            int(item.doc_id),
            str(doc_hash),
            item.prompt or "",
            item.target or "",
            item.response or "",
            {
                label: texts.loc[(pid, doc_hash), "response"] or ""
                for pid, label in zip(parents.id, parents.label, strict=True)
            },
        )
        for doc_hash, item in chosen.iterrows()
    )


def _task_transitions(run: RunData, task: str, examples: int) -> list[ItemTransitions]:
    metric = run.primary_metric(task)
    rows = run.items[(run.items.task == task) & (run.items.metric == metric)].drop_duplicates(
        ["subject_id", "doc_hash"]
    )
    solved = rows.pivot_table(index="doc_hash", columns="subject_id", values="value", aggfunc="mean")
    parents = run.parents()[run.parents().id.isin(solved.columns)]
    if parents.empty or score_kind(solved.to_numpy()) != "binary":
        return []
    results = []
    for child in run.candidates().itertuples():
        if child.id not in solved.columns:
            continue
        paired = solved[[child.id, *parents.id]].dropna()
        any_parent = paired[list(parents.id)].max(axis=1) == 1
        new = paired.index[(paired[child.id] == 1) & ~any_parent]
        lost = paired.index[(paired[child.id] == 0) & any_parent]
        results.append(
            ItemTransitions(
                run.name,
                task,
                metric,
                child.label,
                child.id,
                len(paired),
                len(new),
                len(lost),
                _examples(rows, new, child.id, parents, examples),
                _examples(rows, lost, child.id, parents, examples),
            )
        )
    return results


def emergent_items(run: RunData | str | Path, examples: int = 3) -> list[ItemTransitions]:
    """Per candidate and task with binary item outcomes: new and lost items, with up to `examples` of each."""
    run = run if isinstance(run, RunData) else load_run(run)
    return [t for task in run.tasks() for t in _task_transitions(run, task, examples)]


def examples_frame(transitions: list[ItemTransitions]) -> pd.DataFrame:
    """One row per example item: which candidate and task, 'new' or 'lost', and every model's answer."""
    records = [
        {
            "run": t.run,
            "task": t.task,
            "candidate": t.candidate,
            "split": t.split,
            "change": change,
            **dataclasses.asdict(example),
        }
        for t in transitions
        for change, examples in (("new", t.new_examples), ("lost", t.lost_examples))
        for example in examples
    ]
    columns = ["run", "task", "candidate", "split", "change", *[f.name for f in dataclasses.fields(ItemExample)]]
    return pd.DataFrame(records, columns=columns)
