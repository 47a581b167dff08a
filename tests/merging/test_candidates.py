"""Sweep specs -> candidates: grids, spans, gradients, filters, per-parent values, seeds, ids, bad input, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.errors import ConfigError
from mergescope.merging.candidates import expand, export_candidates, from_mergekit_yaml
from mergescope.merging.spec import SWEEPS_DIR, load_sweep
from mergescope.runs.records import ModelRef, ParentSet

LU2024_T = [
    {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
    {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
    {"value": 0.5},
]


@pytest.fixture
def parents() -> ParentSet:
    # Expansion only writes paths into configs; it never opens the models.
    return ParentSet(
        parents=(ModelRef("a", Path("/m/a")), ModelRef("b", Path("/m/b"))), base=ModelRef("base", Path("/m/base"))
    )


def spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def candidates_of(tmp_path: Path, text: str, parents: ParentSet):
    return expand(load_sweep(spec_file(tmp_path, text)), parents)


def test_span_expands_to_evenly_spaced_points_with_first_parent_as_slerp_base(tmp_path, parents):
    found = candidates_of(
        tmp_path, "name: s\nmethods:\n- method: slerp\n  parameters:\n    t: {start: 0, stop: 1, num: 5}\n", parents
    )
    assert [c.mergekit_config["parameters"]["t"] for c in found] == pytest.approx(list(np.linspace(0, 1, 5)))
    assert all(c.mergekit_config["base_model"] == "/m/a" for c in found)
    assert [c.mix for c in found] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert len({c.id for c in found}) == 5


def test_grids_multiply_and_per_parent_lists_sweep_each_parent(tmp_path, parents):
    text = """name: g
methods:
- method: ties
  parameters: {density: {grid: [0.3, 0.6]}}
  per_parent:
  - {weight: {grid: [0.2, 0.8]}}
  - {weight: 0.5}
"""
    found = candidates_of(tmp_path, text, parents)
    points = {
        (c.mergekit_config["parameters"]["density"], c.mergekit_config["models"][0]["parameters"]["weight"])
        for c in found
    }
    assert points == {(0.3, 0.2), (0.3, 0.8), (0.6, 0.2), (0.6, 0.8)}
    assert all(c.mergekit_config["models"][1]["parameters"]["weight"] == 0.5 for c in found)
    assert all(c.mergekit_config["base_model"] == "/m/base" for c in found)
    assert set(found[0].parameters) == {"density", "weight[a]"}


def test_a_sweep_in_one_per_parent_mapping_is_one_axis_for_all_parents(tmp_path, parents):
    text = "name: d\nmethods:\n- method: ties\n  per_parent: {weight: 0.5, density: {grid: [0.2, 0.4, 0.6]}}\n"
    found = candidates_of(tmp_path, text, parents)
    assert len(found) == 3
    for candidate, density in zip(found, [0.2, 0.4, 0.6], strict=True):
        assert [m["parameters"]["density"] for m in candidate.mergekit_config["models"]] == [density, density]


def test_gradients_and_filters_are_copied_into_the_mergekit_config_as_written(parents):
    (candidate,) = expand(load_sweep(SWEEPS_DIR / "lu2024_slerp.yaml"), parents)
    assert candidate.mergekit_config["parameters"]["t"] == LU2024_T
    assert candidate.mergekit_config["base_model"] == "/m/a"
    grid = expand(load_sweep(SWEEPS_DIR / "slerp_grid.yaml"), parents)
    assert [c.mergekit_config["parameters"]["t"] for c in grid[-3:]] == [[0, 1], [1, 0], [0, 0.5, 1, 0.5, 0]]


def test_random_methods_get_one_candidate_per_seed_and_deterministic_ones_ignore_seeds(tmp_path, parents):
    text = """name: seeds
methods:
- method: dare_ties
  per_parent: {weight: 0.5, density: 0.5}
  seeds: [0, 1, 2]
- method: della
  per_parent: {weight: 0.5, density: 0.5}
- method: ties
  per_parent: {weight: 0.5, density: 0.5}
  seeds: [0, 1, 2]
"""
    found = candidates_of(tmp_path, text, parents)
    assert [(c.method, c.seed) for c in found] == [
        ("dare_ties", 0),
        ("dare_ties", 1),
        ("dare_ties", 2),
        ("della", 0),
        ("ties", None),
    ]
    assert len({c.id for c in found}) == 5


def test_identical_merges_collapse_to_one_id(tmp_path, parents):
    text = """name: same
methods:
- method: slerp
  parameters: {t: {grid: [1, 1.0, 0.5]}}
- method: slerp
  label: again
  parameters: {t: 0.5}
