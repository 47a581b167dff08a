"""The sweep recipe: parents -> candidates -> merge -> serve -> score -> store, read top to bottom."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm import tqdm

from mergescope import provenance
from mergescope.backends import create_backend, default_backend
from mergescope.candidates import expand, validate_with_mergekit
from mergescope.config import load_sweep
from mergescope.errors import ConfigError, MergescopeError
from mergescope.merge import merge_to_disk, remove_partial_merges
from mergescope.parents import resolve_parents
from mergescope.records import EvalSubject, ParentSet
from mergescope.scoring.lmeval import TaskSuite, evaluate, resolve_tasks
from mergescope.store import STORE_NAME, ResultsStore


@dataclass(frozen=True)
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
    allow_pickle: bool = False
    trust_remote_code: bool = False
    progress: bool = True


@dataclass(frozen=True)
class SweepResult:
    run_dir: Path
    n_subjects: int
    n_evaluated: int
    n_skipped: int
    seconds: float


def sweep(settings: SweepSettings) -> SweepResult:
    """Merge, serve and score every candidate of a sweep spec; finished subjects are skipped on rerun."""
    started = time.perf_counter()
    spec = load_sweep(settings.sweep)
    parents = resolve_parents(
        settings.parents or spec.parents or [], settings.base or spec.base,
        allow_pickle=settings.allow_pickle, trust_remote_code=settings.trust_remote_code,
    )
    candidates = expand(spec, parents)
    for candidate in candidates:
        validate_with_mergekit(candidate)
    suite = _task_suite(settings, parents)
    run_dir = settings.out or Path("runs") / "_".join([spec.name, *(p.name for p in parents.parents)])
    subjects = reference_subjects(parents) + [
        EvalSubject(id=c.id, kind="candidate", label=c.label, candidate=c) for c in candidates
    ]
    with _locked_run(run_dir) as store:
        _check_same_sweep(store, parents, run_dir)
        store.set_meta(**provenance.run_meta(spec, parents, suite, settings.backend))
        store.plan(subjects)
        todo = [s for s in subjects if s.id not in store.finished_ids()]
        _say(settings, f"{len(candidates)} candidates + {len(subjects) - len(candidates)} reference models, "
                       f"{len(subjects) - len(todo)} already done, {len(todo)} to evaluate on {', '.join(suite.names)}")
        _evaluate_all(todo, store, suite, run_dir, settings)
    return SweepResult(run_dir, len(subjects), len(todo), len(subjects) - len(todo), time.perf_counter() - started)


def reference_subjects(parents: ParentSet) -> list[EvalSubject]:
    """The parents (and the base, if given) scored beside the candidates as reference points."""
    subjects = [EvalSubject(id=f"parent-{p.name}", kind="parent", label=p.name, path=p.path) for p in parents.parents]
    if parents.base:
        subjects.append(EvalSubject(id=f"base-{parents.base.name}", kind="base", label=parents.base.name,
                                    path=parents.base.path))
    return subjects


def _task_suite(settings: SweepSettings, parents: ParentSet) -> TaskSuite:
    names, paths = list(settings.tasks), list(settings.task_paths)
    zoo = find_zoo(parents.parents[0].path)
    if zoo is not None:
        paths.append(zoo.task_yaml_dir())
        names = names or zoo.task_names()
    if not names:
        raise ConfigError("no tasks given and the parents are not from a mergescope zoo",
                          hint="pass --tasks NAME (and --task-path DIR for your own task YAMLs)")
    return resolve_tasks(names, paths, settings.limit)


def find_zoo(model_dir: Path):
    """The manifest of the zoo that `model_dir` belongs to, or None for a model from elsewhere."""
    from mergescope.zoo import load_zoo
    from mergescope.zoo.manifest import MANIFEST_NAME

    for folder in list(Path(model_dir).parents)[:3]:
        if (folder / MANIFEST_NAME).is_file():
            return load_zoo(folder)
    return None


class _locked_run:
    """The run's results store, held under a lock so that two sweeps never write one run at once."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def __enter__(self) -> ResultsStore:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(str(self.run_dir / ".sweep.lock"))
            self.lock.acquire(timeout=0)
        except Timeout:
            raise MergescopeError(f"{self.run_dir}: another sweep is writing this run right now",
                                  hint="wait for it to finish, or choose another --out") from None
        except OSError as error:
            raise MergescopeError(f"cannot write the run directory {self.run_dir}: {error.strerror}",
                                  hint="choose a writable --out") from None
        remove_partial_merges(self.run_dir / "merges")
        self.store = ResultsStore(self.run_dir / STORE_NAME)
        return self.store

    def __exit__(self, *exc) -> None:
        self.store.close()
        self.lock.release()


def _check_same_sweep(store: ResultsStore, parents: ParentSet, run_dir: Path) -> None:
    previous = store.meta().get("parents")
    current = [str(p.path) for p in parents.parents]
    if previous is not None and previous != current:
        raise ConfigError(f"{run_dir} holds a sweep of other parents ({', '.join(previous)})",
                          hint="choose another --out for these parents")


def _evaluate_all(todo: list[EvalSubject], store: ResultsStore, suite: TaskSuite, run_dir: Path,
                  settings: SweepSettings) -> None:
    if not todo:
        return
    backend = create_backend(settings.backend or default_backend())
    try:
        bar = tqdm(todo, desc="sweep", unit="model", disable=not settings.progress)
        for subject in bar:
            bar.set_postfix_str(subject.label)
            merge_started = time.perf_counter()
            model_dir = subject.path or merge_to_disk(subject.candidate, run_dir / "merges")
            merge_seconds = time.perf_counter() - merge_started if subject.candidate else None
            evaluation = evaluate(backend.load(model_dir), suite, subject.id)
            store.record(subject, evaluation, merge_seconds)
            summary = ", ".join(f"{s.task} {s.metric}={s.value:.3f}" for s in evaluation.scores)
            _say(settings, f"  {subject.label}: {summary} ({evaluation.seconds:.1f}s)", bar)
    finally:
        backend.close()


def _say(settings: SweepSettings, line: str, bar: tqdm | None = None) -> None:
    if settings.progress:
        (bar.write if bar is not None else tqdm.write)(line)
