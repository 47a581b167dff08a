"""The kinship study recipe: sweep several parent pairs, then one report of emergence against kinship.

Each pair is one ordinary sweep into `OUT/pairs/KEY/` (KEY is GROUP/NAME, or NAME without a group), with
every sweep option the study was given. Every pair's input is checked before the first sweep starts, so
bad input costs nothing and creates nothing. A pair whose sweep finished is marked (`study_done.json`,
holding what it swept) and skipped on rerun without opening its store; an unfinished one is resumed by
the sweep itself, which skips its finished subjects. Nothing is ever deleted: a pair folder holding a
sweep of other models, tasks or item limit is refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from tqdm import tqdm

from mergescope.errors import ConfigError
from mergescope.models.parents import ARCHITECTURE_KEYS, SHAPE_KEYS, config_difference, resolve_parents
from mergescope.recipes.sweep import SweepPlan, SweepSettings, plan_sweep, sweep
from mergescope.runs.directory import read_run_meta
from mergescope.runs.records import ModelRef, ParentSet, StudyPair

if TYPE_CHECKING:
    from mergescope.analysis.kinship_study import StudyData
    from mergescope.zoo.manifest import ZooManifest

__all__ = ["PairOutcome", "StudyPair", "StudyResult", "StudySettings", "study", "zoo_pairs", "zoo_study_pairs"]

DONE_MARK = "study_done.json"
T = TypeVar("T")
PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # pair names and groups become folder names


@dataclass(frozen=True)
class StudySettings:
    """Everything `mergescope study` takes.

    `options` holds the sweep options every pair shares (spec, backend, limit, executor, judge ...);
    each pair's parents, base, tasks and run directory replace its `parents`, `base`, `tasks` and `out`.
    """

    pairs: tuple[StudyPair, ...]
    out: Path = Path("runs/study")
    report: Path | None = None  # default: OUT/report
    options: SweepSettings = field(default_factory=lambda: SweepSettings(parents=[]))

    @property
    def report_dir(self) -> Path:
        """Where the study report is written."""
        return self.report or self.out / "report"


@dataclass(frozen=True, kw_only=True)
class PairOutcome:
    """What the study did with one pair."""

    pair: StudyPair
    run_dir: Path
    status: Literal["swept", "done before"]
    n_evaluated: int
    n_skipped: int
    seconds: float
    judging_incomplete: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """What a study did with each pair, and where its report is."""

    out: Path
    report: Path  # the study's index.html
    pairs: tuple[PairOutcome, ...]
    seconds: float
    data: StudyData  # every figure of the report (analysis/kinship_study.py), e.g. for a notebook

    @property
    def problems(self) -> tuple[str, ...]:
        """Figures the analysis could not compute, and why."""
        return self.data.problems

    @property
    def judging_incomplete(self) -> list[str]:
        """ "PAIR: SUBJECT" for every subject whose judging must be rerun."""
        return [f"{o.pair.key}: {subject}" for o in self.pairs for subject in o.judging_incomplete]

    def to_json(self) -> dict:
        """A JSON-ready summary: the report, and per pair its run directory and what was done."""
        return {
            "out": str(self.out),
            "report": str(self.report),
            "seconds": self.seconds,
            "problems": list(self.problems),
            "pairs": [
                {
                    "key": o.pair.key,
                    "name": o.pair.name,
                    "group": o.pair.group,
                    "kind": o.pair.kind,
                    "run": str(o.run_dir),
                    "status": o.status,
                    "evaluated": o.n_evaluated,
                    "skipped": o.n_skipped,
                    "judging_incomplete": list(o.judging_incomplete),
                }
                for o in self.pairs
            ],
        }


@dataclass(frozen=True)
class PairPlan:
    """One pair's checked sweep: its settings and plan."""

    pair: StudyPair
    settings: SweepSettings
    plan: SweepPlan


def study(settings: StudySettings) -> StudyResult:
    """Sweep every pair (skipping finished ones), then write the study report; bad input is refused first."""
    from mergescope.analysis.kinship_study import study_data  # pandas, statsmodels: only once the input is checked
    from mergescope.report.study_page import write_study_report

    started = time.perf_counter()
    plans = check_study(settings)
    outcomes = tuple(_run_pair(settings, planned) for planned in plans)
    data = study_data([o.pair for o in outcomes], [o.run_dir for o in outcomes])
    report = write_study_report(data, settings.report_dir)
    return StudyResult(
        out=settings.out, report=report, pairs=outcomes, seconds=time.perf_counter() - started, data=data
    )


# -- input checks, all before any work ------------------------------------------------------------------


