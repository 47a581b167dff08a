"""A search killed with SIGKILL three times and resumed with the same command stores the trials (configs and scores)
of a search that was never interrupted: the replay from the store proposes exactly what the seed proposed.

The search scores its trials on a fitness subset (--fitness-items) and its finalists on every item, so the kills
fall in both phases: the third inside the transaction that replaces a finalist's subset rows with all of them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mergescope.faults import ENV_VAR
from mergescope.merging.spec import SWEEPS_DIR
from mergescope.recipes.search import SearchSettings, search
from mergescope.recipes.sweep import SweepSettings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUDGET, SEED, LIMIT = 12, 0, 8
FITNESS_ITEMS, FINALISTS = 2, 3
# Two of the zoo's four tasks keep the four runs of 15 models short; on zoo_composite every trial of the 64-wide
# zoo scores 0 on the fitness items, which would tell the sampler one value only.
TASKS = ("zoo_arith", "zoo_facts")
SPACE = SWEEPS_DIR / "space_lu2024.yaml"
# The three reference models are stored first, then one trial at a time: the first kill falls after the third
# trial is stored (before it is told), the second after two more; the third run stores the last seven trials and
# the first finalist, and is killed before the second finalist's rows are committed.
KILLS = ("store.committed:6", "store.committed:2", "store.before_commit:9")


def command(zoo, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mergescope",
        "search",
        "--parents",
        str(zoo.model_path("arith")),
        str(zoo.model_path("facts")),
        "--base",
        str(zoo.model_path("base")),
        "--space",
        str(SPACE),
        "--budget",
        str(BUDGET),
        "--seed",
        str(SEED),
        "--limit",
        str(LIMIT),
        "--backend",
        "hf",
        "--out",
        str(out),
        "--fitness-items",
        str(FITNESS_ITEMS),
        "--finalists",
        str(FINALISTS),
        *(word for task in TASKS for word in ("--tasks", task)),
    ]


def launch(args: list[str], kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(ENV_VAR, None)
    if kill_at:
        env[ENV_VAR] = kill_at
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def stored(run: Path) -> tuple[list, list, list]:
    """The run's trials (every column), its candidates' scores, and each candidate's coverage and items per task."""
    db = sqlite3.connect(run / "results.sqlite")
    try:
        trials = db.execute(
            "SELECT t.*, f.full_objective, f.rank IS NOT NULL AS finalist FROM search_trials t"
            " LEFT JOIN search_finalists f USING (number) ORDER BY number"
        ).fetchall()
        scores = db.execute(
            "SELECT c.subject_id, c.task, c.metric, c.value FROM scores c JOIN subjects s"
            " ON s.id = c.subject_id WHERE s.kind = 'candidate' ORDER BY 1, 2, 3"
        ).fetchall()
        coverage = db.execute(
            "SELECT s.id, s.coverage, i.task, count(*) FROM subjects s JOIN items i"
            " ON i.subject_id = s.id WHERE s.kind = 'candidate' GROUP BY 1, 2, 3 ORDER BY 1, 3"
        ).fetchall()
        return trials, scores, coverage
    finally:
        db.close()


def test_a_search_killed_three_times_and_resumed_stores_the_uninterrupted_trials(zoo, tmp_path):
    reference = tmp_path / "uninterrupted"
    search(
        SearchSettings(
            run=SweepSettings(
                parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
                base=str(zoo.model_path("base")),
                out=reference,
                backend="hf",
                limit=LIMIT,
                tasks=list(TASKS),
                progress=False,
            ),
            space=SPACE,
            budget=BUDGET,
            seed=SEED,
            fitness_items=FITNESS_ITEMS,
            finalists=FINALISTS,
        )
    )
    killed = tmp_path / "killed"
    trials_after_kill = []
    for kill_at in KILLS:
        result = launch(command(zoo, killed), kill_at)
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
        trials_after_kill.append(len(stored(killed)[0]))
    # killed inside the second finalist's transaction: one finalist scored on every item, the rest on the subset
    coverage = [(kind, items) for _, kind, _, items in stored(killed)[2]]  # one row per candidate and task
    assert [kind for kind, _ in coverage].count("all") == len(TASKS)
    assert all(items == (LIMIT if kind == "all" else FITNESS_ITEMS) for kind, items in coverage)
    final = launch(command(zoo, killed), None)
    assert final.returncode == 0, final.stderr[-3000:]
    assert trials_after_kill == [2, 4, BUDGET]  # each kill in the trials left the trial it was storing untold
    expected, actual = stored(reference), stored(killed)
    assert len(expected[0]) == BUDGET and len(expected[1]) > 0
    assert len({trial[5] for trial in expected[0]}) > 1  # the sampler was told different objectives, not one value
    assert sum(trial[-1] for trial in expected[0]) == FINALISTS
    assert {kind for _, kind, _, _ in expected[2]} == {"all", "subset"}
    assert actual == expected
