"""The sweep recipe: parents -> candidates -> merge -> serve -> score -> store, read top to bottom."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mergescope.errors import ConfigError
from mergescope.executors import EXECUTORS, EvalJob, SubjectResult, create_executor
from mergescope.faults import kill_point
from mergescope.merging.candidates import expand, validate_with_mergekit
from mergescope.merging.dtype import FALLBACK, DtypeChoice, choose_dtype
from mergescope.merging.merge import is_merged
from mergescope.merging.spec import EvalSettings, SweepSpec, load_sweep
from mergescope.models.parents import check_chat_template, check_finite, resolve_parents
from mergescope.models.resources import check_disk, check_memory, merged_output_bytes
from mergescope.runs import provenance
from mergescope.runs.directory import (
    LockedRun,
    finite_checked,
    merges_dir,
    record_finite_checked,
    run_meta,
    write_run_meta,
)
from mergescope.runs.records import Candidate, EvalSubject, ParentSet
from mergescope.runs.store import FULL, SUBSET, ResultsStore
from mergescope.scoring.judge_run import JudgeSettings, RunJudging, answered, judged_ids
from mergescope.scoring.lmeval import TaskSuite, resolve_tasks
from mergescope.serving import BACKENDS, default_backend


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """Everything `mergescope sweep` takes; defaults are what a first run wants."""

    parents: list[str]
    base: str | None = None
    sweep: Path | None = None
    tasks: list[str] = field(default_factory=list)
    task_paths: list[Path] = field(default_factory=list)
    out: Path | None = None
    backend: str | None = None
    limit: int | None = None
    evaluation: EvalSettings = EvalSettings()  # how lm-eval prompts every subject (--num-fewshot ...)
    dtype: str | None = None  # --dtype: merge and serve in it instead of the spec's dtype
    allow_pickle: bool = False
    trust_remote_code: bool = False
    allow_nonfinite: bool = False  # merge parents whose weights hold NaN or inf (refused by default)
    # e.g. {"tensor_parallel_size": 2} for vllm; plan_sweep checks it, and executor_options, into the
    # backend's and the executor's options records (options.py): an unknown key is refused
    backend_options: dict = field(default_factory=dict)
    executor: str = "local"  # or "ray" (executors/): where subjects are merged, served and scored
    executor_options: dict = field(default_factory=dict)  # e.g. {"address": ..., "workers": 2, "gpus_per_worker": 1}
    max_memory: str | None = None  # e.g. "8GB": refuse a sweep whose merge would need more (resources.py)
    progress: bool = True
    # LLM judging after each subject's lm-eval scores (scoring/judge_run.py); None: no judging.
    judge: JudgeSettings | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:  # lm-eval takes 0 for "all" and fails on a negative limit
            raise ConfigError(
                f"--limit {self.limit}: the number of items to evaluate per task must be at least 1",
                hint="give --limit N with N >= 1, or leave --limit out to evaluate every item",
            )


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    run_dir: Path
    n_subjects: int
    n_evaluated: int
    n_skipped: int
    seconds: float
    judging_incomplete: list[str] = field(default_factory=list)  # subjects whose judging must be rerun


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's checked inputs: what `sweep` will merge and score, known before any work."""

    spec: SweepSpec
    parents: ParentSet
    candidates: list[Candidate]
    suite: TaskSuite
    run_dir: Path
    subjects: list[EvalSubject]
    backend: str  # the backend actually used (settings.backend None: the default)
    backend_options: Any  # its options record (options.py)
    executor_options: Any  # the executor's options record
    finite_weights: tuple[str, ...] = ()  # fingerprints of the models checked free of NaN and inf
    dtype: DtypeChoice = DtypeChoice(FALLBACK, "spec")  # what every subject is merged and served in, and why


def plan_sweep(settings: SweepSettings) -> SweepPlan:
    """Check a sweep's spec, options, parents, memory and tasks and expand its candidates; ConfigError on bad input."""
    spec = load_sweep(settings.sweep)
    # --dtype reaches the merges too: the candidates' mergekit configs are written in it
    spec = spec.model_copy(update={"dtype": settings.dtype or spec.dtype})
    return plan_run(settings, spec, lambda parents: checked_candidates(spec, parents))


