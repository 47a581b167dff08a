"""The judge stage of a run (scoring/judge_run.py): answers, grades and comparisons stored, judging marked
incomplete when the judge fails and completed by a rerun, the `judge` command, a zoo sweep with a judge."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import fake_backend
from helpers import judge_server as js
from helpers.judged_runs import FAST, run_with_answers, store_with_subjects
from mergescope.cli.app import app
from mergescope.runs.directory import judging_meta, stored_subjects
from mergescope.runs.store import ResultsStore
from mergescope.scoring.judge_run import Completions, JudgeSettings, RunJudging

CANNED = {
    "parent-arith": {"What is 31 plus 12?": "43", "What is 73 minus 25?": "40"},
    "parent-facts": {"What is 31 plus 12?": "3", "What is 73 minus 25?": "4"},
    "cand1": {"What is 31 plus 12?": "43\nQ: more", "What is 73 minus 25?": "48"},
}


def canned_model(subject_id: str, calls: list):
    """A stand-in for backend.generate: answers by prompt, as one loaded model would."""

    def generate(prompts, max_tokens, temperature):
        calls.append((subject_id, max_tokens, temperature))
        return Completions([CANNED[subject_id][p.removeprefix("Q: ").removesuffix("\nA:")] for p in prompts], False)

    return generate


def judge_all(server, run_dir, rubric, store, calls, **options) -> list[str]:
    settings = JudgeSettings(url=server.url, model="arith", rubrics=(rubric.source,), **{**FAST, **options})
    judging = RunJudging(settings, store, run_dir)
    for subject_id in ("parent-arith", "parent-facts", "cand1"):
        subject = next(s for s in stored_subjects(store, run_dir) if s.id == subject_id)
        judging.judge_subject(subject, canned_model(subject_id, calls))
    return judging.close()


def test_the_judge_stage_stores_answers_judgments_comparisons_scores_and_stats(server, tmp_path, rubric):
    run_dir = tmp_path / "run"
    store = store_with_subjects(run_dir)
    calls = []
    assert judge_all(server, run_dir, rubric, store, calls) == []
    db = sqlite3.connect(run_dir / "results.sqlite")
    assert db.execute(
        "SELECT answer, sampling FROM answers WHERE subject_id = 'cand1' AND question_id = 'add'"
    ).fetchone() == (
        "43",
        json.dumps(
            {"backend": "hf", "chat_template": False, "max_tokens": 8, "stop": ["\n"], "temperature": 0.0},
            sort_keys=True,
        ),
    )
    assert calls == [("parent-arith", 8, 0.0), ("parent-facts", 8, 0.0), ("cand1", 8, 0.0)]
    assert db.execute("SELECT count(*) FROM judgments").fetchone()[0] == 3 * 2 * 2
    outcomes = dict(((o, q), r) for o, q, r in db.execute("SELECT opponent_id, question_id, outcome FROM comparisons"))
    assert outcomes == {
        ("parent-arith", "add"): "tie",
        ("parent-arith", "sub"): "win",
        ("parent-facts", "add"): "win",
        ("parent-facts", "sub"): "win",
    }
    # the judge "arith" is a parent: every judgment of the candidate and of that parent is flagged
    flagged = dict(db.execute("SELECT subject_id, max(self_preference) FROM judgments GROUP BY subject_id"))
    assert flagged == {"parent-arith": 1, "parent-facts": 0, "cand1": 1}
    overall = dict(
        db.execute("SELECT subject_id, value FROM scores WHERE task = 'judge_mini_arith' AND metric = 'overall'")
    )
    assert overall == {"parent-arith": 3.0, "parent-facts": 1.0, "cand1": 5.0}
    assert (
        db.execute("SELECT count(*) FROM items WHERE task = 'judge_mini_arith' AND subject_id = 'cand1'").fetchone()[0]
        == 2 * 3
    )  # two questions x (overall + two criteria)
    assert db.execute("SELECT DISTINCT status FROM judge_status").fetchall() == [("complete",)]
    statistics = {row[0] for row in db.execute("SELECT statistic FROM judge_stats")}
    assert {"parse_failure_rate", "position_bias_rate"} <= statistics
    assert judging_meta(store).complete is True


def test_a_judge_going_down_marks_judging_incomplete_and_rejudging_completes_it(server, tmp_path, rubric):
    run_dir = tmp_path / "run"
    store = store_with_subjects(run_dir)
    server.queue(*[js.honest] * 4)  # the parents are graded, then the judge fails
    server.default = js.status(500)
    incomplete = judge_all(server, run_dir, rubric, store, [], concurrency=1)
    assert incomplete == ["cand1"]
    judged = judging_meta(store)
    assert judged.complete is False and "HTTP 500" in judged.last_error
    assert store.query("SELECT count(*) AS n FROM judgments WHERE subject_id LIKE 'parent-%'")[0]["n"] == 8
    store.close()

    server.default = js.honest
    sent = len(server.requests)
    outcome = CliRunner().invoke(
        app, ["judge", str(run_dir), "--judge-url", server.url, "--judge-model", "arith", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.output)
    # Only the candidate's judgments are new, and answers were stored (no model loaded). Its "add" answer equals
    # parent-arith's: that grade is cached, and both orders of that pair are one request: 1 + 7 requests.
    assert result == {
        "run": str(run_dir),
        "subjects": 3,
        "requests_sent": 8,
        "incomplete": [],
        "replies": [{"rubric": "mini", "reply_format": "structured", "replies": 6, "unreadable": 0}],
    }
    assert len(server.requests) == sent + 8


def judge_command(run_dir: Path, url: str, rubric, *flags: str):
    """`mergescope judge RUN` with judge model "m" on `rubric`, plus `flags`."""
    return CliRunner().invoke(
        app, ["judge", str(run_dir), "--judge-url", url, "--judge-model", "m", "--rubric", rubric.source, *flags]
    )


def test_the_judge_command_exits_1_when_the_endpoint_is_down(tmp_path, rubric):
    run_dir = run_with_answers(tmp_path / "run")
    with js.JudgeServer() as gone:
        url = gone.url
    outcome = judge_command(run_dir, url, rubric, "--timeout", "1", "--retries", "1")
    assert outcome.exit_code == 1
    assert "error: judging incomplete for 3 subjects" in outcome.output and "cannot connect" in outcome.output


def test_the_judge_command_asks_for_logprobs(server, tmp_path, rubric):
    run_dir = run_with_answers(tmp_path / "run")
    outcome = judge_command(run_dir, server.url, rubric, "--judge-logprobs", "2")
    assert outcome.exit_code == 0, outcome.output
    assert {r["top_logprobs"] for r in server.requests} == {2}
    weighted = (
        sqlite3.connect(run_dir / "results.sqlite").execute("SELECT DISTINCT expected_score FROM judgments").fetchall()
    )
    assert weighted == [(4.75,)]


def test_the_judge_command_sends_the_judge_max_tokens_and_records_it(server, tmp_path, rubric):
    run_dir = run_with_answers(tmp_path / "run")
    outcome = judge_command(run_dir, server.url, rubric, "--judge-max-tokens", "33")
    assert outcome.exit_code == 0, outcome.output
    assert {r["max_tokens"] for r in server.requests} == {33}
    assert judging_meta(ResultsStore(run_dir / "results.sqlite")).max_tokens == 33


@pytest.mark.parametrize("structured", [True, False], ids=["structured", "refused-free-text"])
def test_the_judge_command_records_and_reports_the_reply_format(tmp_path, rubric, structured):
    run_dir = run_with_answers(
        tmp_path / "run",
        {
            "parent-arith": {"add": "43", "sub": "40"},
            "parent-facts": {"add": "3", "sub": "48"},
            "cand1": {"add": "44", "sub": "47"},
        },
    )
    expected = "structured" if structured else "free_text"
    with js.JudgeServer(structured=structured) as server:
        server.queue(js.garbage)  # one unreadable reply, kept as missing
        outcome = judge_command(run_dir, server.url, rubric, "--no-pairwise", "--concurrency", "1")
    assert outcome.exit_code == 0, outcome.output
    assert f"mini: 1 of 6 grading replies unreadable ({expected})" in outcome.output
    store = ResultsStore(run_dir / "results.sqlite")
    assert judging_meta(store).reply_formats == {"mini@1": expected}
    assert {r["reply_format"] for r in store.query("SELECT reply_format FROM judge_status")} == {expected}
    assert store.query("SELECT count(*) AS n FROM judgments WHERE score IS NULL")[0]["n"] == 2  # two criteria, not 0


def test_the_judge_command_forces_free_text_without_a_probe(server, tmp_path, rubric):
    run_dir = run_with_answers(tmp_path / "run")
    outcome = judge_command(run_dir, server.url, rubric, "--judge-reply-format", "free_text", "--json")
    assert outcome.exit_code == 0, outcome.output
    assert not server.probes and not any("response_format" in r for r in server.requests)
    assert {r["reply_format"] for r in json.loads(outcome.output)["replies"]} == {"free_text"}
    bad = judge_command(run_dir, server.url, rubric, "--judge-reply-format", "json")
    assert bad.exit_code == 2 and "'json' is not one of" in bad.output


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_missing_answers_are_all_generated_before_judging_with_progress(server, tmp_path, rubric, monkeypatch, batched):
    log = fake_backend.registered(monkeypatch, batched)
    run_dir = run_with_answers(tmp_path / "run", {"cand1": {"add": "43", "sub": "48"}})  # the parents answer anew
    asked = []
    original = js.JudgeServer.record
    monkeypatch.setattr(js.JudgeServer, "record", lambda self, *a: (asked.append(list(log)), original(self, *a)))
    outcome = judge_command(run_dir, server.url, rubric, "--backend", "fake")
    assert outcome.exit_code == 0, outcome.output
    loads_and_calls = [
        ("load", "/zoo/arith"),
        *[("generate", 2)] * batched,
        *[("generate", 1)] * 2 * (not batched),
        ("load", "/zoo/facts"),
        *[("generate", 2)] * batched,
        *[("generate", 1)] * 2 * (not batched),
        ("close", None),
    ]
    assert log == loads_and_calls and asked[0] == log  # every answer, and the engine closed, before any judging
    assert "answers: 100%" in outcome.output and "4/4" in outcome.output and "judging: 100%" in outcome.output
    stored = ResultsStore(run_dir / "results.sqlite").query(
        "SELECT answer FROM answers WHERE subject_id = 'parent-arith'"
    )
    assert sorted(r["answer"] for r in stored) == [
        "answer to Q: What is 31 plus 12?",
        "answer to Q: What is 73 minus 25?",
    ]


def test_no_progress_bar_spoils_the_json_output(server, tmp_path, rubric, monkeypatch):
    fake_backend.registered(monkeypatch, batched=True)
    run_dir = run_with_answers(tmp_path / "run", {"cand1": {"add": "43", "sub": "48"}})
    outcome = judge_command(run_dir, server.url, rubric, "--backend", "fake", "--json")
    assert outcome.exit_code == 0 and json.loads(outcome.output)["subjects"] == 3


def test_a_sweep_whose_judge_context_is_too_short_stops_before_any_merge(zoo, tmp_path, rubric):
    spec = tmp_path / "one_merge.yaml"
    spec.write_text("name: one_merge\nmethods:\n  - method: linear\n    per_parent: {weight: 0.5}\n")
    with js.JudgeServer(context=40) as short:
        outcome = CliRunner().invoke(
            app,
            [
                "sweep",
                "--parents",
                str(zoo.model_path("arith")),
                str(zoo.model_path("facts")),
                "--sweep",
                str(spec),
                "--tasks",
                "zoo_arith",
                "--limit",
                "4",
                "--out",
                str(tmp_path / "run"),
                "--backend",
                "hf",
                "--judge-url",
                short.url,
                "--judge-model",
                "stand-in-judge",
                "--rubric",
                rubric.source,
            ],
        )
    assert outcome.exit_code == 2, outcome.output
    assert "but judge stand-in-judge's context is 40 tokens" in outcome.output and "--max-model-len" in outcome.output
    assert not short.requests and not list((tmp_path / "run").rglob("*.safetensors"))


# -- a real zoo sweep with a judge -------------------------------------------------------------------------------
def zoo_sweep(zoo, tmp_path: Path, name: str, judge_url: str, rubric):
    from mergescope.recipes.sweep import SweepSettings, sweep

    spec = tmp_path / "one_merge.yaml"
    spec.write_text("name: one_merge\nmethods:\n  - method: linear\n    per_parent: {weight: 0.5}\n")
    settings = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        sweep=spec,
        tasks=["zoo_arith"],
        limit=10,
        out=tmp_path / name,
        backend="hf",
        progress=False,
        judge=JudgeSettings(url=judge_url, model="judge", rubrics=(rubric.source,)),
    )
    return sweep(settings)


@pytest.mark.slow
def test_a_zoo_sweep_judges_each_subject_after_its_scores(zoo, tmp_path, rubric):
    with js.JudgeServer() as server:
        result = zoo_sweep(zoo, tmp_path, "judged", server.url, rubric)
    db = sqlite3.connect(result.run_dir / "results.sqlite")
    assert result.n_evaluated == 3
    assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == 3 * 2
    assert json.loads(db.execute("SELECT sampling FROM answers LIMIT 1").fetchone()[0]) == {
        "backend": "hf",
        "chat_template": True,
        "max_tokens": 8,
        "stop": ["\n"],
        "temperature": 0.0,
    }
    assert db.execute("SELECT count(*) FROM judgments WHERE score IS NOT NULL").fetchone()[0] == 3 * 2 * 2
    assert db.execute("SELECT count(DISTINCT opponent_id) FROM comparisons").fetchone()[0] == 2
    tasks = {task for (task,) in db.execute("SELECT DISTINCT task FROM scores")}
    assert tasks == {"zoo_arith", "judge_mini_judge"}
    assert {s for (s,) in db.execute("SELECT DISTINCT status FROM judge_status")} == {"complete"}
    assert result.judging_incomplete == []


@pytest.mark.slow
def test_a_zoo_sweep_with_the_judge_down_finishes_and_judging_resumes_later(zoo, tmp_path, rubric):
    with js.JudgeServer(default=js.status(503)) as down:
        result = zoo_sweep(zoo, tmp_path, "down", down.url, rubric)
        tries = len(down.requests)
    db = sqlite3.connect(result.run_dir / "results.sqlite")
    # the two questions' requests were in flight together, each tried 5 times; later subjects send nothing
    assert result.n_evaluated == 3 and tries == 2 * 5
    assert db.execute("SELECT count(DISTINCT subject_id) FROM scores WHERE task = 'zoo_arith'").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == 3 * 2  # answers kept for a later judge
    assert {s for (s,) in db.execute("SELECT DISTINCT status FROM judge_status")} == {"incomplete"}
    assert json.loads(dict(db.execute("SELECT key, value FROM meta"))["judging"])["complete"] is False
    assert sorted(result.judging_incomplete) == sorted(s for (s,) in db.execute("SELECT id FROM subjects"))

    from mergescope.scoring.judge_run import judge_run

    with js.JudgeServer() as server:
        later = judge_run(result.run_dir, JudgeSettings(url=server.url, model="judge", rubrics=()))
    assert later.incomplete == [] and later.n_subjects == 3
    assert {s for (s,) in db.execute("SELECT DISTINCT status FROM judge_status")} == {"complete"}


@pytest.mark.slow
def test_the_sweep_command_exits_1_when_judging_ends_incomplete(zoo, tmp_path, rubric):
    spec = tmp_path / "one_merge.yaml"
    spec.write_text("name: one_merge\nmethods:\n  - method: linear\n    per_parent: {weight: 0.5}\n")
    with js.JudgeServer() as gone:
        url = gone.url
    outcome = CliRunner().invoke(
        app,
        [
            "sweep",
            "--parents",
            str(zoo.model_path("arith")),
            str(zoo.model_path("facts")),
            "--sweep",
            str(spec),
            "--tasks",
            "zoo_arith",
            "--limit",
            "5",
            "--out",
            str(tmp_path / "run"),
            "--backend",
            "hf",
            "--judge-url",
            url,
            "--judge-model",
            "m",
            "--rubric",
            rubric.source,
        ],
    )
    assert outcome.exit_code == 1, outcome.output
    assert "3 evaluated" in outcome.output  # the scores are stored all the same
    assert "error: judging incomplete for 3 subjects" in outcome.output and "mergescope judge" in outcome.output
