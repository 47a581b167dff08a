"""Crash safety: a judged zoo sweep killed again and again, resumed with the same command each time, ends with
the results of a sweep that was never interrupted.

One run directory goes through a chain of kills. Each step starts the same `mergescope sweep` command in a
subprocess with `MERGESCOPE_KILL_AT=NAME:N` (mergescope/faults.py), which SIGKILLs it at the N-th pass of
kill point NAME (or sends SIGINT, for the Ctrl-C step); two steps are killed by a seeded timer instead.
After every step the store must be consistent (a subject is stored whole or not at all) and every merge
directory under its final name must be complete. The last resume must reproduce the uninterrupted run's
store row for row (timings aside) and its merged weights byte for byte. The report is then killed
mid-write and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from helpers.judge_server import JudgeServer
from mergescope.faults import ENV_VAR, KILL_POINTS
from mergescope.scoring.rubric import JUDGES_DIR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUBRIC = JUDGES_DIR / "zoo_skills.yaml"
LIMIT = 10
RESUME_HINT = "run the same command again to resume"
# Columns that record when or how fast something ran, not what it computed.
VOLATILE = {"subjects": {"merge_seconds", "eval_seconds", "finished_at"}, "judge_status": {"updated_at"}}
VOLATILE_META = {"updated_at"}
# Float32 reductions over whole tensors (the SLERP diagnostics' cosines and angles, computed as mergekit computes
# them) can differ in their last bits between two processes: the vectorised kernels' rounding depends on where a
# tensor's memory starts (seen with AVX2 kernels: 0.98430228 against 0.98430222). Compared to 6 significant digits.
FLOAT32_TABLES = {"slerp_diagnostics"}

# The chain, in order; each step's point is reachable from the state the steps before it leave.
# Subjects run in the order: parent arith, parent facts, base, then the six candidates of the default spec.
CHAIN = [
    "store.before_commit:1",  # the first parent evaluated, killed inside its store transaction
    "eval.after:1",  # evaluated again, killed before storing
    "store.committed:1",  # stored, killed before judging: the resume must judge it
    "judge.answers_written:1",
    "judge.graded:1",
    "judge.subject_done:1",  # the first parent now complete
    "eval.before:2",  # the second parent completes, killed as the base starts
    "merge.partial_created:1",  # the base completes; killed inside the first merge
    "merge.weights_written:1:INT",  # Ctrl-C with weights half written: the partial directory must go
    "merge.weights_written:1",
    "merge.before_rename:1",
    "merge.renamed:1",  # the first candidate's merge is in place, not yet evaluated
    "timer",  # killed by a seeded timer, wherever the sweep is
    "timer",
    "judge.closing:1",  # every subject judged, killed before the judge statistics are written
    None,  # the final resume, not interrupted
]


@dataclass(frozen=True)
class Step:
    kill_at: str | None
    returncode: int
    output: str
    problems: tuple[str, ...]  # store or merge-directory inconsistencies seen right after the step
    partial_dirs: tuple[str, ...]  # temporary merge directories left behind by the step
    seconds: float


def sweep_command(zoo, run: Path, judge_url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mergescope",
        "sweep",
        "--parents",
        str(zoo.model_path("arith")),
        str(zoo.model_path("facts")),
        "--base",
        str(zoo.model_path("base")),
        "--limit",
        str(LIMIT),
        "--backend",
        "hf",
        "--out",
        str(run),
        "--judge-url",
        judge_url,
        "--judge-model",
        "stub-judge",
        "--rubric",
        str(RUBRIC),
    ]


def launch(command: list[str], kill_at: str | None = None, timer_s: float | None = None) -> tuple[int, str]:
    """Run `command` to its end (or its kill); returns its exit status (negative: the signal) and output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(ENV_VAR, None)
    if kill_at:
        env[ENV_VAR] = kill_at
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timer_s if timer_s is not None else 600)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate()
    return process.returncode, output


# -- what the store and the merges must look like after any kill -----------------------------------------
def consistency_problems(run: Path, reference: Path) -> list[str]:
    """Every way the run's store or merge directories break the crash guarantees (empty: none)."""
    problems = []
    db = sqlite3.connect(run / "results.sqlite")
    try:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            return ["results.sqlite fails its integrity check"]
        done = {row[0] for row in db.execute("SELECT id FROM subjects WHERE status = 'done'")}
        tasks = {row[0] for row in db.execute("SELECT DISTINCT task FROM scores WHERE task LIKE 'zoo_%'")}
        for table in _tables_with_subject_id(db):
            stray = {row[0] for row in db.execute(f"SELECT DISTINCT subject_id FROM {table}")} - done
            problems += [f"{table} holds rows of unfinished subject {s}" for s in sorted(stray)]
        for subject in sorted(done):
            stored = {
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT task FROM scores WHERE subject_id = ? AND task LIKE 'zoo_%'", (subject,)
                )
            }
            if stored != tasks:
                problems.append(f"{subject} is done with scores for {sorted(stored)} only")
    finally:
        db.close()
    return problems + merge_problems(run, reference)


def _tables_with_subject_id(db: sqlite3.Connection) -> list[str]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [t for t in tables if "subject_id" in {c[1] for c in db.execute(f"PRAGMA table_info({t})")}]


def merge_problems(run: Path, reference: Path) -> list[str]:
    """Merge directories under a final name that are not the complete, byte-identical reference merge."""
    merges = run / "merges"
    problems = []
    for directory in sorted(merges.iterdir()) if merges.is_dir() else []:
        if ".partial" in directory.name:
            continue
        expected = reference / "merges" / directory.name
        for file in sorted(p.name for p in expected.iterdir()):
            if not (directory / file).is_file() or _digest(directory / file) != _digest(expected / file):
                problems.append(f"merge {directory.name} has a missing or different {file}")
    return problems


