"""The report's sections as typed records, built from a run's `RunAnalysis`; the template only lays them out.

Every string here may come from a model or a user (answers, prompts, labels, paths) and is handed to the
template as plain text, where autoescaping keeps it text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mergescope.analysis.emergent_items import ItemTransitions
from mergescope.analysis.run_analysis import RunAnalysis
from mergescope.analysis.run_data import RunData
from mergescope.errors import MergescopeError

MAX_EXAMPLE_CANDIDATES = 6


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells; `sort_keys` holds each cell's sort value (number or text)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    sort_keys: tuple[tuple[Any, ...], ...] = ()
    row_classes: tuple[str, ...] = ()


def number(value: Any, digits: int = 3) -> str:
    """A number as text with `digits` decimals; '–' for a missing value."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def frame_table(frame: pd.DataFrame, digits: int = 3) -> Table:
    """Any DataFrame as a Table, numbers rounded to `digits` decimals."""
    rows = tuple(tuple(number(v, digits) for v in record) for record in frame.itertuples(index=False))
    keys = tuple(tuple(sort_key(v) for v in record) for record in frame.itertuples(index=False))
    return Table(tuple(str(c) for c in frame.columns), rows, keys)


# -- summary ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BestCandidate:
    """The candidate chosen on the selection half of one measure's items, scored on the other half."""

    task: str
    measure: str
    candidate: str
    selection_half: str
    selection_score: float
    reporting_half: str
    n_items: int
    score: float
    best_parent: str
    best_parent_score: float
    gain: float
    ci_low: float
    ci_high: float
    p_all_parents: float
    label: str


@dataclass(frozen=True)
class Summary:
    best: tuple[BestCandidate, ...]
    n_rows: int
    n_emergent: int
    n_degraded: int
    strongest: dict | None  # the row with the smallest adjusted p of "beats every parent"
    problems: tuple[str, ...]
    correction: str  # as a reader names it ("Holm")
    alpha: float


def best_candidates(analysis: RunAnalysis) -> tuple[BestCandidate, ...]:
    """Per measure: the best candidate chosen on selection half A, reported alone on half B."""
    rows = analysis.split_emergence.frame()
    chosen = rows[rows.selected & (rows.split == "selection")].set_index(["task", "measure"])
    best = []
    for row in rows[rows.selected & (rows.split == "reporting")].itertuples():
        selection = chosen.loc[(row.task, row.measure)]
        best.append(
            BestCandidate(
                row.task,
                row.measure,
                row.candidate,
                selection.half,
                float(selection.score),
                row.half,
                row.n_items,
                row.score,
                row.best_parent,
                row.best_parent_score,
                row.gain_over_best,
                row.ci_low,
                row.ci_high,
                row.p_all_parents,
                row.label,
            )
        )
    return tuple(best)


def summary(analysis: RunAnalysis) -> Summary:
    """Whether anything emerged (all items, adjusted p) and the best candidate per measure (split halves)."""
    report = analysis.emergence_rows
    tested = report.dropna(subset=["p_adjusted"]).sort_values(  # ties: the candidate id (docs/search.md)
        ["p_adjusted", "gain_over_best", "candidate_id"], ascending=[True, False, True], kind="stable"
    )
    strongest = tested.iloc[0].to_dict() if not tested.empty else None
    problems = analysis.emergence.problems if report.empty else ()
    return Summary(
        best_candidates(analysis),
        len(report),
        int((report.label == "emergent").sum()),
        int((report.label == "degraded").sum()),
        strongest,
        problems,
        analysis.settings.correction_title,
        analysis.settings.alpha,
    )


# -- candidates ------------------------------------------------------------------------------------------


