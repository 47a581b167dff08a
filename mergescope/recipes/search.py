"""The search recipe: a budget of trials proposed by an Optuna sampler (ask/tell), each merged and scored as an
ordinary candidate of the run, and told its objective on the selection half of each task's items only.

Read top to bottom: check every input (`plan_search`), lock the run, score the parents, then ask a batch of
trials (one per worker), evaluate the new ones on the sweep's executor, tell the sampler their objectives,
store them, and repeat until the budget is spent. With a fitness subset (search_fitness.py) trials are evaluated
on its items only, and the finalists are then evaluated on every item.

Resuming is replaying: a resumed search builds a fresh study with the stored seed and asks and tells it exactly
as the first run did. A trial whose candidate is already stored costs nothing (the sweep's content-hash ids),
so the replay reaches the point of the kill in seconds, and the sampler's random state there is the one an
uninterrupted search would have had: the same seed proposes the same trials. A stored trial is told the
objectives stored with it, so a finalist since scored on every item replays as it was first told. A replayed
proposal that differs from the stored one (another Optuna version) is refused rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from mergescope.analysis.run_analysis import AnalysisSettings
from mergescope.analysis.search import non_dominated
from mergescope.errors import ConfigError, MergescopeError, did_you_mean
from mergescope.merging.candidates import block_candidates, validate_with_mergekit
from mergescope.merging.search_space import (
    METHOD_PARAMETER,
    Leaf,
    Range,
    SearchSpace,
    block_leaves,
    filled_block,
    load_space,
)
from mergescope.merging.spec import SweepSpec
from mergescope.recipes.search_fitness import FitnessItems, fitness_items, task_objectives
from mergescope.recipes.sweep import (
    SweepPlan,
    SweepSettings,
    candidate_subjects,
    evaluate_subjects,
    finished_ids,
    open_run,
    plan_run,
)
from mergescope.runs.directory import SEARCH_KEY, LockedRun, Objective, SearchMeta, search_meta, stored_candidate
from mergescope.runs.records import Candidate, ParentSet
from mergescope.runs.store import ResultsStore, nan_to_null

TRIALS_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_trials (
    number INTEGER PRIMARY KEY, subject_id TEXT NOT NULL, sampler TEXT NOT NULL, block TEXT NOT NULL,
    params TEXT NOT NULL, objective REAL, task_objectives TEXT NOT NULL, n_items INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS search_finalists (rank INTEGER PRIMARY KEY, number INTEGER NOT NULL, full_objective REAL);
"""
# A trial's row is written once, when it is told: later trials never rewrite it. The finalists are the search's
# choice as it stands (a larger budget may find better trials), so they live in a table of their own, rewritten
# whole. Ranking key, documented in docs/search.md: objective descending, then trial number ascending, so of tied
# trials the earlier one ranks first and adding trials never reorders the trials already there.


# -- samplers: Optuna's own, by name ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerKind:
    """An Optuna sampler: how to make one from a seed, and what it can search."""

    create: Callable[[int], Any]  # seed -> optuna.samplers.BaseSampler
    multi_objective: bool
    needs_numeric: bool = False  # CMA-ES models numbers only (it hands categorical parameters to a random sampler)


