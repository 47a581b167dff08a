"""Kinship on the zoo: invariants, streamed figures against numpy/scipy on whole vectors, bad input, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from mergescope.analysis import weights
from mergescope.analysis.kinship import kinship
from mergescope.cli.app import app
from mergescope.errors import ConfigError

runner = CliRunner()


# -- golden values, computed directly from whole tensors ---------------------------------------
def state(model_dir: Path) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def concatenated(model: dict, base: dict | None, names: list[str]) -> np.ndarray:
    """The task vector (or raw weights without a base) of `names`, concatenated, in float64."""
    return np.concatenate(
        [model[n].astype(np.float64).ravel() - (base[n].astype(np.float64).ravel() if base else 0) for n in names]
    )


def assert_figure_matches(figure, x: np.ndarray, y: np.ndarray) -> None:
    assert figure.n_params == x.size
    assert figure.pearson == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-9)
    assert figure.pearson == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    cosine = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
    assert figure.cosine == pytest.approx(cosine, abs=1e-9)
    assert figure.abs_cosine == pytest.approx(abs(cosine), abs=1e-9)
    assert figure.euclidean == pytest.approx(np.linalg.norm(x - y), rel=1e-9)


@pytest.fixture(scope="module")
def zoo_states(zoo):
    return {name: state(zoo.model_path(name)) for name in ("base", "arith", "facts", "stranger")}


@pytest.fixture(scope="module")
def three(zoo):
    """Kinship of both parents and the stranger relative to the base (which the stranger does not descend from)."""
    models = [zoo.model_path(m) for m in ("arith", "facts", "stranger")]
    return kinship(models, base=zoo.model_path("base"), require_shared_base=False)


@pytest.fixture(scope="module")
def average(zoo, zoo_states, tmp_path_factory) -> Path:
    """A third descendant of the base: the parents' plain average, kin to each more than they are to each other."""
    directory = tmp_path_factory.mktemp("average")
    arith, facts = zoo_states["arith"], zoo_states["facts"]
    save_file({n: (arith[n] + facts[n]) / 2 for n in arith}, str(directory / "model.safetensors"))
    return directory


def resharded(model_dir: Path, out: Path, n_shards: int = 3) -> Path:
    """A copy of a model split into shards with a model.safetensors.index.json, as large models ship."""
    out.mkdir(parents=True)
    tensors = state(model_dir)
    names = sorted(tensors)
    weight_map = {}
    for number, part in enumerate(np.array_split(np.array(names), n_shards), 1):
        file = f"model-{number:05d}-of-{n_shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(out / file))
        weight_map.update({n: file for n in part})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    shutil.copy(model_dir / "config.json", out / "config.json")
    return out


# -- figures against numpy ------------------------------------------------------------------------
def test_whole_model_figures_are_the_statistics_of_the_concatenated_task_vectors(zoo_states, three):
    base = zoo_states["base"]
    names = sorted(base)
    for a, b in [("arith", "facts"), ("arith", "stranger"), ("facts", "stranger")]:
        x, y = concatenated(zoo_states[a], base, names), concatenated(zoo_states[b], base, names)
        assert_figure_matches(three.pair(a, b), x, y)
        assert three.pair(a, b).relative_to_base


def test_per_layer_and_per_module_figures_match_numpy_on_their_tensors(zoo_states, three):
    base, arith, facts = zoo_states["base"], zoo_states["arith"], zoo_states["facts"]
    groups = {
        ("layer", "0"): [n for n in base if n.startswith("model.layers.0.")],
        ("layer", "1"): [n for n in base if n.startswith("model.layers.1.")],
        ("module", "attention"): [n for n in base if ".self_attn." in n],
        ("module", "mlp"): [n for n in base if ".mlp." in n],
        ("module", "embeddings"): ["model.embed_tokens.weight"],
        ("module", "lm_head"): ["lm_head.weight"],
        ("module", "norm"): [n for n in base if n.endswith("norm.weight")],
    }
    assert {f.scope_name for f in three.select("layer")} == {"0", "1"}  # the zoo has two layers
    for (scope, scope_name), names in groups.items():
        names = sorted(names)
        assert names, scope_name
        x, y = concatenated(arith, base, names), concatenated(facts, base, names)
        assert_figure_matches(three.pair("arith", "facts", scope, scope_name), x, y)
    tensor = "model.layers.1.mlp.down_proj.weight"
    assert_figure_matches(
        three.pair("arith", "facts", "tensor", tensor),
        concatenated(arith, base, [tensor]),
        concatenated(facts, base, [tensor]),
    )


