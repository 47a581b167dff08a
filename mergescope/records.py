"""Typed records handed from one pipeline stage to the next."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["parent", "base", "candidate"]


@dataclass(frozen=True)
class ModelRef:
    """A model directory on disk under a short name."""

    name: str
    path: Path


@dataclass(frozen=True)
class ParentSet:
    """The models a sweep merges, and the shared base they were fine-tuned from (if known)."""

    parents: tuple[ModelRef, ...]
    base: ModelRef | None = None
    architecture: str = ""

    def by_name(self, name: str) -> ModelRef:
        return next(p for p in (*self.parents, *([self.base] if self.base else [])) if p.name == name)


@dataclass(frozen=True)
class Candidate:
    """One merge to make: a mergekit config and what it means for the analysis."""

    id: str
    method: str
    label: str
    mergekit_config: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    # Weight of the second parent in [0, 1] where the method interpolates two parents, else None.
    mix: float | None = None

    def parameters_json(self) -> str:
        return json.dumps(self.parameters, sort_keys=True)


@dataclass(frozen=True)
class EvalSubject:
    """Anything that is scored: a parent, the base, or a merged candidate."""

    id: str
    kind: ModelKind
    label: str
    candidate: Candidate | None = None
    path: Path | None = None  # the model directory for parents and the base


@dataclass(frozen=True)
class TaskScore:
    """An aggregate score of one subject on one task."""

    subject_id: str
    task: str
    metric: str
    value: float
    stderr: float | None
    n_items: int


@dataclass(frozen=True)
class ItemOutcome:
    """One evaluated item: what the model answered and how it scored."""

    subject_id: str
    task: str
    doc_id: int
    doc_hash: str
    metric: str
    value: float
    prompt: str
    target: str
    response: str


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation of one subject produced."""

    scores: tuple[TaskScore, ...]
    items: tuple[ItemOutcome, ...]
    seconds: float