def candidate_table(analysis: RunAnalysis) -> Table:
    """One row per subject: scores per task (★ where emergent), mean gain over the best parent, timings."""
    run = analysis.run
    tasks = run.tasks()
    wide = run.wide_scores()
    emergence_rows = analysis.lmeval_rows
    subjects = run.subjects.set_index("id")
    rows, keys, classes = [], [], []
    for subject_id, subject in wide.iterrows():
        own = emergence_rows[emergence_rows.candidate_id == subject_id]
        emergent = set(own[own.label == "emergent"].task)
        gain = own.gain_over_best.mean() if not own.empty else math.nan
        timing = subjects.loc[subject_id]
        scores = [wide.at[subject_id, task] for task in tasks]
        cells = [
            subject.kind,
            subject.label,
            subject.method or "",
            number(subject.mix, 2),
            *[number(s) + (" ★" if task in emergent else "") for s, task in zip(scores, tasks, strict=True)],
            number(gain),
            ", ".join(sorted(emergent)),
            number(timing.merge_seconds, 1),
            number(timing.eval_seconds, 1),
        ]
        rows.append(tuple(cells))
        keys.append(
            (
                subject.kind,
                subject.label,
                subject.method or "",
                sort_key(subject.mix),
                *map(sort_key, scores),
                sort_key(gain),
                len(emergent),
                sort_key(timing.merge_seconds),
                sort_key(timing.eval_seconds),
            )
        )
        classes.append(str(subject.kind))
    columns = ("kind", "model", "method", "t", *tasks, "mean gain over best parent", "emergent on", "merge s", "eval s")
    return Table(columns, tuple(rows), tuple(keys), tuple(classes))


def sort_key(value: Any) -> Any:
    """A cell's sort value: the value itself, None where it is missing."""
    return None if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else value


# -- emergent items --------------------------------------------------------------------------------------


def example_transitions(analysis: RunAnalysis) -> tuple[ItemTransitions, ...]:
    """The candidates and tasks with the most items no parent solves, with examples of them (and of lost items)."""
    transitions = [t for t in analysis.transitions if t.n_new > 0]
    transitions.sort(key=lambda t: (-t.n_new, t.n_lost))
    return tuple(transitions[:MAX_EXAMPLE_CANDIDATES])


# -- judges, kinship, SLERP ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeSection:
    scores: Table  # one row per judged model, one column per rubric, judge and criterion
    pairwise: Table | None  # wins, ties and losses of each candidate against each parent
    agreement: tuple[tuple[str, Table], ...]  # (title, table) per agreement statistic that has rows


def judge_section(analysis: RunAnalysis) -> JudgeSection | None:
    """Per-criterion judge scores with CIs, pairwise outcomes and every agreement statistic; None without judgments."""
    from mergescope.scoring import agreement

    if analysis.judge_intervals is None:  # the run has no judgments
        return None
    run = analysis.run
    judgments = run.tables["judgments"]
    comparisons = run.tables.get("comparisons", pd.DataFrame())
    failures = agreement.with_reply_formats(
        agreement.parse_failure_rates(judgments, comparisons), run.tables.get("judge_status")
    )
    statistics = [
        ("Parse failures", failures),
        ("Self-consistency (several samples per answer)", agreement.self_consistency(judgments)),
        ("Inter-judge agreement", agreement.inter_judge_agreement(judgments)),
    ]
    if not comparisons.empty:
        statistics.append(("Position bias (pairwise, both orders)", agreement.position_bias(comparisons)))
    return JudgeSection(
        _criterion_table(run, analysis.judge_intervals),
        _pairwise_table(run, comparisons) if not comparisons.empty else None,
        tuple((title, frame_table(frame)) for title, frame in statistics if not frame.empty),
    )


def _criterion_table(run: RunData, intervals: pd.DataFrame) -> Table:
    """Models in sweep order against 'rubric · judge · criterion' columns of 'mean (CI low–high)'."""
    intervals = intervals.assign(column=intervals.rubric + " · " + intervals.judge + " · " + intervals.criterion)
    columns = list(dict.fromkeys(intervals.column))
    by_cell = intervals.set_index(["subject_id", "column"])
    rows, keys = [], []
    for subject in run.subjects[run.subjects.id.isin(intervals.subject_id)].itertuples():
        cells = [by_cell.loc[(subject.id, c)] if (subject.id, c) in by_cell.index else None for c in columns]
        rows.append(
            (
                subject.label,
                *[
                    f"{number(c['mean'], 2)} ({number(c.ci_low, 2)}–{number(c.ci_high, 2)})" if c is not None else "–"
                    for c in cells
                ],
            )
        )
        keys.append((subject.label, *[sort_key(c["mean"]) if c is not None else None for c in cells]))
    return Table(("model", *columns), tuple(rows), tuple(keys))


def _pairwise_table(run: RunData, comparisons: pd.DataFrame) -> Table:
    """Per candidate and opponent: questions won, tied and lost (orders that disagree count as a tie)."""
    labels = run.subjects.set_index("id").label
    counts = (
        comparisons.groupby(["subject_id", "opponent_id", "rubric", "judge"], sort=False)
        .outcome.value_counts()
        .unstack(fill_value=0)
        .reindex(columns=["win", "tie", "loss"], fill_value=0)
        .reset_index()
    )
    counts.insert(0, "candidate", counts.pop("subject_id").map(lambda s: labels.get(s, s)))
    counts.insert(1, "against", counts.pop("opponent_id").map(lambda s: labels.get(s, s)))
    return frame_table(counts)


