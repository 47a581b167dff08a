"""A run whose subjects finished lm-eval and answered the judge's questions, so judging it loads no model."""

from __future__ import annotations

from pathlib import Path

from mergescope.runs.records import Answer, Candidate, EvalSubject, Evaluation
from mergescope.runs.store import ResultsStore

FAST = dict(timeout_s=2.0, max_retries=2, backoff_s=0.01)  # a judge endpoint's options for tests: fail fast


def answers(subject_id: str, texts: dict[str, str]) -> list[Answer]:
    return [
        Answer(subject_id=subject_id, rubric="mini", question_id=qid, prompt=f"Q: {qid}", answer=text, sampling="{}")
        for qid, text in texts.items()
    ]


def store_with_subjects(run_dir: Path) -> ResultsStore:
    """A run store whose two parents and one candidate finished lm-eval (no scores, the stage does not need them)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(run_dir / "results.sqlite")
    candidate = Candidate(id="cand1", method="linear", label="linear w=0.5", mergekit_config={"merge_method": "linear"})
    subjects = [
        EvalSubject(id="parent-arith", kind="parent", label="arith", path=Path("/zoo/arith")),
        EvalSubject(id="parent-facts", kind="parent", label="facts", path=Path("/zoo/facts")),
        EvalSubject(id="cand1", kind="candidate", label="linear w=0.5", candidate=candidate),
    ]
    store.plan(subjects)
    for subject in subjects:
        store.record(subject, Evaluation((), (), 0.0))
    return store


def run_with_answers(run_dir: Path, texts: dict[str, dict[str, str]] | None = None) -> Path:
    """A finished run whose subjects' answers (`texts` by subject, by question) are stored, so `mergescope judge`
    loads no model; by default every subject answered both questions right."""
    from mergescope.scoring import judge_store

    texts = texts or {s: {"add": "43", "sub": "48"} for s in ("parent-arith", "parent-facts", "cand1")}
    store = store_with_subjects(run_dir)
    judge_store.ensure_tables(store)
    judge_store.write_answers(store, [a for subject, given in texts.items() for a in answers(subject, given)])
    store.close()
    return run_dir