def test_without_a_base_raw_weights_are_compared_and_the_report_says_so(zoo, zoo_states):
    report = kinship([zoo.model_path("arith"), zoo.model_path("facts")])
    names = sorted(zoo_states["base"])
    x, y = concatenated(zoo_states["arith"], None, names), concatenated(zoo_states["facts"], None, names)
    assert_figure_matches(report.pair("arith", "facts"), x, y)
    assert not any(f.relative_to_base for f in report.figures)
    assert "raw weights" in report.compared and "raw weights" in report.to_text()
    assert report.to_json()["relative_to_base"] is False


def test_figures_do_not_depend_on_shards_or_read_block_size(zoo, tmp_path, monkeypatch, three):
    sharded = resharded(zoo.model_path("arith"), tmp_path / "arith")
    monkeypatch.setattr(weights, "BLOCK_ELEMENTS", 1000)  # every big tensor is read in many row blocks
    report = kinship(
        [sharded, zoo.model_path("facts"), zoo.model_path("stranger")],
        base=zoo.model_path("base"),
        require_shared_base=False,
    )
    assert [f.scope_name for f in report.figures] == [f.scope_name for f in three.figures]
    for streamed, whole in zip(report.figures, three.figures, strict=True):
        for metric in ("pearson", "cosine", "euclidean"):
            assert getattr(streamed, metric) == pytest.approx(getattr(whole, metric), rel=1e-9, abs=1e-12)


# -- invariants ---------------------------------------------------------------------------------
@pytest.mark.parametrize("with_base", [True, False])
def test_a_model_is_fully_kin_to_itself(zoo, with_base):
    base = zoo.model_path("base") if with_base else None
    report = kinship([zoo.model_path("arith"), zoo.model_path("arith")], base=base)
    assert report.models == ("arith-1", "arith-2")
    for figure in report.select("model") + report.select("layer") + report.select("module"):
        assert figure.pearson == pytest.approx(1.0, abs=1e-12)
        assert figure.cosine == pytest.approx(1.0, abs=1e-12)
        assert figure.euclidean == 0.0


def test_kinship_is_symmetric(zoo, three):
    swapped = kinship(
        [zoo.model_path(m) for m in ("stranger", "facts", "arith")],
        base=zoo.model_path("base"),
        require_shared_base=False,
    )
    for figure in three.figures:
        other = swapped.pair(figure.model_b, figure.model_a, figure.scope, figure.scope_name)
        for metric in ("pearson", "cosine", "abs_cosine", "euclidean"):
            assert getattr(other, metric) == pytest.approx(getattr(figure, metric), rel=1e-12, abs=1e-15)
    for metric in ("pearson", "cosine", "euclidean"):
        matrix = np.array(three.matrix(metric))
        assert np.array_equal(matrix, matrix.T)


def test_the_stranger_is_less_kin_to_the_parents_than_they_are_to_each_other(zoo):
    # Raw weights: the stranger does not descend from the base, so it has no task vector to compare.
    report = kinship([zoo.model_path(m) for m in ("arith", "facts", "stranger")])
    parents = report.pair("arith", "facts")
    for parent in ("arith", "facts"):
        assert report.pair(parent, "stranger").pearson < parents.pearson
        assert report.pair(parent, "stranger").cosine < parents.cosine
        assert report.pair(parent, "stranger").euclidean > parents.euclidean


def test_kinship_guided_order_puts_the_least_kin_pair_first(zoo, average):
    report = kinship([zoo.model_path("arith"), zoo.model_path("facts"), average], base=zoo.model_path("base"))
    order = report.merge_order()
    pearsons = [f.pearson for f in order]
    assert pearsons == sorted(pearsons) and len(order) == 3
    assert (order[0].model_a, order[0].model_b) == ("arith", "facts")
    assert kinship([zoo.model_path("arith"), zoo.model_path("facts"), average]).merge_order() == []


