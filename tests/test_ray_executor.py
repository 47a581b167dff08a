"""The Ray executor on a local two-CPU cluster: same results as the local executor, even when a worker dies."""

from __future__ import annotations

import sqlite3

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from mergescope.sweep import SweepSettings, sweep  # noqa: E402

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
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False,
             runtime_env={"env_vars": {"MERGESCOPE_KILL_AT": "eval.after:2", "MERGESCOPE_KILL_ONCE": str(marker)}})
    yield marker
    ray.shutdown()


def _settings(zoo, tmp_path, name, **extra) -> SweepSettings:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return SweepSettings(parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
                         base=str(zoo.model_path("base")), sweep=spec, tasks=["zoo_arith", "zoo_composite"],
                         limit=12, out=tmp_path / name, backend="hf", progress=False, **extra)


def _contents(run_dir):
    db = sqlite3.connect(run_dir / "results.sqlite")
    return {
        "subjects": db.execute("SELECT id, kind, label, status FROM subjects ORDER BY id").fetchall(),
        "scores": db.execute("SELECT subject_id, task, metric, value FROM scores ORDER BY 1, 2, 3").fetchall(),
        "items": db.execute("SELECT subject_id, task, doc_id, metric, value, response FROM items ORDER BY 1, 2, 3, 4")
        .fetchall(),
    }


def test_ray_sweep_equals_local_sweep_although_a_worker_died(zoo, tmp_path, ray_cluster):
    local = sweep(_settings(zoo, tmp_path, "local"))
    remote = sweep(_settings(zoo, tmp_path, "ray", executor="ray", executor_options={"workers": 2}))
    assert ray_cluster.exists(), "no worker was killed, so the recovery path was not exercised"
    assert remote.n_evaluated == local.n_evaluated == 6
    assert _contents(remote.run_dir) == _contents(local.run_dir)
    counts = sqlite3.connect(remote.run_dir / "results.sqlite").execute(
        "SELECT count(*), count(DISTINCT subject_id || task || doc_id || metric) FROM items").fetchone()
    assert counts[0] == counts[1]  # no duplicated rows