def checked_candidates(spec: SweepSpec, parents: ParentSet) -> list[Candidate]:
    """The spec's candidates over `parents`, each accepted by mergekit's own config validation."""
    candidates = expand(spec, parents)
    for candidate in candidates:
        validate_with_mergekit(candidate)
    return candidates


def plan_run(
    settings: SweepSettings, spec: SweepSpec, candidates_of: Callable[[ParentSet], list[Candidate]]
) -> SweepPlan:
    """Check a run's options, parents, memory and tasks, and plan the candidates `candidates_of` gives; ConfigError
    on bad input. A sweep plans its spec's candidates; a search (search.py) plans none and adds its trials later."""
    backend = settings.backend or default_backend()
    # An option the backend or executor does not take, or a dtype the backend cannot serve, is refused here,
    # before anything slow; a spec without a dtype follows the parents, so that is checked again once they are known.
    BACKENDS.options(backend, _backend_values(settings, settings.dtype or spec.dtype or FALLBACK))
    executor_options = EXECUTORS.options(
        settings.executor, {"progress": settings.progress, **settings.executor_options}
    )
    parents = resolve_parents(
        settings.parents or spec.parents or [],
        settings.base or spec.base,
        allow_pickle=settings.allow_pickle,
        trust_remote_code=settings.trust_remote_code,
    )
    # Every subject (parents too) is merged and served in --dtype's dtype, else the spec's, else the parents'
    dtype = choose_dtype(settings.dtype, spec.dtype, parents)
    backend_options = _backend_options(backend, settings, dtype)
    spec = spec.model_copy(update={"dtype": dtype.dtype})  # checked by the backend's options
    check_memory(parents, dtype.dtype, settings.max_memory)
    # candidates take their tokenizer from the parents or the base
    check_chat_template(parents.models(), settings.evaluation.apply_chat_template)
    candidates = candidates_of(parents)
    suite = _task_suite(settings, parents)
    run_dir = settings.out or Path("runs") / "_".join([spec.name, *(p.name for p in parents.parents)])
    subjects = reference_subjects(parents) + candidate_subjects(candidates)
    # last: it reads every weight (once per run: a resumed run skips the models it checked)
    finite = () if settings.allow_nonfinite else check_finite(parents.models(), finite_checked(run_dir))
    return SweepPlan(
        spec, parents, candidates, suite, run_dir, subjects, backend, backend_options, executor_options, finite, dtype
    )


def _backend_options(backend: str, settings: SweepSettings, dtype: DtypeChoice) -> Any:
    """The backend's options record in the run's dtype; a dtype it cannot serve that came from the parents is
    refused naming them, with the flag that chooses another."""
    try:
        return BACKENDS.options(backend, _backend_values(settings, dtype.dtype))
    except ConfigError as error:
        if dtype.source != "parents":
            raise
        raise ConfigError(
            f"{error} (the parents are stored in {dtype.dtype})",
            hint=f"pass --dtype {FALLBACK} to merge and score in {FALLBACK}, or set the sweep spec's dtype",
        ) from None


def _backend_values(settings: SweepSettings, dtype: str) -> dict[str, Any]:
    """The backend's options: the served dtype, --batch-size and --chat-template NAME where given (a backend
    without such an option refuses it), and the backend flags given."""
    evaluation = settings.evaluation
    given = {
        "batch_size": evaluation.batch_size,
        "chat_template": evaluation.apply_chat_template if isinstance(evaluation.apply_chat_template, str) else None,
    }
    return {"dtype": dtype, **{key: value for key, value in given.items() if value}, **settings.backend_options}


def candidate_subjects(candidates: list[Candidate]) -> list[EvalSubject]:
    return [EvalSubject(id=c.id, kind="candidate", label=c.label, candidate=c) for c in candidates]