def test_descent_from_the_base_is_measured_on_raw_attention_and_mlp_weights(zoo, zoo_states, three):
    base = zoo_states["base"]
    names = sorted(n for n in base if ".self_attn." in n or ".mlp." in n)
    for figure, model in zip(three.base_figures, ("arith", "facts", "stranger"), strict=True):
        assert (figure.model_a, figure.model_b, figure.relative_to_base) == (model, "base", False)
        assert_figure_matches(figure, concatenated(zoo_states[model], None, names), concatenated(base, None, names))
    parents, stranger = three.base_figures[:2], three.base_figures[2]
    assert min(f.pearson for f in parents) > 0.5 and abs(stranger.pearson) < 0.05


# -- bad input -------------------------------------------------------------------------------------
def test_a_missing_shard_is_named(zoo, tmp_path):
    sharded = resharded(zoo.model_path("arith"), tmp_path / "arith")
    (sharded / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ConfigError, match="model-00002-of-00003.safetensors: shard listed .* is missing"):
        kinship([sharded, zoo.model_path("facts")], base=zoo.model_path("base"))


def test_a_corrupt_file_is_named(zoo, tmp_path):
    broken = tmp_path / "facts"
    shutil.copytree(zoo.model_path("facts"), broken)
    weights_file = broken / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-1000])  # truncated: the header no longer fits the data
    with pytest.raises(ConfigError, match=r"model\.safetensors: corrupt safetensors file"):
        kinship([zoo.model_path("arith"), broken])


def test_mismatched_shapes_and_names_are_named_before_any_figure(zoo, tmp_path):
    tensors = state(zoo.model_path("facts"))
    for name, changed in [
        ("wide", {**tensors, "model.norm.weight": np.ones(7, dtype=np.float32)}),
        ("short", {k: v for k, v in tensors.items() if k != "lm_head.weight"}),
    ]:
        (tmp_path / name).mkdir()
        save_file(changed, str(tmp_path / name / "model.safetensors"))
    with pytest.raises(ConfigError, match=r"tensor model\.norm\.weight has shape \[64\] in arith but \[7\] in wide"):
        kinship([zoo.model_path("arith"), tmp_path / "wide"])
    with pytest.raises(ConfigError, match=r"tensor lm_head\.weight is missing from short"):
        kinship([zoo.model_path("arith"), zoo.model_path("facts")], base=tmp_path / "short")


def test_a_model_that_does_not_descend_from_the_base_is_named(zoo):
    with pytest.raises(ConfigError, match="stranger does not descend from the base .*base: its attention"):
        kinship([zoo.model_path("arith"), zoo.model_path("stranger")], base=zoo.model_path("base"))


def test_one_model_is_refused(zoo):
    with pytest.raises(ConfigError, match="at least two models"):
        kinship([zoo.model_path("arith")])


# -- CLI -------------------------------------------------------------------------------
def test_cli_prints_the_matrix_and_merge_order_as_json(zoo, average):
    models = [str(zoo.model_path("arith")), str(zoo.model_path("facts")), str(average)]
    result = runner.invoke(app, ["kinship", *models, "--base", str(zoo.model_path("base")), "--json", "--per-layer"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["models"] == ["arith", "facts", average.name] and data["relative_to_base"] is True
    assert len(data["matrix"]["pearson"]) == 3 and data["matrix"]["pearson"][1][1] == 1.0
    assert data["merge_order"][0] == ["arith", "facts"]
    assert [f["model_b"] for f in data["base_kinship"]] == ["base"] * 3
    assert {f["scope"] for f in data["figures"]} == {"model", "module", "layer"}
    assert "reference code" in data["abs_cosine_note"]


def test_cli_table_and_bad_input_message(zoo, tmp_path):
    result = runner.invoke(app, ["kinship", str(zoo.model_path("arith")), str(zoo.model_path("facts"))])
    assert result.exit_code == 0 and "raw weights" in result.output and "attention" in result.output
    result = runner.invoke(app, ["kinship", str(zoo.model_path("arith")), str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: ") and "no *.safetensors" in result.output
    assert len(result.output.strip().splitlines()) == 1
