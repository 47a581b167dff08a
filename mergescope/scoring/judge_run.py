"""The judging stage of a run: generate answers, grade them, compare candidates with parents, store it all.

`RunJudging` is used by the sweep (right after each subject's lm-eval scores are stored; the worker that
served the subject, in this process or a Ray actor, answered the rubric questions while the model was
loaded, so grading needs no model here) and by `mergescope judge RUN`, which re-judges finished subjects in
two passes: first every answer not stored yet, generated on the run's backend (a vLLM engine for a run
served by vllm: one engine, weights swapped per subject, each subject's answers in one batch), which is then
closed; then the judging, so that the engine and a judge served on the same machine never compete. Both
passes draw a progress bar (answers, then subjects). When the judge endpoint fails for good, what was
judged is kept, the rest of the run's subjects are marked `incomplete` in `judge_status`, and the run
carries on. How the judge was asked to reply (judge.py: structured or free text) is kept per subject in
`judge_status.reply_format` and per rubric in the judging meta.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mergescope.errors import ConfigError
from mergescope.faults import kill_point
from mergescope.runs.directory import (
    JudgingMeta,
    LockedRun,
    RunMeta,
    judging_meta,
    merges_dir,
    run_meta,
    stored_subjects,
    write_judging_meta,
)
from mergescope.runs.records import Answer, AnswerRequest, EvalSubject, ReplyFormat
from mergescope.runs.store import ResultsStore
from mergescope.scoring import judge_store
from mergescope.scoring.judge import (
    DEFAULT_API_KEY_ENV,
    JudgeEndpoint,
    JudgeSession,
    ReplyFormatChoice,
    compare,
    grade,
    is_self_preference,
)
from mergescope.scoring.rubric import Rubric, answer_prompt, cut_at_stop, find_rubric
from mergescope.serving import BACKENDS, Backend, create_backend, default_backend
from mergescope.serving.chat import has_chat_template

CACHE_NAME = "judge_cache.sqlite"


@dataclass(frozen=True)
class Completions:
    """The judged model's answers, and whether they were asked through its chat template."""

    texts: list[str]
    chat_template: bool


# (prompts, max_tokens, temperature) -> completions, from the model being judged.
Completer = Callable[[list[str], int, float], Completions]


@dataclass(frozen=True)
class JudgeSettings:
    """Which judge grades which rubrics, and how."""

    url: str
    model: str
    rubrics: tuple[str, ...]
    api_key_env: str = DEFAULT_API_KEY_ENV
    samples: int = 1
    temperature: float = 0.0
    pairwise: bool = True
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    logprobs: int = 0  # >0: ask for that many top alternatives per token and keep probability-weighted scores
    max_tokens: int | None = None  # the judge's reply budget; None: each rubric's judge_max_tokens
    cache_path: Path | None = None  # default: RUN/judge_cache.sqlite
    reply_format: ReplyFormatChoice = "auto"  # "auto": the rubric's JSON schema where the judge's server takes it

    def endpoint(self) -> JudgeEndpoint:
        return JudgeEndpoint(
            url=self.url,
            model=self.model,
            api_key_env=self.api_key_env,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            concurrency=self.concurrency,
            logprobs=self.logprobs,
            reply_format=self.reply_format,
        )


def sweep_judge(
    url: str | None,
    model: str | None,
    rubrics: Sequence[str | Path],
    api_key_env: str = DEFAULT_API_KEY_ENV,
    logprobs: int = 0,
    max_tokens: int | None = None,
) -> JudgeSettings | None:
    """The judge a sweep's options ask for (None without --judge-url and --rubric), checked for a model and a rubric."""
    if not url and not rubrics:
        return None
    if not (url and model and rubrics):
        raise ConfigError(
            "judging needs --judge-url, --judge-model and at least one --rubric together",
            hint="e.g. --judge-url http://localhost:8000/v1 --judge-model M --rubric zoo_skills",
        )
    return JudgeSettings(
        url=url,
        model=model,
        rubrics=tuple(str(r) for r in rubrics),
        api_key_env=api_key_env,
        logprobs=logprobs,
        max_tokens=max_tokens,
    )