"""
    found = candidates_of(tmp_path, text, parents)
    assert len(found) == 2
    again = candidates_of(tmp_path, text, parents)
    assert [c.id for c in found] == [c.id for c in again]


def test_methods_compare_has_one_point_for_every_registered_method_with_two_or_more_inputs(parents):
    from mergekit.merge_methods import registered_methods

    multi_input = {m.spec.name for m in registered_methods() if (m.spec.contract.max_inputs or 2) >= 2}
    found = expand(load_sweep(SWEEPS_DIR / "methods_compare.yaml"), parents)
    assert sorted(c.method for c in found) == sorted(multi_input)
    model_stock = next(c for c in found if c.method == "model_stock")
    assert model_stock.mergekit_config["base_model"] == "/m/base"
    assert "base_model" not in next(c for c in found if c.method == "linear").mergekit_config


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "- method: slrep\n  parameters: {t: 0.5}",
            "methods.0.method: unknown merge method 'slrep' (hint: did you mean 'slerp'",
        ),
        ("- method: slerp\n  parameters: {t: 1.5}", "methods.0.parameters.t: 1.5 is outside [0, 1]"),
        (
            "- method: slerp\n  parameters: {t: [{filter: mlp, value: [0, 2]}, {value: 0.5}]}",
            "parameters.t: 2 is outside [0, 1]",
        ),
        ("- method: ties\n  per_parent: {weight: 0.5, density: 0}", "per_parent.0.density: 0 is outside (0, 1]"),
        ("- method: ties\n  per_parent: {weight: 0.5, density: {grid: [0.5, 1.2]}}", "density: 1.2 is outside (0, 1]"),
        (
            "- method: ties\n  per_parent: {weight: 0.5, densty: 0.5}",
            "ties has no parameter 'densty' (hint: did you mean 'density'",
        ),
        ("- method: slerp\n  parameters: {}", "methods.0.parameters: slerp needs 't'"),
        ("- method: slerp\n  paramters: {t: 0.5}", "methods.0.paramters: Extra inputs are not permitted"),
        ("- method: slerp\n  parameters: {t: {start: 0, stop: 1}}", "methods.0.parameters.num: Field required"),
        ("- method: linear\n  per_parent: [{weight: 1}]", "methods.0.per_parent: 1 entries for 2 parents"),
    ],
)
def test_bad_specs_fail_with_one_line_naming_file_and_key(tmp_path, parents, block, expected):
    path = spec_file(tmp_path, f"name: bad\nmethods:\n{block}\n")
    with pytest.raises(ConfigError) as caught:
        expand(load_sweep(path), parents)
    message = caught.value.one_line()
    assert expected in message
    assert "\n" not in message
    assert caught.value.exit_code == 2
    assert message.startswith(f"{path}: methods.0")


def test_a_method_that_needs_a_base_fails_without_one(tmp_path):
    no_base = ParentSet(parents=(ModelRef("a", Path("/m/a")), ModelRef("b", Path("/m/b"))))
    path = spec_file(tmp_path, "name: nb\nmethods:\n- method: model_stock\n")
    with pytest.raises(ConfigError, match=r"spec.yaml: methods.0: method 'model_stock' needs a base model"):
        expand(load_sweep(path), no_base)


def test_cli_exits_2_with_one_line_and_writes_nothing_for_a_bad_spec(zoo, tmp_path):
    path = spec_file(tmp_path, "name: bad\nmethods:\n- method: slerp\n  parameters: {t: 7}\n")
    export = tmp_path / "export"
    args = [
        "candidates",
        str(path),
        "--export",
        str(export),
        "--parents",
        str(zoo.model_path("arith")),
        str(zoo.model_path("facts")),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {path}: methods.0.parameters.t: 7 is outside [0, 1]"
    assert not export.exists()


def test_cli_plans_and_exports_plain_mergekit_yaml_that_reads_back_unchanged(zoo, tmp_path):
    runner = CliRunner()
    export = tmp_path / "export"
    args = [
        "candidates",
        str(SWEEPS_DIR / "density_sweep.yaml"),
        "--parents",
        str(zoo.model_path("arith")),
        str(zoo.model_path("facts")),
        "--base",
        str(zoo.model_path("base")),
        "--export",
        str(export),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.output)
    assert len(rows) == 5 + 5 * 3
    for row in rows:
        text = Path(row["file"]).read_text()
        config = yaml.safe_load(text)
        assert set(config) == {"merge_method", "models", "dtype", "base_model", "parameters"}
        back = from_mergekit_yaml(Path(row["file"]))
        assert back.mergekit_config == config
        if row["seed"] is not None:
            assert f"--random-seed {row['seed']}" in text
        else:
            assert back.id == row["id"]


def test_a_spec_may_list_existing_mergekit_yamls_as_candidates(tmp_path, parents):
    (slerp,) = candidates_of(tmp_path, "name: one\nmethods:\n- method: slerp\n  parameters: {t: 0.3}\n", parents)
    (file,) = export_candidates([slerp], tmp_path / "configs")
    text = (
        f"name: mixed\nmergekit_configs: [configs/{file.name}]\nmethods:\n- method: slerp\n  parameters: {{t: 0.3}}\n"
    )
    found = candidates_of(tmp_path, text, parents)
    assert [c.id for c in found] == [slerp.id]  # the same merge listed twice is one candidate
