"""Shared fixtures: one zoo per machine (cached), one default sweep per test session."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test &` from a script starts the suite with SIGINT ignored, and every process it spawns inherits that:
# the crash tests' Ctrl-C kill points would then do nothing. A handler (not SIG_IGN) is reset by exec, so the
# subprocesses answer SIGINT as under an interactive shell again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
# The judge fixtures (server, rubric) of the scoring and serving tests.
pytest_plugins = ["helpers.judge_fixtures"]


def zoo_dir_for_tests() -> Path:
    """$MERGESCOPE_TEST_ZOO, else .cache/test-zoo; under a forced `ATEN_CPU_CAPABILITY` (`make test-cpus`) a zoo of
    its own, .cache/test-zoo-<capability>, so that imitating another CPU never rebuilds the native zoo."""
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    default = REPO / ".cache" / (f"test-zoo-{forced.lower()}" if forced else "test-zoo")
    return Path(os.environ.get("MERGESCOPE_TEST_ZOO", default))


@pytest.fixture(scope="session")
def zoo():
    """The small trained zoo (`zoo_dir_for_tests`), rebuilt whenever its recipe, code or CPU kernels changed."""
    from mergescope.zoo.build import SMALL_WIDTH, TEST_MODELS, ensure_zoo

    return ensure_zoo(zoo_dir_for_tests(), progress=False, models=TEST_MODELS, width=SMALL_WIDTH)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct as `mergescope models smollm2` writes it, in .cache (tests/helpers/packaged.py)."""
    from helpers.packaged import cached_smollm2

    return cached_smollm2()


@pytest.fixture(scope="session")
def default_run(zoo, tmp_path_factory):
    """The default sweep of the zoo's two parents (with the base) on all zoo tasks, run once per session."""
    from mergescope.recipes.sweep import SweepSettings, sweep

    run_dir = tmp_path_factory.mktemp("runs") / "default"
    settings = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        base=str(zoo.model_path("base")),
        out=run_dir,
        backend="hf",
        progress=False,
    )
    result = sweep(settings)
    return settings, result


@pytest.fixture(scope="session")
def judged_run(default_run, tmp_path_factory):
    """A copy of the default run judged on the shipped zoo_skills rubric by the honest stand-in judge
    (tests/helpers/judge_server.py)."""
    from helpers import judge_server, report_runs

    with judge_server.JudgeServer() as server:
        return report_runs.judged(default_run[1].run_dir, tmp_path_factory.mktemp("judged") / "default", server.url)
