"""Search spaces: the shipped ones validate, every problem of a bad one is reported at once, and a trial's
filled block is an ordinary sweep candidate (same id scheme as the sweep)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.errors import ConfigError
from mergescope.merging.candidates import block_candidates, config_id
from mergescope.merging.search_space import block_leaves, filled_block, load_space
from mergescope.merging.spec import SWEEPS_DIR, SweepSpec
from mergescope.recipes import validate as validation
from mergescope.recipes.search import propose
from mergescope.runs.records import stand_in_parents

SHIPPED_SPACES = {"space_lu2024.yaml", "space_methods.yaml"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_shipped_spaces_are_recognised_by_content_and_valid():
    report = validation.validate([SWEEPS_DIR / name for name in SHIPPED_SPACES])
    assert report.problems == ()
    assert validation._validator_for(SWEEPS_DIR / "space_lu2024.yaml") is validation.KINDS["search space"].check
    assert validation._validator_for(SWEEPS_DIR / "default.yaml") is validation.KINDS["sweep spec"].check


def test_the_lu2024_space_names_each_gradient_point():
    space = load_space(SWEEPS_DIR / "space_lu2024.yaml")
    names = [leaf.name for leaf in block_leaves(space, 0)]
    assert names == [f"t[{f}][{i}]" for f in ("self_attn", "mlp") for i in range(3)] + ["t[rest]"]


def test_every_problem_of_a_space_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """name: bad
space:
  - method: slerp
    parameters:
      t: {low: 0.8, high: 0.2}
  - method: slerp
    label: second
    parameters:
      tt: {low: 0, high: 1}
  - method: linear
    per_parent:
      weight: {low: 0.1, high: 1, stepp: 2}
  - method: dare_ties
    seeds: [0, 1]
    per_parent: {weight: 0.5, density: {low: 0.1, high: 0.9}}
""",
    )
    problems = validation.validate([path]).problems
    assert len(problems) == 4, problems
    assert f"{path}: space.0.parameters.t: range low 0.8 > high 0.2: swap them" in problems
    assert any(
        p.startswith(f"{path}: space.1.parameters.tt: slerp has no parameter 'tt'") and "did you mean 't'" in p
        for p in problems
    )
    assert any(p.startswith(f"{path}: space.2.per_parent.weight.stepp:") for p in problems)
    assert any(p.startswith(f"{path}: space.3.seeds:") for p in problems)
    with pytest.raises(ConfigError, match=r"range low 0.8 > high 0.2.*\(and 3 more"):
        load_space(path)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2


def test_a_range_outside_the_parameters_bounds_and_a_space_with_nothing_to_search(tmp_path):
    outside = write(tmp_path, "name: o\nspace:\n  - method: slerp\n    parameters: {t: {low: 0, high: 1.5}}\n")
    assert validation.validate([outside]).problems == (f"{outside}: space.0.parameters.t: 1.5 is outside [0, 1]",)
    fixed = write(tmp_path, "name: f\nspace:\n  - method: slerp\n    parameters: {t: 0.5}\n")
    (problem,) = validation.validate([fixed]).problems
    assert "nothing to search" in problem


def test_a_trial_is_the_sweeps_candidate_of_the_values_it_drew():
    """A trial's candidate is the one the sweep makes of a block holding the drawn values, so its id is the
    sweep's content hash and a trial repeating a swept point is that point."""
    space = load_space(SWEEPS_DIR / "space_lu2024.yaml")
    parents = stand_in_parents(2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    trial = study.ask()
    proposal = propose(space, trial, parents)
    drawn = trial.params
    fixed = [{"filter": f, "value": [drawn[f"t[{f}][{i}]"] for i in range(3)]} for f in ("self_attn", "mlp")]
    block = space.space[0].model_copy(update={"parameters": {"t": [*fixed, {"value": drawn["t[rest]"]}]}})
    (expected,) = block_candidates(SweepSpec(name="x", methods=[block]), 0, parents)
    assert proposal.candidate.id == expected.id == config_id(expected.mergekit_config, None)
    assert proposal.candidate.parameters == drawn
    assert proposal.candidate.mergekit_config["parameters"]["t"][0]["value"] == fixed[0]["value"]
    assert filled_block(space.space[0], lambda where, raw: 0.5).parameters["t"][2] == {"value": 0.5}


def test_the_method_is_a_categorical_parameter_of_a_space_of_several_blocks():
    space = load_space(SWEEPS_DIR / "space_methods.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    methods = set()
    for _ in range(12):
        trial = study.ask()
        proposal = propose(space, trial, stand_in_parents(2))
        methods.add(proposal.candidate.method)
        assert trial.params["method"] == proposal.block
        assert all(name == "method" or name.startswith(f"{proposal.block}/") for name in trial.params)
        study.tell(trial, 0.0)
    assert methods == {"slerp", "linear", "ties"}