def sweep(settings: SweepSettings, plan: SweepPlan | None = None) -> SweepResult:
    """Merge, serve and score every candidate of a sweep spec; finished subjects are skipped on rerun.

    `plan` is `plan_sweep(settings)` when the caller has checked the inputs already (a study checks
    every pair's before it runs the first).
    """
    started = time.perf_counter()
    plan = plan or plan_sweep(settings)
    suite, run_dir, subjects = plan.suite, plan.run_dir, plan.subjects
    with LockedRun(run_dir) as store:
        open_run(store, plan, settings)
        finished = finished_ids(store, settings)
        todo = [s for s in subjects if s.id not in finished]
        n_candidates = len(plan.candidates)
        _say(
            settings,
            f"{n_candidates} candidates + {len(subjects) - n_candidates} reference models, "
            f"{len(subjects) - len(todo)} already done, {len(todo)} to evaluate on {', '.join(suite.names)} "
            f"in {plan.dtype.describe()}",
        )
        judging_incomplete = evaluate_subjects(todo, store, plan, settings)
    return SweepResult(
        run_dir=run_dir,
        n_subjects=len(subjects),
        n_evaluated=len(todo),
        n_skipped=len(subjects) - len(todo),
        seconds=time.perf_counter() - started,
        judging_incomplete=judging_incomplete,
    )


def open_run(store: ResultsStore, plan: SweepPlan, settings: SweepSettings) -> None:
    """Check the locked run is one of these parents, scored the same way; record its provenance, plan its subjects,
    record kinship."""
    _check_same_sweep(store, plan.parents, plan.run_dir)
    _check_same_scoring(store, plan)
    record_finite_checked(store, plan.finite_weights)
    # the backend actually used, not the option (None means "the default"), so the report names it
    write_run_meta(
        store,
        provenance.run_meta(
            plan.spec, plan.parents, plan.suite, plan.backend, settings.executor, dtype_source=plan.dtype.source
        ),
    )
    store.plan(plan.subjects)
    # torch-heavy imports, made only once the inputs are checked, so that bad input is refused at once
    from mergescope.analysis.kinship_store import record_kinship
    from mergescope.analysis.slerp_diagnostics import record_slerp_diagnostics

    record_kinship(store, plan.parents)  # both are cheap, and skipped when the store already holds them
    record_slerp_diagnostics(store, plan.candidates)


def reference_subjects(parents: ParentSet) -> list[EvalSubject]:
    """The parents (and the base, if given) scored beside the candidates as reference points."""
    subjects = [EvalSubject(id=f"parent-{p.name}", kind="parent", label=p.name, path=p.path) for p in parents.parents]
    if parents.base:
        subjects.append(
            EvalSubject(id=f"base-{parents.base.name}", kind="base", label=parents.base.name, path=parents.base.path)
        )
    return subjects


def _task_suite(settings: SweepSettings, parents: ParentSet) -> TaskSuite:
    # `--tasks a,b` as lm-eval's CLI takes it, or `--tasks a --tasks b`
    names = [name for text in settings.tasks for name in text.split(",") if name]
    paths = list(settings.task_paths)
    zoo = find_zoo(parents.parents[0].path)
    if zoo is not None:
        if zoo.task_yaml_dir() not in paths:  # a study's zoo pairs name it already
            paths.append(zoo.task_yaml_dir())
        names = names or zoo.task_names()
    if not names:
        raise ConfigError(
            "no tasks given and the parents are not from a mergescope zoo",
            hint="pass --tasks NAME (and --task-path DIR for your own task YAMLs)",
        )
    return resolve_tasks(names, paths, settings.limit, settings.evaluation)


def find_zoo(model_dir: Path):
    """The manifest of the zoo that `model_dir` belongs to, or None for a model from elsewhere."""
    from mergescope.zoo import load_zoo
    from mergescope.zoo.manifest import MANIFEST_NAME

    for folder in list(Path(model_dir).parents)[:3]:
        if (folder / MANIFEST_NAME).is_file():
            return load_zoo(folder)
    return None


def _check_same_sweep(store: ResultsStore, parents: ParentSet, run_dir: Path) -> None:
    previous = run_meta(store)
    current = tuple(str(p.path) for p in parents.parents)
    moved = [
        (m.hub, previous.hub_commits[m.hub.repo_id])
        for m in parents.models()
        if previous and m.hub and previous.hub_commits.get(m.hub.repo_id, m.hub.sha) != m.hub.sha
    ]
    if moved:
        now, swept = moved[0]
        raise ConfigError(
            f"{run_dir} was swept with {now.repo_id} at commit {swept[:12]}, but "
            f"{now.repo_id}@{now.revision} now resolves to {now.sha[:12]}",
            hint=f"resume with {now.repo_id}@{swept} to finish the run as it began, "
            "or choose another --out for the new commit",
        )
    if previous is not None and previous.parents != current:
        raise ConfigError(
            f"{run_dir} holds a sweep of other parents ({', '.join(previous.parents)})",
            hint="choose another --out for these parents",
        )


