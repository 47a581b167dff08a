"""A run directory: its lock, its merges folder, its provenance records and its stored subjects.

A run directory (a sweep's --out) holds results.sqlite (store.py), merges/ (each candidate's finished model
under its id, written by merge.py) and the sweep lock. The sweep and `mergescope judge` write it under the
lock; `serve`, `merge --run` and the report read it. What produced the run is kept in the store's meta
table, one row per field: `RunMeta` (written when a sweep starts) and `JudgingMeta` (under the key
"judging", written when a judging stage closes).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mergescope.errors import ConfigError, MergescopeError, did_you_mean
from mergescope.merging.dtype import DtypeSource
from mergescope.merging.spec import EvalSettings, validation_message
from mergescope.runs.records import Candidate, EvalSubject, ReplyFormat
from mergescope.runs.store import FULL, STORE_NAME, ResultsStore, read_meta

LOCK_NAME = ".sweep.lock"
MERGES_NAME = "merges"
# A merge is written into NAME.partial-PID and renamed once complete (merge.py); a leftover one was killed.
PARTIAL_SUFFIX = ".partial"
JUDGING_KEY = "judging"
SEARCH_KEY = "search"
FINITE_KEY = "finite_weights"  # fingerprints of parent weights found free of NaN and inf (parents.check_finite)


@contextmanager
def partial_directory(target: Path, doing: str, errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[Path]:
    """A fresh temporary sibling of `target` to write into (the caller renames it into place), removed whatever
    happens; a write error among `errors` becomes one line, "`doing` failed writing PARTIAL: reason"."""
    partial = target.with_name(f"{target.name}{PARTIAL_SUFFIX}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
    except errors as error:
        reason = getattr(error, "strerror", None) or " ".join(str(error).split())
        raise MergescopeError(
            f"{doing} failed writing {partial}: {reason}", hint="free disk space or choose another output directory"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def merges_dir(run_dir: Path) -> Path:
    """The folder of the run's merged models, one per candidate id."""
    return Path(run_dir) / MERGES_NAME


def remove_partial_merges(merges_root: Path) -> int:
    """Delete temporary directories left by interrupted merges; returns how many were removed."""
    if not merges_root.is_dir():
        return 0
    leftovers = [p for p in merges_root.iterdir() if PARTIAL_SUFFIX in p.name]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return len(leftovers)


class LockedRun:
    """The run's results store, held under a lock so that two sweeps never write one run at once."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def __enter__(self) -> ResultsStore:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(str(self.run_dir / LOCK_NAME))
            self.lock.acquire(timeout=0)
        except Timeout:
            raise MergescopeError(
                f"{self.run_dir}: another sweep is writing this run right now",
                hint="wait for it to finish, or choose another --out",
            ) from None
        except OSError as error:
            raise MergescopeError(
                f"cannot write the run directory {self.run_dir}: {error.strerror}", hint="choose a writable --out"
            ) from None
        # the lock is ours, so no merge is under way: a partial one was left by a killed sweep
        remove_partial_merges(merges_dir(self.run_dir))
        self.store = ResultsStore(self.run_dir / STORE_NAME)
        return self.store

    def __exit__(self, *exc) -> None:
        self.store.close()
        self.lock.release()


# -- provenance ---------------------------------------------------------------------------------------------
class MetaRecord(BaseModel):
    # extra keys are ignored so that a store written by a later mergescope still reads
    model_config = ConfigDict(frozen=True, extra="ignore")


class RunMeta(MetaRecord):
    """What produced a run: the spec (its dtype: the one served), the parents, the tasks and how lm-eval prompted
    them, the backend and executor, the machine."""

    spec: dict[str, Any]  # the sweep spec as validated, kept as written so that later spec fields never break it
    spec_source: str | None
    parents: tuple[str, ...]  # parent model paths, in sweep order
    parent_names: tuple[str, ...]
    base: str | None
    architecture: str
    tasks: tuple[str, ...]
    limit: int | None
    backend: str | None  # the backend actually used
    versions: dict[str, str]  # package -> version ("absent" where not installed)
    machine: str
    updated_at: str  # ISO time the sweep (re)started
    executor: str = "local"  # stores written before executors existed ran every subject in-process
    # hub id (org/name) -> the commit its snapshot is of, for every model named by a hub id; {} in older stores
    hub_commits: dict[str, str] = Field(default_factory=dict)
    evaluation: EvalSettings = EvalSettings()  # stores written before these flags were scored with lm-eval's defaults
    # what decided the dtype (merging/dtype.py): --dtype, the spec, or the parents; stores written before the dtype
    # followed the parents took it from the spec (or --dtype)
    dtype_source: DtypeSource = "spec"

    def served_dtype(self) -> str:
        """The dtype the run's models were merged and served in (its spec as recorded holds the one chosen)."""
        return self.spec.get("dtype") or "float32"


