"""Sweep specs (merging/spec.py): grids and spans, strict keys, located messages, the loader's checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mergescope.errors import ConfigError
from mergescope.merging.spec import (
    DEFAULT_SWEEP,
    Grid,
    MethodBlock,
    Span,
    SweepSpec,
    as_sweep,
    load_sweep,
    validation_message,
)


def spec_file(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_span_is_evenly_spaced_with_both_ends_and_a_grid_is_its_list():
    assert Span(start=0, stop=1, num=5).values() == pytest.approx(list(np.linspace(0, 1, 5)))
    assert Span(start=0.2, stop=0.2, num=1).values() == [0.2]
    assert Grid(grid=[0.1, [0, 1]]).values() == [0.1, [0, 1]]


def test_only_grid_and_span_mappings_are_sweeps():
    assert isinstance(as_sweep({"grid": [1, 2]}), Grid) and isinstance(
        as_sweep({"start": 0, "stop": 1, "num": 2}), Span
    )
    assert as_sweep(0.5) is None and as_sweep([0, 0.5, 1]) is None
    assert as_sweep([{"filter": "mlp", "value": 0.5}]) is None


def test_a_malformed_sweep_inside_parameters_is_refused_where_it_is():
    with pytest.raises(ValidationError) as caught:
        MethodBlock(method="slerp", parameters={"t": {"grid": []}})
    assert "parameters" in str(caught.value)


def test_the_validation_message_names_the_source_the_key_and_counts_the_rest():
    with pytest.raises(ValidationError) as caught:
        SweepSpec.model_validate({"name": "x", "dtype": "int8", "methodz": []})
    message = validation_message(caught.value, "spec.yaml")
    assert message.startswith("spec.yaml: dtype: ") and message.endswith("(and 1 more problem)")


def test_the_default_spec_loads_and_remembers_its_source():
    spec = load_sweep()
    assert spec.source == str(DEFAULT_SWEEP) and spec.methods
    assert "source" not in spec.model_dump()  # provenance stores the spec without its path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- just a list\n", "a sweep spec must be a YAML mapping"),
        ("name: empty\n", "methods: the spec lists no method block and no mergekit config"),
        ("name: typo\nmethod: []\n", "method: Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_one_line_naming_the_file(tmp_path, text, expected):
    path = spec_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    assert caught.value.one_line().startswith(f"{path}") and expected in caught.value.one_line()


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = spec_file(tmp_path, "name: broken\nmethods:\n  - method: slerp\n   parameters: {t: 0.5}\n")
    with pytest.raises(ConfigError, match=r"spec.yaml: line \d+: malformed YAML"):
        load_sweep(path)


def test_a_missing_spec_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml': no such file, nor a shipped sweep spec"):
        load_sweep(tmp_path / "nope.yaml")
