"""The unit of work of a sweep: merge one subject, load it into a backend, score it with lm-eval, answer the judge."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergescope.faults import kill_point
from mergescope.merging.merge import merge_to_disk
from mergescope.runs.records import AnswerRequest, EvalSubject, Evaluation
from mergescope.scoring.lmeval import TaskRunner, TaskSuite
from mergescope.serving import create_backend
from mergescope.serving.chat import has_chat_template


@dataclass(frozen=True)
class EvalJob:
    """What every worker of a sweep needs to evaluate any subject; small and picklable."""

    suite: TaskSuite
    merges_root: Path
    backend: str
    backend_options: Any | None = None  # the backend's options record (sweep.plan_sweep checks it); None: defaults
    answer_requests: tuple[AnswerRequest, ...] = ()  # the judge's questions, answered while the model is loaded
    samples: dict[str, tuple[int, ...]] | None = None  # score only these doc ids per task (a search's fitness subset)


@dataclass(frozen=True)
class SubjectResult:
    subject: EvalSubject
    evaluation: Evaluation
    merge_seconds: float | None
    answers: dict[tuple[str, int, float], str] = field(default_factory=dict)  # AnswerRequest key -> completion
    answers_chat_template: bool = False  # whether the answers were asked through the model's chat template


class SubjectWorker:
    """Holds one backend (one live engine) and the loaded tasks; evaluates subjects one after another."""

    def __init__(self, job: EvalJob):
        self.job = job
        self.backend = create_backend(job.backend, job.backend_options)
        self.tasks = TaskRunner(job.suite)

    def evaluate(self, subject: EvalSubject) -> SubjectResult:
        """Merge (unless cached on disk), load and score `subject`."""
        started = time.perf_counter()
        if subject.path is not None:  # a parent, the base, or a candidate merged before
            model_dir = subject.path
        elif subject.candidate is not None:
            model_dir = merge_to_disk(subject.candidate, self.job.merges_root)
        else:
            raise ValueError(f"subject {subject.id} has neither a model directory nor a candidate")
        merge_seconds = time.perf_counter() - started if subject.candidate else None
        lm = self.backend.load(model_dir)
        kill_point("eval.before")
        evaluation = self.tasks.evaluate(lm, subject.id, self.job.samples)
        kill_point("eval.after")
        return SubjectResult(
            subject, evaluation, merge_seconds, self._answers(), has_chat_template(self.backend.tokenizer)
        )

    def _answers(self) -> dict[tuple[str, int, float], str]:
        """The loaded model's completions of the job's answer requests (the judge grades them elsewhere)."""
        answers: dict[tuple[str, int, float], str] = {}
        for request in self.job.answer_requests:
            completions = self.backend.generate(list(request.prompts), request.max_tokens, request.temperature)
            answers.update(zip(request.keys(), completions, strict=True))
        return answers

    def close(self) -> None:
        self.backend.close()
