"""The judge's tables in a run's results store: answers, judgments, comparisons, judging status, statistics.

Judge scores also go into the store's `scores` and `items` tables (task `judge_<rubric>_<judge>`, one metric
per criterion plus `overall`, and the same with a `_weighted` suffix where the judge's probability-weighted
scores were asked for), so the emergence analysis reads them like any other score.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mergescope.runs.records import Answer, Comparison, Judgment, ReplyFormat
from mergescope.runs.store import ResultsStore
from mergescope.scoring.rubric import Rubric

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    subject_id TEXT NOT NULL, rubric TEXT NOT NULL, question_id TEXT NOT NULL, prompt TEXT NOT NULL,
    answer TEXT NOT NULL, sampling TEXT NOT NULL, PRIMARY KEY (subject_id, rubric, question_id)
);
CREATE TABLE IF NOT EXISTS judgments (
    subject_id TEXT NOT NULL, rubric TEXT NOT NULL, rubric_version TEXT NOT NULL, question_id TEXT NOT NULL,
    criterion TEXT NOT NULL, judge TEXT NOT NULL, sample INTEGER NOT NULL, score REAL, parse_status TEXT NOT NULL,
    raw_reply TEXT NOT NULL, self_preference INTEGER NOT NULL, expected_score REAL,
    PRIMARY KEY (subject_id, rubric, question_id, criterion, judge, sample)
);
CREATE TABLE IF NOT EXISTS comparisons (
    subject_id TEXT NOT NULL, opponent_id TEXT NOT NULL, rubric TEXT NOT NULL, question_id TEXT NOT NULL,
    judge TEXT NOT NULL, sample INTEGER NOT NULL, verdict_first TEXT, verdict_swapped TEXT, outcome TEXT,
    consistent INTEGER, raw_first TEXT NOT NULL, raw_swapped TEXT NOT NULL, self_preference INTEGER NOT NULL,
    PRIMARY KEY (subject_id, opponent_id, rubric, question_id, judge, sample)
);
CREATE TABLE IF NOT EXISTS judge_status (
    subject_id TEXT NOT NULL, rubric TEXT NOT NULL, judge TEXT NOT NULL, status TEXT NOT NULL,
    n_expected INTEGER NOT NULL, n_done INTEGER NOT NULL, error TEXT, updated_at TEXT NOT NULL, reply_format TEXT,
    PRIMARY KEY (subject_id, rubric, judge)
);
CREATE TABLE IF NOT EXISTS judge_stats (
    judge TEXT, rubric TEXT NOT NULL, criterion TEXT, statistic TEXT NOT NULL, value REAL, ci_low REAL,
    ci_high REAL, n INTEGER, detail TEXT
);
"""


def ensure_tables(store: ResultsStore) -> None:
    with store.transaction() as db:
        db.executescript(SCHEMA)
        if "expected_score" not in {row[1] for row in db.execute("PRAGMA table_info(judgments)")}:
            db.execute("ALTER TABLE judgments ADD COLUMN expected_score REAL")  # a run judged before logprobs
        if "reply_format" not in {row[1] for row in db.execute("PRAGMA table_info(judge_status)")}:
            db.execute("ALTER TABLE judge_status ADD COLUMN reply_format TEXT")  # judged before reply formats


def judge_task(rubric: str, judge: str) -> str:
    """The `scores` task name of one rubric as graded by one judge (a path-like judge name is shortened)."""
    short = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(judge.rstrip("/")).name or judge)
    return f"judge_{rubric}_{short}"


# -- writing --------------------------------------------------------------------------------------
def write_answers(store: ResultsStore, answers: list[Answer]) -> None:
    with store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
            [(a.subject_id, a.rubric, a.question_id, a.prompt, a.answer, a.sampling) for a in answers],
        )


def write_judgments(store: ResultsStore, rubric: Rubric, judgments: list[Judgment]) -> None:
    with store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    j.subject_id,
                    j.rubric,
                    str(rubric.version),
                    j.question_id,
                    j.criterion,
                    j.judge,
                    j.sample,
                    j.score,
                    j.parse_status,
                    j.raw_reply,
                    int(j.self_preference),
                    j.expected_score,
                )
                for j in judgments
            ],
        )


def write_comparisons(store: ResultsStore, comparisons: list[Comparison]) -> None:
    with store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO comparisons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.subject_id,
                    c.opponent_id,
                    c.rubric,
                    c.question_id,
                    c.judge,
                    c.sample,
                    c.verdict_first,
                    c.verdict_swapped,
                    c.outcome,
                    None if c.consistent is None else int(c.consistent),
                    c.raw_first,
                    c.raw_swapped,
                    int(c.self_preference),
                )
                for c in comparisons
            ],
        )


def write_status(
    store: ResultsStore,
    subject_id: str,
    rubric: str,
    judge: str,
    n_expected: int,
    n_done: int,
    error: str | None,
    reply_format: ReplyFormat | None = None,
) -> None:
    """Mark one subject's judging complete, or incomplete with the reason, and how the judge was asked to reply
    (None: it could not be asked)."""
    status = "complete" if n_done >= n_expected and not error else "incomplete"
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO judge_status VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'), ?)",
            (subject_id, rubric, judge, status, n_expected, n_done, error, reply_format),
        )