@dataclass
class RunJudging:
    """The judge stage of one run's store; `judge_subject` per subject, then `close`."""

    settings: JudgeSettings
    store: ResultsStore
    run_dir: Path
    backend: str = "hf"
    rubrics: list[Rubric] = field(init=False)
    session: JudgeSession = field(init=False)

    def __post_init__(self) -> None:
        self.rubrics = [find_rubric(r) for r in self.settings.rubrics]
        judge_store.ensure_tables(self.store)
        self.session = JudgeSession(self.settings.endpoint(), self.settings.cache_path or self.run_dir / CACHE_NAME)
        for rubric in self.rubrics:  # before any model is merged or asked: a judge too short for the rubric
            self.session.check_fits(rubric, self.settings.pairwise)

    def answer_requests(self) -> tuple[AnswerRequest, ...]:
        """What each subject must answer for the rubrics: asked of the worker that serves the subject."""
        return tuple(
            AnswerRequest(
                tuple(answer_prompt(rubric, q) for q in rubric.questions),
                rubric.generation.max_tokens,
                rubric.generation.temperature,
            )
            for rubric in self.rubrics
        )

    def judge_subject(self, subject: EvalSubject, complete: Completer) -> str:
        """Judge one subject on every rubric; returns a one-line summary for the progress log."""
        parts = []
        for rubric in self.rubrics:
            answers = self._answers(subject, rubric, complete)
            kill_point("judge.answers_written")
            expected, done = self._judge(subject, rubric, answers)
            reply_format = self.session.reply_formats.get(rubric.name)
            judge_store.write_status(
                self.store,
                subject.id,
                rubric.name,
                self.settings.model,
                expected,
                done,
                self.session.failure,
                reply_format,
            )
            parts.append(f"{rubric.name} {done}/{expected} judged" + (f" ({reply_format})" if reply_format else ""))
        failure = f" (judging incomplete: {self.session.failure})" if self.session.failure else ""
        return f"  {subject.label}: " + ", ".join(parts) + failure

    def _reply_formats(self) -> dict[str, ReplyFormat]:
        """Each rubric's reply format by label: as this process settled it, else as the store's status rows say
        (a resumed run whose subjects were all judged before never asks the judge, so never settles one)."""
        stored = {
            row["rubric"]: row["reply_format"]
            for row in self.store.query(
                "SELECT rubric, reply_format FROM judge_status WHERE judge = ? AND reply_format IS NOT NULL"
                " ORDER BY updated_at",
                self.settings.model,
            )
        }
        formats = {**stored, **self.session.reply_formats}
        return {r.label: formats[r.name] for r in self.rubrics if r.name in formats}

    def missing_answers(self, subject: EvalSubject) -> int:
        """How many of the rubrics' questions the subject has no stored answer to."""
        return sum(
            len(
                {q.id for q in rubric.questions}
                - {a.question_id for a in judge_store.stored_answers(self.store, subject.id, rubric.name)}
            )
            for rubric in self.rubrics
        )

    def answer(self, subject: EvalSubject, complete: Completer) -> None:
        """Generate and store the subject's missing answers to every rubric."""
        for rubric in self.rubrics:
            self._answers(subject, rubric, complete)

    def _answers(self, subject: EvalSubject, rubric: Rubric, complete: Completer) -> list[Answer]:
        """The subject's stored answers to the rubric's questions, generating the missing ones."""
        stored = {a.question_id: a for a in judge_store.stored_answers(self.store, subject.id, rubric.name)}
        missing = [q for q in rubric.questions if q.id not in stored]
        if missing:
            prompts = [answer_prompt(rubric, q) for q in missing]
            replies = complete(prompts, rubric.generation.max_tokens, rubric.generation.temperature)
            sampling = judge_store.sampling_json(rubric, self.backend, replies.chat_template)
            fresh = [
                Answer(
                    subject_id=subject.id,
                    rubric=rubric.name,
                    question_id=q.id,
                    prompt=prompt,
                    answer=cut_at_stop(reply, rubric.generation.stop),
                    sampling=sampling,
                )
                for q, prompt, reply in zip(missing, prompts, replies.texts, strict=True)
            ]
            judge_store.write_answers(self.store, fresh)
            stored.update({a.question_id: a for a in fresh})
        return [stored[q.id] for q in rubric.questions]

    def _judge(self, subject: EvalSubject, rubric: Rubric, answers: list[Answer]) -> tuple[int, int]:
        """Grade (and compare with the parents) one subject's answers; returns (judgments expected, done)."""
        samples, judge = self.settings.samples, self.settings.model
        judgments = grade(self.session, rubric, answers, samples, self._self_preference(subject))
        judge_store.write_judgments(self.store, rubric, judgments)
        kill_point("judge.graded")
        judge_store.write_judge_scores(self.store, rubric, judge, judgments, answers)
        expected, done = len(answers) * samples, len({(j.question_id, j.sample) for j in judgments})
        for opponent in self._opponents(subject):
            theirs = judge_store.stored_answers(self.store, opponent.id, rubric.name)
            comparisons = compare(
                self.session, rubric, answers, theirs, samples, self._self_preference(subject, opponent)
            )
            judge_store.write_comparisons(self.store, comparisons)
            expected, done = expected + len(theirs) * samples, done + len(comparisons)
        return expected, done

    def _opponents(self, subject: EvalSubject) -> list[EvalSubject]:
        """The parents a candidate is compared with pairwise (none for parents, the base, or without pairwise)."""
        if subject.kind != "candidate" or not self.settings.pairwise:
            return []
        return [s for s in stored_subjects(self.store, self.run_dir) if s.kind == "parent"]

    def _self_preference(self, subject: EvalSubject, opponent: EvalSubject | None = None) -> bool:
        """Whether the judge is one of the compared models, or (for a candidate) one of its parents or base."""
        compared = [subject] + ([opponent] if opponent else [])
        if subject.kind == "candidate":
            compared += [s for s in stored_subjects(self.store, self.run_dir) if s.kind in ("parent", "base")]
        models = [(s.label, str(s.path) if s.path else None) for s in compared]
        return is_self_preference(self.settings.model, models)

    def close(self) -> list[str]:
        """Write the agreement statistics and the run's judging flag; returns the incompletely judged subjects."""
        import pandas as pd

        from mergescope.scoring.agreement import judge_statistics  # scipy and sklearn: only once judging ends

        try:
            judgments = pd.read_sql_query("SELECT * FROM judgments", self.store.connection)
            comparisons = pd.read_sql_query("SELECT * FROM comparisons", self.store.connection)
            kill_point("judge.closing")
            judge_store.write_stats(self.store, judge_statistics(judgments, comparisons))
            incomplete = judge_store.incomplete_subjects(self.store)
            write_judging_meta(
                self.store,
                JudgingMeta(
                    judge_model=self.settings.model,
                    judge_url=self.settings.url,
                    samples=self.settings.samples,
                    temperature=self.settings.temperature,
                    pairwise=self.settings.pairwise,
                    logprobs=self.settings.logprobs,
                    max_tokens=self.settings.max_tokens,
                    rubrics=tuple(r.label for r in self.rubrics),
                    rubric_sources=tuple(str(Path(r.source).resolve()) for r in self.rubrics if r.source),
                    complete=not incomplete,
                    incomplete_subjects=tuple(incomplete),
                    last_error=self.session.failure,
                    reply_formats=self._reply_formats(),
                ),
            )
            return incomplete
        finally:
            self.session.close()


