"""`mergescope validate`: check every shipped (or given) YAML and report every problem at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from mergescope.errors import MergescopeError
from mergescope.merging.search_space import space_problems
from mergescope.merging.spec import SWEEPS_DIR, SweepSpec, load_yaml
from mergescope.runs.records import ParentSet, stand_in_parents
from mergescope.scoring.rubric import JUDGES_DIR, rubric_problems

# A validator takes one YAML file and returns its problems, each one line naming the file and key.
Validator = Callable[[Path], list[str]]


def sweep_problems(path: Path) -> list[str]:
    """Every problem of a sweep spec: schema errors, then each method block expanded over stand-in parents."""
    from mergescope.merging.candidates import expand

    try:
        raw = load_yaml(path)
    except MergescopeError as error:
        return [error.one_line()]
    if not isinstance(raw, dict):
        return [f"{path}: a sweep spec must be a YAML mapping with a 'methods' list"]
    try:
        spec = SweepSpec.model_validate({**raw, "source": str(path)})
    except ValidationError as error:
        return [f"{path}: {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in error.errors()]
    if not spec.methods and not spec.mergekit_configs:
        return [f"{path}: methods: the spec lists no method block and no mergekit config"]
    parents = stand_in_parents(len(spec.parents or ()) or 2)
    problems = []
    # One block at a time, so one bad block does not hide the problems of the next.
    for index in range(len(spec.methods)):
        problems += _problems_of(partial(_check_block, spec, index, parents))
    for relative in spec.mergekit_configs:
        config_only = spec.model_copy(update={"methods": [], "mergekit_configs": [relative]})
        problems += _problems_of(partial(expand, config_only, parents))
    return problems


def _check_block(spec: SweepSpec, index: int, parents: ParentSet) -> None:
    """Expand method block `index` over `parents` and have mergekit check each candidate's config."""
    from mergescope.merging.candidates import block_candidates, validate_with_mergekit

    for candidate in block_candidates(spec, index, parents):
        validate_with_mergekit(candidate)


def _problems_of(check: Callable[[], object]) -> list[str]:
    try:
        check()
    except MergescopeError as error:
        return [error.one_line()]
    return []


def from_loader(load: Callable[[Path], object]) -> Validator:
    """A validator that reports the one-line error of a loader that raises MergescopeError (or nothing)."""
    return lambda path: _problems_of(lambda: load(path))


@dataclass(frozen=True)
class YamlKind:
    """A kind of YAML file: the top-level keys only it has, the folder of its shipped files, its validator."""

    markers: frozenset[str]
    folder: Path  # package data; a file with no markers in any folder of this name is of this kind
    check: Validator


# What `mergescope validate` knows how to check. A file is told by its content (the marker keys at its top
# level), wherever it lies; a file with no or several kinds' markers falls back to its enclosing folder's name. With
# no paths, every kind's shipped folder is checked. Other stages register their kinds here.
KINDS: dict[str, YamlKind] = {
    "sweep spec": YamlKind(frozenset({"methods", "mergekit_configs"}), SWEEPS_DIR, sweep_problems),
    "rubric": YamlKind(frozenset({"criteria"}), JUDGES_DIR, rubric_problems),
    "search space": YamlKind(frozenset({"space"}), SWEEPS_DIR, space_problems),
}


@dataclass(frozen=True)
class ValidationReport:
    """Which files were checked and every problem found."""

    files: tuple[Path, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(paths: list[Path] | None = None) -> ValidationReport:
    """The problems of every YAML file under `paths` (default: every kind's shipped folder: sweeps/, judges/ ...)."""
    folders = dict.fromkeys(kind.folder for kind in KINDS.values())  # kinds may share one
    roots = [Path(p) for p in paths] if paths else list(folders)
    files, problems = [], []
    for root in roots:
        if not root.exists():
            if paths:
                problems.append(f"{root}: no such file or folder")
            continue
        for file in sorted(root.rglob("*.y*ml")) if root.is_dir() else [root]:
            files.append(file)
            problems += _validator_for(file)(file)
    return ValidationReport(files=tuple(files), problems=tuple(problems))


def _validator_for(file: Path) -> Validator:
    """The validator of the one kind whose markers the file has, else of its nearest registered folder.

    Sweep specs are the fallback: their validator explains what a spec must hold.
    """
    by_content = [kind for kind in KINDS.values() if kind.markers & _top_level_keys(file)]
    if len(by_content) == 1:
        return by_content[0].check
    by_folder: dict[str, Validator] = {}
    for kind in KINDS.values():  # the first kind registered for a folder is its fallback
        by_folder.setdefault(kind.folder.name, kind.check)
    for folder in file.resolve().parents:
        if folder.name in by_folder:
            return by_folder[folder.name]
    return sweep_problems


def _top_level_keys(file: Path) -> set[str]:
    """The keys of the file's top-level mapping; none where it does not parse (its validator says why)."""
    try:
        raw = load_yaml(file)
    except MergescopeError:
        return set()
    return set(raw) if isinstance(raw, dict) else set()
