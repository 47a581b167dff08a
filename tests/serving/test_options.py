"""Options records (mergescope/serving/options.py): an unknown key is refused in one line, never dropped; the spec's
dtype reaches the backend; the CLI hands on only the flags given."""

from __future__ import annotations

import pytest
import torch

from mergescope.errors import ConfigError
from mergescope.executors import create_executor
from mergescope.serving import create_backend


@pytest.mark.parametrize(
    "create, name, option, says",
    [
        (create_backend, "hf", "batch_sise", ("the hf backend", "'batch_sise'", "did you mean 'batch_size'")),
        (create_backend, "vllm", "tensor_paralel_size", ("the vllm backend", "did you mean 'tensor_parallel_size'")),
        (create_executor, "ray", "worker", ("the ray executor", "'worker'", "did you mean 'workers'")),
        (create_executor, "local", "progres", ("the local executor", "did you mean 'progress'")),
    ],
)
def test_an_unknown_option_is_a_one_line_error_with_a_did_you_mean(create, name, option, says):
    with pytest.raises(ConfigError) as caught:
        create(name, **{option: 1})
    line = caught.value.one_line()
    assert "\n" not in line and caught.value.exit_code == 2
    for fragment in says:
        assert fragment in line, line


def test_an_option_of_another_backend_names_the_backend_that_takes_it():
    with pytest.raises(ConfigError, match="takes no option 'tensor_parallel_size'") as caught:
        create_backend("hf", tensor_parallel_size=2)
    assert caught.value.hint == "'tensor_parallel_size' is an option of the vllm backend: --backend vllm"


def test_a_dtype_the_backend_cannot_serve_is_refused():
    with pytest.raises(ConfigError, match="openai backend cannot serve dtype bfloat16"):
        create_backend("openai", dtype="bfloat16")


def _spec(tmp_path, dtype: str):
    spec = tmp_path / f"{dtype}.yaml"
    spec.write_text(f"name: one_merge\ndtype: {dtype}\nmethods:\n  - method: linear\n    per_parent: {{weight: 0.5}}\n")
    return spec


def test_a_bfloat16_spec_serves_every_subject_in_bfloat16(zoo, tmp_path, monkeypatch):
    from mergescope.recipes.sweep import SweepSettings, sweep
    from mergescope.serving.hf import HFBackend

    served = {}
    load = HFBackend.load

    def spy(backend, model_dir):
        lm = load(backend, model_dir)
        served[model_dir.name] = {parameter.dtype for parameter in backend.model.parameters()}
        return lm

    monkeypatch.setattr(HFBackend, "load", spy)
    sweep(
        SweepSettings(
            parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
            sweep=_spec(tmp_path, "bfloat16"),
            tasks=["zoo_arith"],
            limit=2,
            out=tmp_path / "run",
            backend="hf",
            progress=False,
        )
    )
    assert len(served) == 3  # two parents and the one candidate
    assert all(dtypes == {torch.bfloat16} for dtypes in served.values()), served


def test_the_default_spec_dtype_keeps_the_engine_in_float32_and_bfloat16_reaches_it(zoo, tmp_path):
    from mergescope.recipes.sweep import SweepSettings, plan_sweep

    parents = [str(zoo.model_path("arith")), str(zoo.model_path("facts"))]
    for dtype in ("float32", "bfloat16"):
        plan = plan_sweep(
            SweepSettings(
                parents=parents,
                sweep=_spec(tmp_path, dtype),
                tasks=["zoo_arith"],
                backend="vllm",
                backend_options={"tensor_parallel_size": 2},
            )
        )
        kwargs = plan.backend_options.engine_kwargs(zoo.model_path("arith"))
        assert (kwargs["dtype"], kwargs["tensor_parallel_size"]) == (dtype, 2)


def _cli_settings(monkeypatch, *flags: str):
    """The SweepSettings `mergescope sweep FLAGS` hands the library (the sweep itself is not run)."""
    from typer.testing import CliRunner

    import mergescope.recipes.sweep
    from mergescope.cli.app import app

    captured = []

    def capture(settings):
        captured.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr(mergescope.recipes.sweep, "sweep", capture)
    CliRunner().invoke(app, ["sweep", "--parents", "a", "b", *flags])
    return captured[0]


def test_the_cli_hands_on_only_the_flags_given(monkeypatch):
    defaults = _cli_settings(monkeypatch, "--backend", "hf", "--executor", "ray")
    assert defaults.backend_options == {} and defaults.executor_options == {}
    given = _cli_settings(
        monkeypatch,
        "--backend",
        "vllm",
        "--tensor-parallel-size",
        "2",
        "--executor",
        "ray",
        "--ray-address",
        "auto",
        "--workers",
        "3",
    )
    assert given.backend_options == {"tensor_parallel_size": 2}
    assert given.executor_options == {"address": "auto", "workers": 3}