def answered(answers: dict[tuple[str, int, float], str], chat_template: bool) -> Completer:
    """A Completer over completions a worker already made for the subject (keys: `AnswerRequest.keys`)."""

    def complete(prompts: list[str], max_tokens: int, temperature: float) -> Completions:
        return Completions([answers[(prompt, max_tokens, temperature)] for prompt in prompts], chat_template)

    return complete


def judged_ids(store: ResultsStore, settings: JudgeSettings) -> set[str]:
    """Subjects with a judging status (complete or not) for every rubric of `settings` by its judge."""
    judge_store.ensure_tables(store)
    rubrics = {find_rubric(r).name for r in settings.rubrics}
    rows = store.query("SELECT subject_id, rubric FROM judge_status WHERE judge = ?", settings.model)
    judged: dict[str, set[str]] = {}
    for row in rows:
        judged.setdefault(row["subject_id"], set()).add(row["rubric"])
    return {subject for subject, names in judged.items() if rubrics <= names}


@dataclass(frozen=True)
class JudgeRunResult:
    run_dir: Path
    n_subjects: int
    incomplete: list[str]
    requests_sent: int
    failure: str | None = None  # why judging stopped, when the judge failed for good
    reply_counts: tuple[judge_store.ReplyCount, ...] = ()  # the judge's grading replies in the run, readable or not