def _tpe(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _cmaes(seed: int):
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _random(seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(seed: int):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


SAMPLERS: dict[str, SamplerKind] = {
    "tpe": SamplerKind(_tpe, multi_objective=True),
    "cmaes": SamplerKind(_cmaes, multi_objective=False, needs_numeric=True),
    "random": SamplerKind(_random, multi_objective=True),
    "nsga2": SamplerKind(_nsga2, multi_objective=True),
}
OBJECTIVES: tuple[Objective, ...] = ("mean", "pareto")  # the mean of the tasks' primary metrics, or one per task


# -- settings, the stored identity of a search, and its plan ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """Everything `mergescope search` takes: the run's settings (parents, tasks, backend, executor, out) and the
    search's own."""

    run: SweepSettings  # its `sweep` (a spec path) is unused: the space takes its place
    space: Path
    budget: int
    sampler: str = "tpe"
    seed: int = 0
    objective: str = "mean"  # checked by plan_search (OBJECTIVES)
    fitness_items: int | None = None  # score trials on this many selection-half items per task (None: all)
    finalists: int = 3  # the best trials by fitness rescored on the whole selection half


@dataclass(frozen=True)
class SearchPlan:
    space: SearchSpace
    run: SweepPlan  # parents, tasks, backend, executor and run directory; its subjects are the references
    meta: SearchMeta
    settings: SearchSettings


def _is_objective(name: str) -> TypeGuard[Objective]:
    return name in OBJECTIVES


def plan_search(settings: SearchSettings) -> SearchPlan:
    """Check every input of a search before any work (space, budget, sampler, objective, parents, tasks)."""
    if settings.budget < 1:
        raise ConfigError(f"--budget {settings.budget}: a search needs at least one trial", hint="e.g. --budget 50")
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {settings.sampler!r}", hint=did_you_mean(settings.sampler, set(SAMPLERS)))
    if not _is_objective(settings.objective):
        raise ConfigError(
            f"unknown objective {settings.objective!r}", hint=did_you_mean(settings.objective, set(OBJECTIVES))
        )
    _check_counts(settings)
    space = load_space(settings.space)
    kind = SAMPLERS[settings.sampler]
    if kind.needs_numeric and not any(isinstance(leaf.distribution, Range) for leaf in _all_leaves(space)):
        raise ConfigError(
            f"--sampler {settings.sampler}: {settings.space} has only categorical parameters, which "
            "CMA-ES cannot model",
            hint="use --sampler tpe or random, or give the space a {low, high} range",
        )
    if settings.objective == "pareto" and not kind.multi_objective:
        raise ConfigError(
            f"--objective pareto: the {settings.sampler} sampler optimises one objective",
            hint="use --sampler nsga2 or tpe (multi-objective TPE)",
        )
    run = plan_run(settings.run, space.as_sweep_spec(), lambda parents: [])
    workers = getattr(run.executor_options, "workers", 1)
    meta = SearchMeta(
        space=space.model_dump(mode="json"),
        space_source=space.source,
        space_digest=space.digest(),
        sampler=settings.sampler,
        seed=settings.seed,
        objective=settings.objective,
        fitness_items=settings.fitness_items,
        finalists=settings.finalists,
        batch_size=workers,
        halves_seed=AnalysisSettings().seed,
        budget=settings.budget,
    )
    return SearchPlan(space, run, meta, settings)


def _check_counts(settings: SearchSettings) -> None:
    if settings.fitness_items is not None and settings.fitness_items < 2:
        raise ConfigError(
            f"--fitness-items {settings.fitness_items}: too few items to score a trial on",
            hint="give at least 2, or leave it out to score on the whole selection half",
        )
    if settings.finalists < 1:
        raise ConfigError(
            f"--finalists {settings.finalists}: at least one finalist is rescored", hint="e.g. --finalists 3"
        )


def _all_leaves(space: SearchSpace) -> list[Leaf]:
    return [leaf for index in range(len(space.space)) for leaf in block_leaves(space, index)]


# -- one trial: Optuna's proposal -> a candidate -------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A trial as proposed: its number, the sampled parameters (Optuna's names) and the candidate they make."""

    number: int
    block: str
    params: dict[str, Any]
    candidate: Candidate


def propose(space: SearchSpace, trial, parents: ParentSet) -> Proposal:
    """The candidate of an asked Optuna trial: each range of its block filled with the value the trial suggests."""
    keys = [space.block_key(i) for i in range(len(space.space))]
    index = keys.index(trial.suggest_categorical(METHOD_PARAMETER, keys)) if len(keys) > 1 else 0
    sampled = {leaf.where: _suggest(trial, leaf) for leaf in block_leaves(space, index)}
    block = filled_block(space.space[index], lambda where, raw: sampled[where])
    spec = SweepSpec(name=space.name, dtype=space.dtype, methods=[block], source=space.source)
    (candidate,) = block_candidates(spec, 0, parents)  # a space block has at most one seed: one candidate
    validate_with_mergekit(candidate)
    params = dict(trial.params)
    candidate = dataclasses.replace(candidate, label=f"trial {trial.number} {keys[index]}", parameters=params)
    return Proposal(trial.number, keys[index], params, candidate)


def _suggest(trial, leaf: Leaf) -> Any:
    distribution = leaf.distribution
    if isinstance(distribution, Range):
        return trial.suggest_float(
            leaf.name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    values = distribution.values()
    # Optuna's choices must be scalars: a choice among gradients (lists) is made among their JSON texts.
    texts = [json.dumps(v) for v in values]
    return json.loads(trial.suggest_categorical(leaf.name, texts))


# -- the search ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    run_dir: Path
    n_trials: int
    n_evaluated: int  # candidates merged and scored by this call (repeated or stored trials cost nothing)
    best_trial: int | None
    best_objective: float
    seconds: float
    judging_incomplete: list[str] = field(default_factory=list)
    n_rescored: int = 0  # finalists scored on every item by this call (a search with a fitness subset)


def search(settings: SearchSettings, plan: SearchPlan | None = None) -> SearchResult:
    """Search the space for `budget` trials, storing each as a candidate; a rerun resumes where it stopped."""
    started = time.perf_counter()
    plan = plan or plan_search(settings)
    with LockedRun(plan.run.run_dir) as store:
        _check_same_search(store, plan)
        open_run(store, plan.run, settings.run)
        references = [s for s in plan.run.subjects if s.id not in finished_ids(store, settings.run)]
        incomplete = evaluate_subjects(references, store, plan.run, settings.run)
        fitness = fitness_items(store, plan.run.subjects[0].id, plan.run.suite.names, plan.meta)
        # recorded once every input is known good, so that a refused --fitness-items does not bind the run to it
        store.set_meta(**{SEARCH_KEY: plan.meta.model_dump(mode="json")})
        store.connection.executescript(TRIALS_SCHEMA)
        study, evaluated = _run_trials(store, plan, fitness, incomplete)
        rescored = _rescore_finalists(store, plan, fitness, incomplete)
    best = _best_trial(study)
    return SearchResult(
        run_dir=plan.run.run_dir,
        n_trials=len(study.trials),
        n_evaluated=evaluated,
        best_trial=best.number if best else None,
        best_objective=best.value if best else math.nan,
        seconds=time.perf_counter() - started,
        judging_incomplete=incomplete,
        n_rescored=rescored,
    )


def _check_same_search(store: ResultsStore, plan: SearchPlan) -> None:
    stored = search_meta(store)
    if stored is None:
        return
    previous = stored.identity()
    changed = [key for key, value in plan.meta.identity().items() if previous.get(key) != value]
    if changed:
        what = ", ".join(f"{key} {previous.get(key)!r} (now {plan.meta.identity()[key]!r})" for key in changed)
        raise ConfigError(
            f"{plan.run.run_dir} holds another search: stored {what}",
            hint="resume it with its own space, sampler, seed and options, or choose another --out",
        )


def _new_study(meta: SearchMeta, n_tasks: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [optuna.study.StudyDirection.MAXIMIZE] * (n_tasks if meta.objective == "pareto" else 1)
    return optuna.create_study(sampler=SAMPLERS[meta.sampler].create(meta.seed), directions=directions)


def _run_trials(store: ResultsStore, plan: SearchPlan, fitness: FitnessItems, incomplete: list[str]):
    """Ask, evaluate and tell batches of trials until the budget is spent; returns the study and how many were
    scored."""
    study = _new_study(plan.meta, len(fitness.metrics))
    stored = {row["number"]: row for row in store.query("SELECT number, params, task_objectives FROM search_trials")}
    first_position, evaluated = len(plan.run.subjects), 0
    while len(study.trials) < plan.meta.budget:
        size = min(plan.meta.batch_size, plan.meta.budget - len(study.trials))
        asked = [study.ask() for _ in range(size)]
        proposals = [propose(plan.space, trial, plan.run.parents) for trial in asked]
        _check_replay(proposals, stored, plan)
        evaluated += _evaluate_batch(store, plan, proposals, first_position, fitness, incomplete)
        for trial, proposal in zip(asked, proposals, strict=True):
            objectives = _trial_objectives(store, proposal, stored, fitness)
            study.tell(trial, _told(objectives, plan.meta))
            _store_trial(store, proposal, plan.meta, objectives, fitness)
    return study, evaluated


def _check_replay(proposals: list[Proposal], stored: dict[int, Any], plan: SearchPlan) -> None:
    for proposal in proposals:
        if proposal.number in stored and json.loads(stored[proposal.number]["params"]) != proposal.params:
            raise MergescopeError(
                f"{plan.run.run_dir}: trial {proposal.number} replays differently from the stored "
                "one (another Optuna version?), so the search cannot resume exactly",
                hint="resume with the Optuna version that started it, or choose another --out",
            )


def _trial_objectives(
    store: ResultsStore, proposal: Proposal, stored: dict[int, Any], fitness: FitnessItems
) -> dict[str, float]:
    """A stored trial's objectives as it was told them (a finalist scored on every item since reads the same
    items, but the replay need not trust that); a new trial's from its items."""
    if proposal.number in stored:
        return json.loads(stored[proposal.number]["task_objectives"])
    return task_objectives(store, proposal.candidate.id, fitness)


def _evaluate_batch(
    store: ResultsStore,
    plan: SearchPlan,
    proposals: list[Proposal],
    first_position: int,
    fitness: FitnessItems,
    incomplete: list[str],
) -> int:
    """Merge and score the batch's candidates not stored yet (in parallel on the executor), on the fitness subset's
    items only where there is one; returns how many."""
    candidates = list({p.candidate.id: p.candidate for p in proposals}.values())
    # with a fitness subset, a candidate scored on the subset (or on every item: a finalist) has what a trial needs
    subset = fitness.doc_ids is not None
    done = store.finished_ids(with_subsets=True) if subset else finished_ids(store, plan.settings.run)
    new = [c for c in candidates if c.id not in done]
    store.plan(candidate_subjects(new), first_position=first_position + proposals[0].number)
    from mergescope.analysis.slerp_diagnostics import record_slerp_diagnostics

    record_slerp_diagnostics(store, new)
    incomplete += _evaluate(store, plan, new, fitness.doc_ids)
    return len(new)


def _evaluate(
    store: ResultsStore, plan: SearchPlan, candidates: list[Candidate], samples: dict[str, tuple[int, ...]] | None
) -> list[str]:
    """Score planned `candidates` on the run's executor (on `samples` only, when given); returns evaluate_subjects'."""
    # one progress bar per batch would flood the terminal: each trial's scores are printed instead
    batch_plan = dataclasses.replace(
        plan.run,
        candidates=candidates,
        subjects=candidate_subjects(candidates),
        executor_options=dataclasses.replace(plan.run.executor_options, progress=False),
    )
    return evaluate_subjects(batch_plan.subjects, store, batch_plan, plan.settings.run, samples)


def _told(objectives: dict[str, float], meta: SearchMeta) -> float | list[float]:
    values = list(objectives.values())
    return values if meta.objective == "pareto" else sum(values) / len(values)


def _store_trial(
    store: ResultsStore, proposal: Proposal, meta: SearchMeta, objectives: dict[str, float], fitness: FitnessItems
) -> None:
    mean = sum(objectives.values()) / len(objectives)
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO search_trials (number, subject_id, sampler, block, params, objective,"
            " task_objectives, n_items) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                proposal.number,
                proposal.candidate.id,
                meta.sampler,
                proposal.block,
                json.dumps(proposal.params, sort_keys=True),
                nan_to_null(mean),
                json.dumps(objectives),
                sum(len(items) for items in fitness.items.values()),
            ),
        )


def _rescore_finalists(store: ResultsStore, plan: SearchPlan, fitness: FitnessItems, incomplete: list[str]) -> int:
    """Store the search's finalists (`finalist_rows`) with their objective on the whole selection half. Trials
    scored on a fitness subset are first scored on every item, each in the one transaction that replaces its
    subset rows; returns how many were."""
    finalists = finalist_rows(store, plan.meta)
    rescored = _score_on_every_item(store, plan, [row["subject_id"] for row in finalists], incomplete)
    with store.transaction() as db:
        db.execute("DELETE FROM search_finalists")
        for rank, row in enumerate(finalists):
            full = task_objectives(store, row["subject_id"], fitness, fitness.full)
            db.execute(
                "INSERT INTO search_finalists (rank, number, full_objective) VALUES (?, ?, ?)",
                (rank, row["number"], nan_to_null(sum(full.values()) / len(full))),
            )
    return rescored


def finalist_rows(store: ResultsStore, meta: SearchMeta) -> list:
    """The best `meta.finalists` trials by fitness (of a Pareto search: its non-dominated ones, by their mean),
    ranked by objective, then trial number: of tied trials the earlier one ranks first, so trials added with the
    same objective never displace those already there."""
    rows = store.query(
        "SELECT number, subject_id, task_objectives FROM search_trials WHERE objective IS NOT NULL"
        " ORDER BY objective DESC, number"
    )
    if meta.objective == "pareto":
        front = non_dominated(np.array([list(json.loads(row["task_objectives"]).values()) for row in rows]))
        rows = [row for row, kept in zip(rows, front, strict=True) if kept]
    return rows[: meta.finalists]


def _score_on_every_item(store: ResultsStore, plan: SearchPlan, subject_ids: list[str], incomplete: list[str]) -> int:
    """Score (and judge) those of `subject_ids` not fully scored yet on every item; returns how many."""
    done = finished_ids(store, plan.settings.run)
    todo = [subject_id for subject_id in dict.fromkeys(subject_ids) if subject_id not in done]
    if not todo:  # a search without a fitness subset scored its trials on every item already
        return 0
    rows = {row["id"]: row for row in store.query("SELECT * FROM subjects WHERE kind = 'candidate'")}
    incomplete += _evaluate(store, plan, [stored_candidate(rows[i]) for i in todo], None)
    return len(todo)


def _best_trial(study):
    if len(study.directions) > 1:
        return None
    try:
        return study.best_trial
    except ValueError:  # no trial finished
        return None