def partial_dirs(run: Path) -> tuple[str, ...]:
    merges = run / "merges"
    return tuple(sorted(p.name for p in merges.iterdir() if ".partial" in p.name)) if merges.is_dir() else ()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_contents(run: Path) -> dict[str, Counter]:
    """Every table of the store as a multiset of rows, volatile columns left out."""
    db = sqlite3.connect(run / "results.sqlite")
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        contents = {}
        for table in tables:
            columns = [
                c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] not in VOLATILE.get(table, set())
            ]
            rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            if table == "meta":
                rows = [row for row in rows if row[0] not in VOLATILE_META]
            if table in FLOAT32_TABLES:
                rows = [tuple(float(f"{v:.6g}") if isinstance(v, float) else v for v in row) for row in rows]
            contents[table] = Counter(rows)
        return contents
    finally:
        db.close()


# -- the runs -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge():
    with JudgeServer() as server:
        yield server


@pytest.fixture(scope="module")
def reference(zoo, judge, tmp_path_factory):
    """The uninterrupted run, and how long it took."""
    run = tmp_path_factory.mktemp("reference") / "run"
    started = time.perf_counter()
    returncode, output = launch(sweep_command(zoo, run, judge.url))
    assert returncode == 0, output[-3000:]
    return run, time.perf_counter() - started


@pytest.fixture(scope="module")
def chain(zoo, judge, reference, tmp_path_factory):
    """The killed-and-resumed run directory and what every step of the chain did."""
    reference_run, reference_seconds = reference
    run = tmp_path_factory.mktemp("crashed") / "run"
    command = sweep_command(zoo, run, judge.url)
    timers = random.Random(20240609)
    steps = []
    for kill_at in CHAIN:
        timer_s = timers.uniform(0.3, 0.9) * reference_seconds if kill_at == "timer" else None
        started = time.perf_counter()
        returncode, output = launch(command, None if kill_at == "timer" else kill_at, timer_s)
        steps.append(
            Step(
                kill_at,
                returncode,
                output,
                tuple(consistency_problems(run, reference_run)),
                partial_dirs(run),
                time.perf_counter() - started,
            )
        )
    return run, steps


# -- the guarantees -------------------------------------------------------------------------------------
def test_every_kill_point_of_the_sweep_is_killed_at(chain):
    """Each named kill point was reached: the process died of SIGKILL (or exited 130 after SIGINT) there."""
    _, steps = chain
    for step in steps:
        if step.kill_at in (None, "timer"):
            continue
        expected = 130 if step.kill_at.endswith(":INT") else -signal.SIGKILL
        assert step.returncode == expected, f"{step.kill_at}: exit {step.returncode}\n{step.output[-2000:]}"
    killed_at = {step.kill_at.split(":")[0] for step in steps if step.kill_at not in (None, "timer")}
    sweep_kill_points = set(KILL_POINTS) - {"report.partial_written"}
    assert killed_at == sweep_kill_points
    assert steps[-1].returncode == 0, steps[-1].output[-3000:]


def test_store_is_consistent_after_every_kill(chain):
    _, steps = chain
    assert {step.kill_at: step.problems for step in steps if step.problems} == {}


def test_resumed_run_equals_the_uninterrupted_run(chain, reference):
    run, _ = chain
    expected, actual = store_contents(reference[0]), store_contents(run)
    assert set(actual) == set(expected)
    for table in expected:
        missing, extra = expected[table] - actual[table], actual[table] - expected[table]
        assert not missing and not extra, f"{table}: missing {list(missing)[:3]}, extra {list(extra)[:3]}"
    assert sum(expected["items"].values()) > 0 and sum(expected["judgments"].values()) > 0


def test_no_partial_merge_is_taken_for_a_finished_one(chain, reference):
    """Kills inside a merge leave only `.partial` directories; the next run removes them and merges again."""
    run, steps = chain
    by_point = {step.kill_at: step for step in steps}
    assert by_point["merge.partial_created:1"].partial_dirs, "a kill inside a merge leaves its temporary directory"
    assert by_point["merge.weights_written:1"].partial_dirs
    assert partial_dirs(run) == ()
    assert merge_problems(run, reference[0]) == []
    assert sorted(p.name for p in (run / "merges").iterdir()) == sorted(
        p.name for p in (reference[0] / "merges").iterdir()
    )


def test_ctrl_c_stops_cleanly_with_a_resume_hint(chain):
    """SIGINT mid-merge: exit 130, the resume hint, no traceback, no temporary merge directory, the lock free."""
    run, steps = chain
    [interrupted] = [step for step in steps if step.kill_at and step.kill_at.endswith(":INT")]
    assert interrupted.returncode == 130
    assert RESUME_HINT in interrupted.output and "Traceback" not in interrupted.output, interrupted.output[-2000:]
    assert interrupted.partial_dirs == ()  # the half-written merge was removed on the way out
    lock = FileLock(str(run / ".sweep.lock"))
    lock.acquire(timeout=0)
    lock.release()


def test_report_killed_mid_write_keeps_the_previous_report(chain, tmp_path):
    from mergescope.report import write_report

    run, _ = chain
    out = tmp_path / "report"
    first = write_report(run, out).read_bytes()
    report = [sys.executable, "-m", "mergescope", "report", str(run), "--out", str(out)]
    returncode, output = launch(report, "report.partial_written:1")
    assert returncode == -signal.SIGKILL, output[-2000:]
    assert (out / "index.html.partial").is_file() and (out / "index.html").read_bytes() == first
    returncode, output = launch(report)
    assert returncode == 0, output[-2000:]
    assert (out / "index.html").read_text().rstrip().endswith("</html>")
    assert [p.name for p in out.iterdir() if "partial" in p.name] == []