def judge_run(
    run_dir: Path,
    settings: JudgeSettings,
    backend_name: str | None = None,
    dtype: str | None = None,
    progress: bool = False,
) -> JudgeRunResult:
    """(Re)judge every finished subject of a run; cached judgments and stored answers cost nothing. Missing answers
    are generated first, on `backend_name` (default: the run's) in `dtype` (default: the dtype the run was served
    in); `progress` draws bars over the answers and then the subjects."""
    with LockedRun(Path(run_dir)) as store:
        if not settings.rubrics:
            judged = judging_meta(store)
            settings = replace(settings, rubrics=judged.rubric_sources if judged else ())
        if not settings.rubrics:
            raise ConfigError(
                f"{run_dir} has never been judged, so there is no rubric to reuse",
                hint="pass --rubric FILE.yaml, or a shipped rubric's name such as zoo_skills",
            )
        provenance = run_meta(store)
        backend_name = backend_name or (provenance.backend if provenance else None) or default_backend()
        models = ModelLoader(backend_name, Path(run_dir), answer_options(provenance, backend_name, dtype))
        judging = RunJudging(settings, store, Path(run_dir), backend=backend_name)
        subjects = stored_subjects(store, Path(run_dir))
        try:
            try:
                generate_answers(judging, subjects, models, progress)
            finally:
                models.close()  # before judging: a judge on this machine gets the engine's memory and cores
            bar = tqdm(subjects, desc="judging", unit="model", disable=not progress)
            for subject in bar:
                bar.set_postfix_str(subject.label)
                summary = judging.judge_subject(subject, models.completer(subject))
                if progress:
                    tqdm.write(summary)
        finally:
            incomplete = judging.close()
        return JudgeRunResult(
            Path(run_dir),
            len(subjects),
            incomplete,
            judging.session.requests_sent,
            judging.session.failure,
            tuple(judge_store.reply_counts(store, settings.model)),
        )


def generate_answers(judging: RunJudging, subjects: list[EvalSubject], models: ModelLoader, progress: bool) -> None:
    """Store every subject's missing answers, with a bar over the answers (postfix: the subject answering)."""
    missing = {subject.id: judging.missing_answers(subject) for subject in subjects}
    if not any(missing.values()):
        return
    with tqdm(total=sum(missing.values()), desc="answers", unit="answer", disable=not progress) as bar:
        for subject in subjects:
            if missing[subject.id]:
                bar.set_postfix_str(subject.label)
                judging.answer(subject, models.completer(subject, bar.update))


def answer_options(provenance: RunMeta | None, backend_name: str, dtype: str | None) -> Any:
    """The options record of the backend that generates a run's missing answers: in `dtype`, by default in the
    dtype the run's models were served in (its spec's), so that answers match the scores beside them."""
    served = provenance.served_dtype() if provenance is not None else "float32"
    return BACKENDS.options(backend_name, {"dtype": dtype or served})


class ModelLoader:
    """Loads a subject's model into the backend only when its answers must be generated."""

    def __init__(self, backend_name: str, run_dir: Path, options: Any):
        self.backend_name, self.run_dir, self.options = backend_name, run_dir, options  # options: checked record
        self.backend: Backend | None = None
        self.loaded: str | None = None  # the id of the subject the backend holds

    def completer(self, subject: EvalSubject, answered: Callable[[int], object] | None = None) -> Completer:
        """A Completer that loads `subject` on first use; `answered(n)` is called as answers come: after each
        prompt on a backend that generates one by one, after each call on one that batches."""

        def complete(prompts: list[str], max_tokens: int, temperature: float) -> Completions:
            backend = self._load(subject)
            step = max(len(prompts), 1) if getattr(backend, "batched", False) else 1
            texts: list[str] = []
            for start in range(0, len(prompts), step):
                chunk = prompts[start : start + step]
                texts += backend.generate(chunk, max_tokens, temperature)
                if answered is not None:
                    answered(len(chunk))
            return Completions(texts, has_chat_template(backend.tokenizer))

        return complete

    def _load(self, subject: EvalSubject) -> Backend:
        """The backend, holding `subject` (loaded now unless it already was)."""
        from mergescope.merging.merge import merge_to_disk  # safetensors and mergekit: only when a model must answer

        self.backend = self.backend or create_backend(self.backend_name, self.options)
        if self.loaded == subject.id:
            return self.backend
        model_dir = merge_to_disk(subject.candidate, merges_dir(self.run_dir)) if subject.candidate else subject.path
        if model_dir is None:
            raise ValueError(f"subject {subject.id} has neither a model directory nor a candidate")
        self.backend.load(model_dir)
        self.loaded = subject.id
        return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