def check_study(settings: StudySettings) -> list[PairPlan]:
    """Every pair's checked sweep plan; ConfigError for the first problem, before anything is written."""
    pairs = settings.pairs
    if len(pairs) < 2:
        raise ConfigError(
            f"a kinship study needs at least two pairs, got {len(pairs)}",
            hint="pass --pairs NAME=A,B[,BASE] for each pair, or --zoo DIR of a zoo that lists pairs",
        )
    _check_names(pairs)
    _check_repeats(pairs)
    options = settings.options
    parent_sets = [
        _for_pair(
            pair,
            resolve_parents,
            list(pair.parents),
            pair.base,
            allow_pickle=options.allow_pickle,
            trust_remote_code=options.trust_remote_code,
        )
        for pair in pairs
    ]
    _check_architectures(pairs, parent_sets)
    plans = []
    for pair in pairs:  # the spec, candidates, memory and tasks of each pair (loads the tasks: slower)
        pair_settings = _pair_settings(settings, pair)
        planned = PairPlan(pair, pair_settings, _for_pair(pair, plan_sweep, pair_settings))
        _check_existing_run(planned)
        plans.append(planned)
    return plans


def _for_pair(pair: StudyPair, check: Callable[..., T], *args, **kwargs) -> T:
    """`check(*args, **kwargs)`, its ConfigError naming the pair it was about."""
    try:
        return check(*args, **kwargs)
    except ConfigError as error:
        raise ConfigError(f"pair {pair.key!r}: {error}", hint=error.hint) from None


def _check_names(pairs: Sequence[StudyPair]) -> None:
    seen: set[str] = set()
    for pair in pairs:
        for what, value in [("name", pair.name), *([("group", pair.group)] if pair.group else [])]:
            if not PAIR_NAME.fullmatch(value):
                raise ConfigError(
                    f"pair {pair.key!r}: the {what} {value!r} is not a folder name",
                    hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
                )
        if pair.key in seen:
            raise ConfigError(f"two pairs are called {pair.key!r}", hint="give each pair its own name")
        seen.add(pair.key)


def _identity(pair: StudyPair) -> tuple[frozenset[Path], Path | None]:
    """What makes two pairs the same merge: the two parents in either order, and the base."""
    parents = frozenset(Path(p).expanduser().resolve() for p in pair.parents)
    return parents, Path(pair.base).expanduser().resolve() if pair.base else None


def _check_repeats(pairs: Sequence[StudyPair]) -> None:
    first_of: dict[tuple, StudyPair] = {}
    for pair in pairs:
        identity = _identity(pair)
        if identity in first_of:
            base = f" with base {pair.base}" if pair.base else " without a base"
            raise ConfigError(
                f"pairs {first_of[identity].key!r} and {pair.key!r} are the same pair: "
                f"{' + '.join(str(p) for p in pair.parents)}{base}",
                hint="list each pair once (the order of the parents does not matter)",
            )
        first_of[identity] = pair


def _check_architectures(pairs: Sequence[StudyPair], parent_sets: Sequence[ParentSet]) -> None:
    """One architecture for the whole study, and one set of shapes within a group (e.g. one zoo size)."""
    reference, reference_model = pairs[0], parent_sets[0].parents[0]
    group_reference: dict[str, tuple[StudyPair, ModelRef]] = {}
    for pair, parents in zip(pairs, parent_sets, strict=True):
        model = parents.parents[0]  # resolve_parents checked that the pair's own models agree
        difference = config_difference(model, reference_model, ARCHITECTURE_KEYS)
        if difference:
            key, value, reference_value = difference
            raise ConfigError(
                f"pair {pair.key!r} ({value!r}) and pair {reference.key!r} ({reference_value!r}) differ "
                f"in {key}: a study compares pairs of one architecture",
                hint="study each architecture on its own",
            )
        first, first_model = group_reference.setdefault(pair.group, (pair, model))
        difference = config_difference(model, first_model, SHAPE_KEYS)
        if difference:
            key, value, first_value = difference
            group = f"group {pair.group!r}" if pair.group else "one group"
            raise ConfigError(
                f"pairs {first.key!r} and {pair.key!r} are in {group} but differ in {key}: "
                f"{first_value!r} vs {value!r}",
                hint="give pairs of another model size their own group: --pairs GROUP/NAME=A,B or --zoo GROUP=DIR",
            )


def _pair_settings(settings: StudySettings, pair: StudyPair) -> SweepSettings:
    options = settings.options
    return dataclasses.replace(
        options,
        parents=[str(p) for p in pair.parents],
        base=str(pair.base) if pair.base else None,
        sweep=pair.sweep or options.sweep,
        tasks=list(pair.tasks or options.tasks),
        task_paths=list(dict.fromkeys([*options.task_paths, *pair.task_paths])),
        evaluation=pair.evaluation or options.evaluation,
        out=settings.out / "pairs" / pair.key,
    )