def _check_same_scoring(store: ResultsStore, plan: SweepPlan) -> None:
    """Refuse to resume a run whose stored subjects were served in another dtype or prompted otherwise."""
    previous = run_meta(store)
    if previous is None:
        return
    stored_dtype = previous.served_dtype()
    if stored_dtype != plan.spec.dtype:
        raise ConfigError(
            f"{plan.run_dir} was served in {stored_dtype}, not {plan.dtype.describe()}",
            hint=f"resume it with --dtype {stored_dtype}, or choose another --out",
        )
    stored, asked = previous.evaluation, plan.suite.settings
    if stored.identity() != asked.identity():
        raise ConfigError(
            f"{plan.run_dir} was scored with {stored.describe()}, not {asked.describe()}",
            hint="resume it with the same evaluation flags, or choose another --out",
        )


def finished_ids(store: ResultsStore, settings: SweepSettings) -> set[str]:
    """Subjects stored as done and, in a judged sweep, judged too: one killed before its judging is redone."""
    finished = store.finished_ids()
    return finished & judged_ids(store, settings.judge) if settings.judge else finished


def _check_disk_for_merges(todo: list[EvalSubject], parents: ParentSet, run_dir: Path) -> None:
    """Refuse, before merging anything, a sweep whose merged models (all kept on disk) would not fit."""
    merges = merges_dir(run_dir)
    pending = [s.candidate for s in todo if s.candidate and not is_merged(merges, s.candidate)]
    needed = sum(merged_output_bytes(parents, c.mergekit_config.get("dtype", "float32")) for c in pending)
    check_disk(merges, needed, f"{len(pending)} merged models")


def evaluate_subjects(
    todo: list[EvalSubject],
    store: ResultsStore,
    plan: SweepPlan,
    settings: SweepSettings,
    samples: dict[str, tuple[int, ...]] | None = None,
) -> list[str]:
    """Evaluate (and judge) `todo` on the plan's executor, storing each as it finishes; returns the subjects whose
    judging ended incomplete. Refuses first, before merging anything, merges that would not fit on disk.

    With `samples` (doc ids per task: a search's fitness subset) only those items are scored, the subjects are
    stored as subset-scored, and nothing is judged: judging belongs to a subject's full scoring."""
    suite, run_dir, backend_name = plan.suite, plan.run_dir, plan.backend
    _check_disk_for_merges(todo, plan.parents, run_dir)
    judging = _start_judging(settings, store, run_dir, backend_name) if samples is None else None
    if not todo and judging is None:  # a judged sweep still closes its judging: statistics may be missing
        return []
    coverage = FULL if samples is None else SUBSET

    def on_result(result: SubjectResult) -> None:
        store.record(result.subject, result.evaluation, result.merge_seconds, coverage)
        kill_point("store.committed")
        scores = ", ".join(f"{s.task} {s.metric}={s.value:.3f}" for s in result.evaluation.scores)
        _say(settings, f"  {result.subject.label}: {scores} ({result.evaluation.seconds:.1f}s)")
        if judging is not None:  # the worker answered the judge's questions; grading needs no model here
            _say(
                settings, judging.judge_subject(result.subject, answered(result.answers, result.answers_chat_template))
            )
            kill_point("judge.subject_done")

    executor = create_executor(settings.executor, plan.executor_options)
    job = EvalJob(
        suite,
        merges_dir(run_dir),
        backend_name,
        plan.backend_options,
        answer_requests=judging.answer_requests() if judging is not None else (),
        samples=samples,
    )
    incomplete: list[str] = []
    try:
        executor.run(todo, job, on_result)
    finally:
        if judging is not None:
            incomplete = judging.close()
    return incomplete


def _start_judging(settings: SweepSettings, store: ResultsStore, run_dir: Path, backend_name: str) -> RunJudging | None:
    """The run's judge stage, or None when the sweep was given no judge."""
    return RunJudging(settings.judge, store, run_dir, backend=backend_name) if settings.judge else None


def _say(settings: SweepSettings, line: str) -> None:
    if settings.progress:
        tqdm.write(line)