KINSHIP_COLUMNS = [
    "model_a",
    "model_b",
    "scope",
    "scope_name",
    "pearson",
    "cosine",
    "abs_cosine",
    "euclidean",
    "n_params",
    "relative_to_base",
]


def kinship_table(analysis: RunAnalysis) -> Table | None:
    """Whole-model and per-module-type kinship of the parents; None when the run has no kinship table."""
    table = analysis.kinship
    if table is None:
        return None
    shown = table[table.scope.isin(["model", "module"])]
    return frame_table(shown[[c for c in KINSHIP_COLUMNS if c in shown.columns]], digits=4)


def slerp_table(analysis: RunAnalysis) -> Table | None:
    """Per SLERP candidate: the share of tensors and parameters interpolated linearly, and the angles."""
    frame = analysis.slerp_summary
    if frame is None:
        return None
    return frame_table(frame[["label", *[c for c in frame.columns if c not in ("label", "candidate_id")]]])


# -- lineage and provenance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """Where one candidate came from: its merge method, base model and inputs, from its mergekit config."""

    candidate: str
    method: str
    base: str
    inputs: tuple[str, ...]  # "name (parameters)"
    parameters: str
    config: str  # the stored mergekit YAML


def _model_names(run: RunData) -> dict[str, str]:
    references = run.subjects[run.subjects.path.notna()]
    return {str(Path(path)): label for path, label in zip(references.path, references.label, strict=True)}


def lineage(run: RunData) -> tuple[Lineage, ...]:
    """One entry per candidate, naming the parents and base by their run labels where the paths match."""
    names = _model_names(run)

    def name(path: Any) -> str:
        return names.get(str(Path(str(path))), Path(str(path)).name) if path else "–"

    entries = []
    for candidate in run.candidates().itertuples():
        config = yaml.safe_load(candidate.mergekit_config or "") or {}
        inputs = tuple(
            f"{name(m.get('model'))} ({_inline(m.get('parameters'))})" if m.get("parameters") else name(m.get("model"))
            for m in config.get("models", [])
        )
        entries.append(
            Lineage(
                candidate.label,
                str(config.get("merge_method", candidate.method)),
                name(config.get("base_model")),
                inputs,
                _inline(config.get("parameters")),
                candidate.mergekit_config or "",
            )
        )
    return tuple(entries)


def _inline(value: Any) -> str:
    if not value:
        return ""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


@dataclass(frozen=True)
class Provenance:
    versions: tuple[tuple[str, str], ...]
    settings: tuple[tuple[str, str], ...]
    spec_yaml: str
    seeds: Table
    timings: Table


