"""Shared fixtures: one zoo per machine (cached), one default sweep per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def zoo():
    """The trained zoo, built once into .cache/test-zoo (or $MERGESCOPE_TEST_ZOO) and reused."""
    from mergescope.zoo import build_zoo, load_zoo

    root = Path(os.environ.get("MERGESCOPE_TEST_ZOO", REPO / ".cache" / "test-zoo"))
    root.parent.mkdir(parents=True, exist_ok=True)
    # zoo.json is written last, so it marks a finished build; the lock lets parallel sessions share one.
    with FileLock(str(root) + ".lock"):
        if not (root / "zoo.json").is_file():
            shutil.rmtree(root, ignore_errors=True)
            build_zoo(root, progress=False)
    return load_zoo(root)


@pytest.fixture(scope="session")
def default_run(zoo, tmp_path_factory):
    """The default sweep of the zoo's two parents (with the base) on all zoo tasks, run once per session."""
    from mergescope.sweep import SweepSettings, sweep

    run_dir = tmp_path_factory.mktemp("runs") / "default"
    settings = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        base=str(zoo.model_path("base")), out=run_dir, backend="hf", progress=False,
    )
    result = sweep(settings)
    return settings, result


@pytest.fixture(scope="session")
def judged_run(default_run, tmp_path_factory):
    """A copy of the default run judged on judges/zoo_skills.yaml by the honest stand-in judge (tests/judge_server.py)."""
    import judge_server
    import report_runs

    with judge_server.JudgeServer() as server:
        return report_runs.judged(default_run[1].run_dir, tmp_path_factory.mktemp("judged") / "default", server.url)
