"""The Ray executor on a local two-CPU cluster: same results as the local executor, even when a worker dies."""

from __future__ import annotations

import sqlite3

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from mergescope.recipes.sweep import SweepSettings, sweep  # noqa: E402

pytestmark = pytest.mark.slow
SPEC = """
name: ray-check
methods:
  - method: slerp
    parameters: {t: {grid: [0.3, 0.6]}}
  - method: linear
    per_parent: {weight: 0.5}
"""


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local cluster whose workers SIGKILL themselves once, after their second evaluation."""
    marker = tmp_path_factory.mktemp("ray") / "killed-once"
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        runtime_env={"env_vars": {"MERGESCOPE_KILL_AT": "eval.after:2", "MERGESCOPE_KILL_ONCE": str(marker)}},
    )
    yield marker
    ray.shutdown()


def _settings(zoo, tmp_path, name, **extra) -> SweepSettings:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        base=str(zoo.model_path("base")),
        sweep=spec,
        tasks=["zoo_arith", "zoo_composite"],
        limit=12,
        out=tmp_path / name,
        backend="hf",
        progress=False,
        **extra,
    )


def _contents(run_dir):
    db = sqlite3.connect(run_dir / "results.sqlite")
    return {
        "subjects": db.execute("SELECT id, kind, label, status FROM subjects ORDER BY id").fetchall(),
        "scores": db.execute("SELECT subject_id, task, metric, value FROM scores ORDER BY 1, 2, 3").fetchall(),
        "items": db.execute(
            "SELECT subject_id, task, doc_id, metric, value, response FROM items ORDER BY 1, 2, 3, 4"
        ).fetchall(),
    }


def test_ray_sweep_equals_local_sweep_although_a_worker_died(zoo, tmp_path, ray_cluster):
    local = sweep(_settings(zoo, tmp_path, "local"))
    remote = sweep(_settings(zoo, tmp_path, "ray", executor="ray", executor_options={"workers": 2}))
    assert ray_cluster.exists(), "no worker was killed, so the recovery path was not exercised"
    assert remote.n_evaluated == local.n_evaluated == 6
    assert _contents(remote.run_dir) == _contents(local.run_dir)
    counts = (
        sqlite3.connect(remote.run_dir / "results.sqlite")
        .execute("SELECT count(*), count(DISTINCT subject_id || task || doc_id || metric) FROM items")
        .fetchone()
    )
    assert counts[0] == counts[1]  # no duplicated rows


JUDGED_TABLES = {
    "answers": "SELECT subject_id, rubric, question_id, answer FROM answers ORDER BY 1, 2, 3",
    "judgments": "SELECT subject_id, question_id, criterion, score FROM judgments ORDER BY 1, 2, 3",
    "comparisons": "SELECT subject_id, opponent_id, question_id, verdict_first, verdict_swapped FROM comparisons "
    "ORDER BY 1, 2, 3",
    "status": "SELECT subject_id, rubric, status FROM judge_status ORDER BY 1, 2",
}


def test_a_judged_ray_sweep_has_its_actors_answer_and_equals_the_local_one(zoo, tmp_path, ray_cluster):
    from helpers import judge_server
    from mergescope.scoring.judge_run import JudgeSettings
    from mergescope.scoring.rubric import JUDGES_DIR

    rubric = JUDGES_DIR / "zoo_skills.yaml"
    with judge_server.JudgeServer() as server:
        judged = {"judge": JudgeSettings(url=server.url, model="judge", rubrics=(str(rubric),))}
        local = sweep(_settings(zoo, tmp_path, "local", **judged))
        remote = sweep(_settings(zoo, tmp_path, "ray", executor="ray", executor_options={"workers": 2}, **judged))
    assert remote.judging_incomplete == local.judging_incomplete == []
    tables = []
    for run in (local, remote):
        db = sqlite3.connect(run.run_dir / "results.sqlite")
        tables.append({name: db.execute(query).fetchall() for name, query in JUDGED_TABLES.items()})
    assert len(tables[0]["answers"]) == 6 * len({row[2] for row in tables[0]["answers"]}) > 0
    assert {row[2] for row in tables[0]["status"]} == {"complete"}
    assert tables[1] == tables[0]


def test_a_ray_search_asks_one_trial_per_worker_and_stores_every_trial(zoo, tmp_path, ray_cluster):
    from mergescope.merging.spec import SWEEPS_DIR
    from mergescope.recipes.search import SearchSettings, search

    run = _settings(zoo, tmp_path, "search", executor="ray", executor_options={"workers": 2})
    settings = SearchSettings(run=run, space=SWEEPS_DIR / "space_lu2024.yaml", budget=4, seed=0)
    result = search(settings)
    db = sqlite3.connect(result.run_dir / "results.sqlite")
    trials = db.execute(
        "SELECT t.number, s.status FROM search_trials t JOIN subjects s ON s.id = t.subject_id ORDER BY t.number"
    ).fetchall()
    batch_size = db.execute("SELECT json_extract(value, '$.batch_size') FROM meta WHERE key = 'search'").fetchone()
    assert trials == [(n, "done") for n in range(4)] and batch_size == (2,)
    assert (result.n_evaluated, search(settings).n_evaluated) == (4, 0)