class JudgingMeta(MetaRecord):
    """How a run was judged last, and whether every subject's judging finished."""

    judge_model: str
    judge_url: str
    samples: int
    temperature: float
    pairwise: bool
    logprobs: int = 0  # stores judged before probability-weighted scores asked for none
    max_tokens: int | None = None  # --judge-max-tokens; None: each rubric's judge_max_tokens
    rubrics: tuple[str, ...]  # rubric labels
    rubric_sources: tuple[str, ...]  # resolved rubric files: `mergescope judge RUN` reuses them
    complete: bool
    incomplete_subjects: tuple[str, ...]
    last_error: str | None
    # rubric label -> how the judge was asked to reply (judge.py: "structured" JSON schema or "free_text");
    # empty for stores judged before reply formats, and without the rubrics the judge could not be asked about
    reply_formats: dict[str, ReplyFormat] = Field(default_factory=dict)


Objective = Literal["mean", "pareto"]  # a search's: the mean of the tasks' primary metrics, or one per task


class SearchMeta(MetaRecord):
    """What a run's search is (search.py): a resumed search must be the same one, though its budget may grow."""

    space: dict[str, Any]  # the search space as validated
    space_source: str | None
    space_digest: str
    sampler: str
    seed: int
    objective: Objective
    fitness_items: int | None
    finalists: int
    batch_size: int  # trials asked before any is told: part of what the sampler proposes
    halves_seed: int  # the item halves' seed (the report's analysis seed)
    budget: int

    def identity(self) -> dict[str, Any]:
        """The fields a resumed search must share with the stored one."""
        return self.model_dump(exclude={"budget", "space", "space_source"})


def write_run_meta(store: ResultsStore, meta: RunMeta) -> None:
    store.set_meta(**meta.model_dump(mode="json"))


def write_judging_meta(store: ResultsStore, meta: JudgingMeta) -> None:
    store.set_meta(**{JUDGING_KEY: meta.model_dump(mode="json")})


def run_meta(store: ResultsStore) -> RunMeta | None:
    """The run's provenance, or None for a store no sweep has started."""
    return _run_meta(store.meta(), store.path)


def judging_meta(store: ResultsStore) -> JudgingMeta | None:
    """How the run was judged last, or None when it never was."""
    stored = store.meta().get(JUDGING_KEY)
    return _validated(JudgingMeta, stored, store.path) if stored is not None else None


def read_run_meta(run_dir: Path) -> RunMeta | None:
    """A run's provenance read without writing anything; None without a store or before a sweep started."""
    meta = read_meta(run_dir)
    return _run_meta(meta, Path(run_dir) / STORE_NAME) if meta is not None else None


def search_meta(store: ResultsStore) -> SearchMeta | None:
    """What the run's search is, or None for a run no search wrote."""
    stored = store.meta().get(SEARCH_KEY)
    return _validated(SearchMeta, stored, store.path) if stored is not None else None


