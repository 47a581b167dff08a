"""SLERP diagnostics on the zoo: angles and linear fallbacks against direct computation and mergekit's slerp()."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mergekit.merge_methods.slerp import slerp
from safetensors.numpy import load_file

from mergescope.analysis.slerp_diagnostics import (
    diagnose,
    load_slerp_diagnostics,
    plan_slerp,
    record_slerp_diagnostics,
    slerp_summary,
)
from mergescope.errors import ConfigError
from mergescope.merging.candidates import expand
from mergescope.merging.spec import SweepSpec
from mergescope.models.parents import resolve_parents
from mergescope.runs.records import Candidate, EvalSubject
from mergescope.runs.store import STORE_NAME, ResultsStore

THRESHOLD = 0.9995  # mergekit's slerp(): nearly parallel tensors are interpolated linearly


def slerp_config(zoo, t) -> dict:
    arith, facts = str(zoo.model_path("arith")), str(zoo.model_path("facts"))
    return {
        "merge_method": "slerp",
        "base_model": arith,
        "models": [{"model": arith}, {"model": facts}],
        "parameters": {"t": t},
        "dtype": "float32",
    }


def candidate(zoo, t, id="c") -> Candidate:
    return Candidate(id=id, method="slerp", label=f"slerp t={t}", mergekit_config=slerp_config(zoo, t))


@pytest.fixture(scope="module")
def parents(zoo):
    return {name: load_file(str(zoo.model_path(name) / "model.safetensors")) for name in ("arith", "facts")}


@pytest.fixture(scope="module")
def half(zoo):
    return diagnose([candidate(zoo, 0.5)])[0]


def test_linear_shares_match_a_direct_computation_of_the_angles(parents, half):
    arith, facts = parents["arith"], parents["facts"]
    assert {t.tensor for t in half.tensors} == set(arith)
    cosines = {}
    for name in arith:
        a, b = arith[name].astype(np.float64).ravel(), facts[name].astype(np.float64).ravel()
        cosines[name] = float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    # A tensor within rounding of the threshold could fall either way; the zoo has none.
    assert all(abs(abs(c) - THRESHOLD) > 1e-5 for c in cosines.values())
    linear = {name for name, c in cosines.items() if abs(c) > THRESHOLD}
    assert {t.tensor for t in half.tensors if t.linear} == linear
    assert half.linear_tensor_share == pytest.approx(len(linear) / len(arith))
    n_params = sum(v.size for v in arith.values())
    assert half.linear_param_share == pytest.approx(sum(arith[n].size for n in linear) / n_params)
    for measured in half.tensors:
        assert measured.cosine == pytest.approx(cosines[measured.tensor], abs=1e-5)
        assert measured.angle_degrees == pytest.approx(math.degrees(math.acos(cosines[measured.tensor])), abs=0.05)
    assert 0 < half.linear_tensor_share < 1  # the zoo's norms barely move; its matrices do


def test_tensors_called_linear_are_exactly_mergekits_linear_interpolation(parents, half):
    t = torch.tensor([half.tensors[0].t], dtype=torch.float32)
    for measured in half.tensors:
        a, b = (torch.from_numpy(parents[p][measured.tensor]) for p in ("arith", "facts"))
        merged = slerp(t, a.unsqueeze(0), b.unsqueeze(0))[0]
        lerp = (1 - t) * a + t * b
        if measured.linear:
            assert torch.equal(merged, lerp), measured.tensor
        else:
            assert not torch.allclose(merged, lerp, rtol=0, atol=1e-6), measured.tensor


def test_gradient_and_filter_t_are_resolved_per_tensor_as_mergekit_plans_them(zoo):
    config = slerp_config(zoo, [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]}, {"value": 0.3}])
    planned = {p.output: p.t for p in plan_slerp(config)}
    # mergekit spreads a gradient over the layers: layer i of n gets the value at i / (n - 1).
    for name, t in planned.items():
        if ".self_attn." in name:
            assert t == (0.0 if ".layers.0." in name else 1.0), name
        else:
            assert t == 0.3, name
    diagnostics = diagnose([Candidate(id="g", method="slerp", label="g", mergekit_config=config)])[0]
    assert {m.tensor: m.t for m in diagnostics.tensors} == planned


def test_only_slerp_candidates_are_diagnosed_and_the_base_is_v0(zoo):
    arith, facts = str(zoo.model_path("arith")), str(zoo.model_path("facts"))
    linear = Candidate(
        id="l",
        method="linear",
        label="linear",
        mergekit_config={
            "merge_method": "linear",
            "models": [{"model": arith, "parameters": {"weight": 1}}, {"model": facts, "parameters": {"weight": 1}}],
            "dtype": "float32",
        },
    )
    assert diagnose([linear]) == []
    with pytest.raises(ConfigError, match="need a slerp merge"):
        plan_slerp(linear.mergekit_config)
    assert all(
        Path(p.base_path).name == "arith" and Path(p.other_path).name == "facts"
        for p in plan_slerp(slerp_config(zoo, 0.5))
    )


def test_sweep_candidates_are_diagnosed_once_and_summarised(zoo, tmp_path, half):
    parent_set = resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))
    spec = SweepSpec(
        name="s",
        methods=[
            {"method": "slerp", "parameters": {"t": {"grid": [0.25, 0.5]}}},
            {"method": "linear", "per_parent": {"weight": 0.5}},
        ],
    )
    candidates = expand(spec, parent_set)
    store = ResultsStore(tmp_path / STORE_NAME)
    store.plan([EvalSubject(id=c.id, kind="candidate", label=c.label, candidate=c) for c in candidates])
    record_slerp_diagnostics(store, candidates)
    slerps = [c for c in candidates if c.method == "slerp"]
    stored = {c.id: load_slerp_diagnostics(store, c.id) for c in slerps}
    record_slerp_diagnostics(store, candidates)  # already stored: nothing is added
    n_rows = store.query("SELECT count(*) AS n FROM slerp_diagnostics")[0]["n"]
    assert n_rows == sum(len(d.tensors) for d in stored.values())
    store.close()
    for diagnostics in stored.values():  # the fallback depends on the parents, not on t
        assert [m.linear for m in diagnostics.tensors] == [m.linear for m in half.tensors]
    summary = slerp_summary(tmp_path).set_index("candidate_id")
    assert set(summary.index) == {c.id for c in slerps}
    for candidate_id, diagnostics in stored.items():
        assert summary.loc[candidate_id, "linear_param_share"] == pytest.approx(diagnostics.linear_param_share)
        assert summary.loc[candidate_id, "linear_tensor_share"] == pytest.approx(half.linear_tensor_share)
        assert summary.loc[candidate_id, "label"] == diagnostics.label


@pytest.mark.slow
def test_every_sweep_stores_slerp_diagnostics(default_run):
    _, result = default_run
    summary = slerp_summary(result.run_dir)
    assert len(summary) == 5  # the default spec's five SLERP points
    assert summary.linear_tensor_share.nunique() == 1
