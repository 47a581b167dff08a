"""Typed records handed from one pipeline stage to the next."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mergescope.merging.spec import EvalSettings
    from mergescope.scoring.judge_parse import ParseStatus, Verdict

ModelKind = Literal["parent", "base", "candidate"]
Outcome = Literal["win", "loss", "tie"]  # a pairwise comparison's result for the subject
# How a judge was asked to reply: constrained to the rubric's JSON schema (the server accepted
# `response_format`), or free text read by judge_parse
ReplyFormat = Literal["structured", "free_text"]


@dataclass(frozen=True, kw_only=True)
class HubRevision:
    """Which commit of a Hugging Face Hub model repository a model id resolved to."""

    repo_id: str  # "org/name"
    revision: str  # as asked: a branch, tag or commit ("main" when the id names none)
    sha: str  # the commit it resolved to: the name of its snapshot folder in the hub cache

    @property
    def pinned(self) -> str:
        """The id that names this very commit: `org/name@SHA`."""
        return f"{self.repo_id}@{self.sha}"


@dataclass(frozen=True)
class ModelRef:
    """A model directory on disk under a short name; `hub` says which hub commit it is a snapshot of, if any."""

    name: str
    path: Path
    hub: HubRevision | None = None


@dataclass(frozen=True)
class ParentSet:
    """The models a sweep merges, and the shared base they were fine-tuned from (if known)."""

    parents: tuple[ModelRef, ...]
    base: ModelRef | None = None
    architecture: str = ""

    def models(self) -> tuple[ModelRef, ...]:
        """The parents, then the base (if any)."""
        return (*self.parents, *([self.base] if self.base else []))

    def by_name(self, name: str) -> ModelRef:
        return next(p for p in self.models() if p.name == name)


@dataclass(frozen=True)
class StudyPair:
    """Two parents a kinship study merges (with their shared base, if any) and the tasks it scores them on."""

    name: str
    parents: tuple[Path, Path]
    base: Path | None = None
    tasks: tuple[str, ...] = ()  # lm-eval task names; empty: the study's --tasks, else the parents' zoo's tasks
    task_paths: tuple[Path, ...] = ()  # folders of task YAMLs the tasks need
    group: str = ""  # e.g. the zoo (size) the pair comes from: pairs of one group share their shapes
    kind: str = ""  # how the parents are related ("same skill", "across lineages" ...), as the zoo says
    sweep: Path | None = None  # the pair's own sweep spec; None: the study's
    evaluation: EvalSettings | None = None  # how lm-eval prompts the pair (e.g. a chat template); None: the study's

    @property
    def key(self) -> str:
        """The pair's folder under the study's `pairs/` (and its name in the report): GROUP/NAME, or NAME."""
        return f"{self.group}/{self.name}" if self.group else self.name


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class EvalSubject:
    """Anything that is scored: a parent, the base, or a merged candidate."""

    id: str
    kind: ModelKind
    label: str
    candidate: Candidate | None = None
    path: Path | None = None  # the model directory for parents and the base


@dataclass(frozen=True, kw_only=True)
class TaskScore:
    """An aggregate score of one subject on one task."""

    subject_id: str
    task: str
    metric: str
    value: float
    stderr: float | None
    n_items: int


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True)
class AnswerRequest:
    """Prompts the judge stage needs every subject to answer, and how to sample the answers."""

    prompts: tuple[str, ...]
    max_tokens: int
    temperature: float

    def keys(self) -> list[tuple[str, int, float]]:
        return [(prompt, self.max_tokens, self.temperature) for prompt in self.prompts]


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A judged model's answer to one rubric question, with the sampling config (JSON) that produced it."""

    subject_id: str
    rubric: str
    question_id: str
    prompt: str
    answer: str
    sampling: str


@dataclass(frozen=True, kw_only=True)
class Judgment:
    """One judge's score of one answer on one criterion; `score` is None when the reply could not be read."""

    subject_id: str
    rubric: str
    question_id: str
    criterion: str
    judge: str
    sample: int
    score: float | None
    parse_status: ParseStatus
    raw_reply: str
    # The judge is the judged model itself or one of its parents: its scores may favour its own style.
    self_preference: bool = False
    # The judge's probability-weighted score (judge_parse.expected_score), where its token logprobs were asked for.
    expected_score: float | None = None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A pairwise judgment of a subject's answer against an opponent's, judged in both orders.

    `verdict_first` is the judge's pick ("A", "B", "tie" or None) with the subject's answer shown first (as A),
    `verdict_swapped` with it shown second (as B).
    """

    subject_id: str
    opponent_id: str
    rubric: str
    question_id: str
    judge: str
    sample: int
    verdict_first: Verdict | None
    verdict_swapped: Verdict | None
    raw_first: str
    raw_swapped: str
    self_preference: bool = False

    @property
    def consistent(self) -> bool | None:
        """Whether both orders agree on the subject's outcome (None when a verdict is missing)."""
        first, swapped = self._outcomes()
        return None if first is None or swapped is None else first == swapped

    @property
    def outcome(self) -> Outcome | None:
        """ "win", "loss" or "tie" for the subject; orders that disagree count as a tie; None when missing."""
        first, swapped = self._outcomes()
        if first is None or swapped is None:
            return None
        return first if first == swapped else "tie"

    def _outcomes(self) -> tuple[Outcome | None, Outcome | None]:
        as_first: dict[str, Outcome] = {"A": "win", "B": "loss", "tie": "tie"}
        as_second: dict[str, Outcome] = {"A": "loss", "B": "win", "tie": "tie"}
        return as_first.get(self.verdict_first or ""), as_second.get(self.verdict_swapped or "")


def stand_in_parents(count: int) -> ParentSet:
    """Parents and a base that exist only as absolute paths: expansion never opens them."""
    root = Path("/stand-in")
    return ParentSet(
        parents=tuple(ModelRef(f"parent{i + 1}", root / f"parent{i + 1}") for i in range(count)),
        base=ModelRef("base", root / "base"),
    )