def finite_checked(run_dir: Path) -> set[str]:
    """The weight fingerprints this run found free of NaN and inf (read only; empty without a store)."""
    return set((read_meta(run_dir) or {}).get(FINITE_KEY, []))


def record_finite_checked(store: ResultsStore, fingerprints: tuple[str, ...]) -> None:
    """Add `fingerprints` to the run's weights found free of NaN and inf, so that a resumed run skips them."""
    store.set_meta(**{FINITE_KEY: sorted(set(store.meta().get(FINITE_KEY, [])) | set(fingerprints))})


def _run_meta(meta: dict[str, Any], source: Path) -> RunMeta | None:
    fields = {key: value for key, value in meta.items() if key not in (JUDGING_KEY, SEARCH_KEY, FINITE_KEY)}
    return _validated(RunMeta, fields, source) if fields else None


def _validated(record: type[MetaRecord], values: Any, source: Path):
    try:
        return record.model_validate(values)
    except ValidationError as error:
        raise MergescopeError(
            validation_message(error, f"{source} (run metadata)"),
            hint="the run was written by another tool or damaged; sweep into a new --out",
        ) from None


# -- stored subjects ----------------------------------------------------------------------------------------
def stored_subject(row: sqlite3.Row, run_dir: Path) -> EvalSubject:
    """The subject of a `subjects` row (store.py writes it); a candidate's path is its merge directory."""
    if row["kind"] != "candidate":
        return EvalSubject(id=row["id"], kind=row["kind"], label=row["label"], path=Path(row["path"]))
    return EvalSubject(
        id=row["id"],
        kind="candidate",
        label=row["label"],
        candidate=stored_candidate(row),
        path=merges_dir(run_dir) / row["id"],
    )


def stored_candidate(row: sqlite3.Row) -> Candidate:
    """The candidate of a `subjects` row of kind 'candidate'."""
    return Candidate(
        id=row["id"],
        method=row["method"],
        label=row["label"],
        mergekit_config=yaml.safe_load(row["mergekit_config"]),
        parameters=json.loads(row["parameters"] or "{}"),
        seed=row["seed"],
        mix=row["mix"],
    )


def stored_subjects(store: ResultsStore, run_dir: Path) -> list[EvalSubject]:
    """The run's finished subjects (scored on every item: not a search's subset-scored trials), in sweep order."""
    rows = store.query("SELECT * FROM subjects WHERE status = 'done' AND coverage = ? ORDER BY position", FULL)
    return [stored_subject(row, run_dir) for row in rows]


def find_subject(run_dir: Path, subject_id: str) -> EvalSubject:
    """The subject of an existing run with exactly this id (finished or not); ConfigError suggesting close ids."""
    rows = {row["id"]: row for row in _subject_rows(run_dir, "SELECT * FROM subjects")}
    if subject_id not in rows:
        raise ConfigError(f"{run_dir} has no subject {subject_id!r}", hint=did_you_mean(subject_id, set(rows)))
    return stored_subject(rows[subject_id], run_dir)


def find_candidate(run_dir: Path, id_prefix: str) -> Candidate:
    """The one candidate of an existing run whose id starts with `id_prefix`; ConfigError suggesting close ids."""
    rows = _subject_rows(run_dir, "SELECT * FROM subjects WHERE kind = 'candidate'")
    matching = [row for row in rows if row["id"].startswith(id_prefix)]
    if len(matching) != 1:
        found = "no candidate" if not matching else f"{len(matching)} candidates"
        hint = (
            did_you_mean(id_prefix, {row["id"] for row in rows})
            if not matching and rows
            else "see `mergescope results RUN --json`"
        )
        raise ConfigError(f"{run_dir}: {found} with id {id_prefix!r}", hint=hint)
    return stored_candidate(matching[0])


def _subject_rows(run_dir: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    store = ResultsStore.of_run(run_dir)
    try:
        return store.query(sql, *params)
    finally:
        store.close()