def _fingerprint(plan: SweepPlan) -> dict:
    """What a pair's sweep covers; a finished pair is skipped only while its done mark holds the same."""
    return {
        "parents": [str(p.path) for p in plan.parents.parents],
        "base": str(plan.parents.base.path) if plan.parents.base else None,
        "tasks": list(plan.suite.names),
        "limit": plan.suite.limit,
        "spec": plan.spec.model_dump(mode="json"),
    }


def _check_existing_run(planned: PairPlan) -> None:
    """Refuse a pair folder that holds a sweep of other parents, base, tasks or limit (it is never deleted)."""
    meta = read_run_meta(planned.plan.run_dir)
    if meta is None:
        return
    recorded, wanted = meta.model_dump(mode="json"), _fingerprint(planned.plan)  # both in their JSON form
    for key in ("parents", "base", "tasks", "limit"):
        if recorded[key] != wanted[key]:
            raise ConfigError(
                f"pair {planned.pair.key!r}: {planned.plan.run_dir} holds a sweep of other {key} "
                f"({recorded[key]!r}, not {wanted[key]!r}); it is kept as it is",
                hint="give the pair another name, or the study another --out",
            )


# -- running the pairs ----------------------------------------------------------------------------------


def _run_pair(settings: StudySettings, planned: PairPlan) -> PairOutcome:
    """Sweep one pair unless its done mark says it is finished; mark it done once its sweep is complete."""
    plan, mark = planned.plan, planned.plan.run_dir / DONE_MARK
    fingerprint = _fingerprint(plan)
    if _read_mark(mark) == fingerprint:
        _say(settings, f"pair {planned.pair.key}: done before ({plan.run_dir})")
        return PairOutcome(
            pair=planned.pair,
            run_dir=plan.run_dir,
            status="done before",
            n_evaluated=0,
            n_skipped=len(plan.subjects),
            seconds=0.0,
        )
    _say(settings, f"pair {planned.pair.key}: sweeping into {plan.run_dir}")
    result = sweep(planned.settings, plan)
    if not result.judging_incomplete:
        partial = mark.with_suffix(".partial")
        partial.write_text(json.dumps(fingerprint, indent=1))
        partial.replace(mark)
    return PairOutcome(
        pair=planned.pair,
        run_dir=plan.run_dir,
        status="swept",
        n_evaluated=result.n_evaluated,
        n_skipped=result.n_skipped,
        seconds=result.seconds,
        judging_incomplete=tuple(result.judging_incomplete),
    )


def _read_mark(mark: Path) -> dict | None:
    try:
        return json.loads(mark.read_text())
    except (OSError, json.JSONDecodeError):  # no mark, or one cut short: the sweep decides what is left
        return None


def _say(settings: StudySettings, line: str) -> None:
    if settings.options.progress:
        tqdm.write(line)


# -- pairs from a zoo -----------------------------------------------------------------------------------


def zoo_study_pairs(manifest: ZooManifest, group: str | None = None) -> list[StudyPair]:
    """The pairs a zoo manifest lists, as study pairs in `group` (default: the zoo directory's name)."""
    group = manifest.root.name if group is None else group
    path = manifest.model_path
    try:
        return [
            StudyPair(
                name=pair.name,
                parents=(path(pair.parents[0]), path(pair.parents[1])),
                base=path(pair.base) if pair.base else None,
                tasks=tuple(pair.tasks),
                task_paths=(manifest.task_yaml_dir(),),
                group=group,
                kind=pair.kind,
            )
            for pair in manifest.pairs
        ]
    except KeyError as error:
        raise ConfigError(f"{manifest.root}: a pair names {error.args[0]}", hint="rebuild the zoo") from None


def zoo_pairs(zoo_dir: str | Path, group: str | None = None) -> list[StudyPair]:
    """The study pairs of the zoo built in `zoo_dir`, or of the real model's parents built there
    (`mergescope models parents`); ConfigError when there is neither or it lists no pairs."""
    from mergescope.zoo import load_zoo
    from mergescope.zoo.real import MANIFEST_NAME as PARENTS_MANIFEST
    from mergescope.zoo.real_study import real_study_pairs

    if (Path(zoo_dir) / PARENTS_MANIFEST).is_file():
        return real_study_pairs(Path(zoo_dir), group)
    try:
        manifest = load_zoo(zoo_dir)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    if not manifest.pairs:
        raise ConfigError(
            f"the zoo {zoo_dir} lists no pairs to study",
            hint="rebuild it (mergescope zoo build DIR), or pass --pairs NAME=A,B[,BASE]",
        )
    return zoo_study_pairs(manifest, group)