def provenance(analysis: RunAnalysis) -> Provenance:
    """Package versions, run settings, the sweep spec, seeds and per-subject timings."""
    run = analysis.run
    meta = run.meta
    if meta is None:
        raise MergescopeError(f"{run.path}: no sweep wrote this run's provenance", hint="report the --out of a sweep")
    settings = [
        ("sweep spec file", meta.spec_source or "(built-in default)"),
        ("tasks", ", ".join(meta.tasks)),
        ("item limit", str(meta.limit or "none")),
        ("backend", str(meta.backend or "default")),
        ("machine", meta.machine),
        ("served dtype", meta.served_dtype()),
        ("lm-eval settings", meta.evaluation.describe()),
        ("architecture", meta.architecture),
        ("written", meta.updated_at),
        ("parents", ", ".join(meta.parents)),
        ("base", str(meta.base or "none")),
        *(
            [("hub commits", ", ".join(f"{repo}@{sha}" for repo, sha in sorted(meta.hub_commits.items())))]
            if meta.hub_commits
            else []
        ),
        ("analysis seed (item halves, bootstrap)", str(analysis.settings.seed)),
    ]
    seeded = run.candidates().dropna(subset=["seed"])
    seeds = seeded[["label", "method", "seed"]].astype({"seed": "int64"})
    timings = run.subjects[["kind", "label", "merge_seconds", "eval_seconds", "finished_at"]]
    subset = run.subset_scored  # a search's trials scored on its fitness subset: their cost, in one row
    if not subset.empty:
        timings = pd.concat(
            [
                timings,
                pd.DataFrame(
                    [
                        {
                            "kind": "candidate",
                            "label": f"{len(subset)} trials scored on the fitness subset",
                            "merge_seconds": subset.merge_seconds.sum(),
                            "eval_seconds": subset.eval_seconds.sum(),
                            "finished_at": "",
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )
    totals = pd.DataFrame(
        [
            {
                "kind": "",
                "label": "total",
                "merge_seconds": timings.merge_seconds.sum(),
                "eval_seconds": timings.eval_seconds.sum(),
                "finished_at": "",
            }
        ]
    )
    return Provenance(
        tuple(sorted(meta.versions.items())),
        tuple(settings),
        yaml.safe_dump(meta.spec, sort_keys=False),
        frame_table(seeds),
        frame_table(pd.concat([timings, totals], ignore_index=True), digits=1),
    )


# -- search ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSection:
    """A search's settings, its chosen trial on the reporting half, its finalists, non-dominated set and trials."""

    settings: tuple[tuple[str, str], ...]
    n_trials: int
    chosen: str | None  # the chosen trial's label
    selection_objective: float  # what the chosen trial was chosen by
    reported: Table  # the chosen trial against every parent, reporting-half items only
    finalists: Table | None  # fitness-subset score against whole-selection-half score (with --fitness-items)
    pareto: Table | None  # the non-dominated trials (multi-objective searches)
    trials: Table


def search_section(analysis: RunAnalysis) -> SearchSection | None:
    """The report's search section; None for a run no search wrote."""
    search = analysis.search
    if search is None:
        return None
    meta, trials = search.meta, search.trials
    settings = (
        ("space", meta.space_source or meta.space.get("name", "")),
        ("sampler", meta.sampler),
        ("seed", str(meta.seed)),
        ("objective", meta.objective),
        ("budget", str(meta.budget)),
        ("fitness items per task", str(meta.fitness_items or "whole selection half")),
        ("finalists", str(meta.finalists)),
        ("trials per batch", str(meta.batch_size)),
    )
    chosen = trials.set_index("number").loc[search.chosen] if search.chosen is not None else None
    labels = analysis.run.subjects.set_index("id").label
    objective = math.nan if chosen is None else (chosen.full_objective if meta.fitness_items else chosen.objective)
    return SearchSection(
        settings,
        len(trials),
        None if chosen is None else str(labels.get(chosen.subject_id, "")),
        objective,
        _reported_table(search.reported.frame()),
        _finalist_table(trials) if meta.fitness_items else None,
        _pareto_table(trials, search.tasks) if meta.objective == "pareto" else None,
        _trial_table(trials),
    )


def _reported_table(rows: pd.DataFrame) -> Table:
    shown = pd.DataFrame(
        {
            "task": rows.task,
            "measure": rows.measure,
            "items (reporting half)": rows.n_items,
            "score": rows.score,
            "best parent": rows.best_parent,
            "best parent's score": rows.best_parent_score,
            "gain": rows.gain_over_best,
            "95% CI low": rows.ci_low,
            "95% CI high": rows.ci_high,
            "p vs each parent": rows.p_vs_parents.map(lambda ps: ", ".join(f"{k} {v:.3g}" for k, v in ps.items())),
            "p beats every parent": rows.p_all_parents,
            "label": rows.label,
        }
    )
    return frame_table(shown)


def _finalist_table(trials: pd.DataFrame) -> Table:
    finalists = trials[trials.finalist.astype(bool)]
    return frame_table(
        pd.DataFrame(
            {
                "trial": finalists.number,
                "fitness (subset)": finalists.objective,
                "whole selection half": finalists.full_objective,
                "estimate error": finalists.objective - finalists.full_objective,
            }
        )
    )


def _pareto_table(trials: pd.DataFrame, tasks: list[str]) -> Table:
    front = trials[trials.non_dominated]
    per_task = pd.DataFrame([json.loads(t) for t in front.task_objectives], index=front.index, columns=tasks)
    return frame_table(
        pd.concat(
            [
                front[["number", "block"]].rename(columns={"number": "trial"}),
                per_task,
                front[["objective"]].rename(columns={"objective": "mean"}),
            ],
            axis=1,
        )
    )


def _trial_table(trials: pd.DataFrame) -> Table:
    params = trials.params.map(
        lambda p: ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())
    )
    return frame_table(
        pd.DataFrame(
            {
                "trial": trials.number,
                "block": trials.block,
                "objective (selection)": trials.objective,
                "best so far": trials.best_so_far,
                "parameters": params,
            }
        )
    )