def write_judge_scores(
    store: ResultsStore, rubric: Rubric, judge: str, judgments: list[Judgment], answers: list[Answer]
) -> None:
    """Replace the subject's judge scores in `scores` and `items`: per-question means over samples."""
    if not judgments:
        return
    subject_id, task = judgments[0].subject_id, judge_task(rubric.name, judge)
    metrics = _metric_values(_question_means(judgments, lambda j: j.score), rubric)
    weighted = _metric_values(_question_means(judgments, lambda j: j.expected_score), rubric)
    metrics |= {f"{name}_weighted": values for name, values in weighted.items()}
    by_question = {a.question_id: a for a in answers}
    order = {q.id: number for number, q in enumerate(rubric.questions)}
    with store.transaction() as db:
        db.execute("DELETE FROM scores WHERE subject_id = ? AND task = ?", (subject_id, task))
        db.execute("DELETE FROM items WHERE subject_id = ? AND task = ?", (subject_id, task))
        for metric, values in metrics.items():
            db.execute(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                (subject_id, task, metric, *_mean_and_stderr(list(values.values())), len(values)),
            )
            db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        subject_id,
                        task,
                        order[qid],
                        metric,
                        _question_hash(rubric, qid),
                        value,
                        by_question[qid].prompt if qid in by_question else None,
                        rubric.question(qid).reference,
                        by_question[qid].answer if qid in by_question else None,
                    )
                    for qid, value in values.items()
                ],
            )


def _question_means(
    judgments: list[Judgment], value: Callable[[Judgment], float | None]
) -> dict[str, dict[str, float]]:
    """criterion -> question -> mean `value` over the samples that have one (missing samples left out)."""
    collected: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for j in judgments:
        score = value(j)
        if score is not None:
            collected[j.criterion][j.question_id].append(score)
    return {c: {q: sum(v) / len(v) for q, v in questions.items()} for c, questions in collected.items()}


def _metric_values(per_question: dict[str, dict[str, float]], rubric: Rubric) -> dict[str, dict[str, float]]:
    """`overall` (mean over criteria of each question graded on all of them) first, then each criterion."""
    names = [c.name for c in rubric.criteria]
    complete = [q for q in rubric.questions if all(q.id in per_question.get(n, {}) for n in names)]
    overall = {q.id: sum(per_question[n][q.id] for n in names) / len(names) for q in complete}
    metrics = {"overall": overall} if overall else {}
    metrics.update({name: per_question[name] for name in names if per_question.get(name)})
    return metrics


def _mean_and_stderr(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def _question_hash(rubric: Rubric, question_id: str) -> str:
    return hashlib.sha256(rubric.question(question_id).question.encode()).hexdigest()[:16]


# -- reading --------------------------------------------------------------------------------------
def stored_answers(store: ResultsStore, subject_id: str, rubric: str) -> list[Answer]:
    rows = store.query("SELECT * FROM answers WHERE subject_id = ? AND rubric = ?", subject_id, rubric)
    return [
        Answer(
            subject_id=r["subject_id"],
            rubric=r["rubric"],
            question_id=r["question_id"],
            prompt=r["prompt"],
            answer=r["answer"],
            sampling=r["sampling"],
        )
        for r in rows
    ]


def incomplete_subjects(store: ResultsStore) -> list[str]:
    rows = store.query("SELECT DISTINCT subject_id FROM judge_status WHERE status != 'complete' ORDER BY subject_id")
    return [r["subject_id"] for r in rows]


@dataclass(frozen=True, kw_only=True)
class ReplyCount:
    """How many of one judge's grading replies on one rubric, asked for in one format, left a score missing."""

    rubric: str
    reply_format: ReplyFormat | None  # None: judged before reply formats were recorded
    replies: int  # one per (subject, question, sample)
    unreadable: int  # replies with at least one criterion's score missing (empty, unparseable or out of range)


def reply_counts(store: ResultsStore, judge: str) -> list[ReplyCount]:
    """The grading replies of `judge` stored in the run and how many were unreadable, per rubric and format."""
    rows = store.query(
        "SELECT r.rubric, s.reply_format, COUNT(*) AS replies, SUM(r.missing > 0) AS unreadable FROM ("
        " SELECT subject_id, rubric, judge, SUM(score IS NULL) AS missing FROM judgments WHERE judge = ?"
        " GROUP BY subject_id, rubric, judge, question_id, sample) r"
        " LEFT JOIN judge_status s USING (subject_id, rubric, judge) GROUP BY r.rubric, s.reply_format"
        " ORDER BY r.rubric, s.reply_format",
        judge,
    )
    return [
        ReplyCount(rubric=r["rubric"], reply_format=r["reply_format"], replies=r["replies"], unreadable=r["unreadable"])
        for r in rows
    ]


def write_stats(store: ResultsStore, rows: list[dict]) -> None:
    """Replace the judge_stats table with `rows` (dicts with the table's columns; `detail` as a dict)."""
    columns = ("judge", "rubric", "criterion", "statistic", "value", "ci_low", "ci_high", "n", "detail")
    with store.transaction() as db:
        db.execute("DELETE FROM judge_stats")
        db.executemany(
            "INSERT INTO judge_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                tuple(json.dumps(row[c]) if c == "detail" and row.get(c) is not None else row.get(c) for c in columns)
                for row in rows
            ],
        )


def sampling_json(rubric: Rubric, backend: str, chat_template: bool) -> str:
    """The sampling config an answer was generated with, as stored beside it (`chat_template`: whether the
    question was asked through the model's chat template)."""
    return json.dumps(
        {"backend": backend, "chat_template": chat_template, **rubric.generation.model_dump(exclude={"prompt_format"})},
        sort_keys=True,
    )
