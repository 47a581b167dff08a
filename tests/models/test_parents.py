"""Parent validation before any work: bad parents are built by copying zoo models and changing one thing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mergescope.errors import ConfigError
from mergescope.models.parents import check_finite, resolve_parents, weights_fingerprint

TENSOR = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture
def copy(zoo, tmp_path):
    """A function copying zoo model `name` into tmp_path/`as_name`, returning the copy's directory."""

    def make(name: str, as_name: str) -> Path:
        return Path(shutil.copytree(zoo.model_path(name), tmp_path / as_name))

    return make


def rewrite_weights(model_dir: Path, change) -> None:
    file = model_dir / "model.safetensors"
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_zoo_parents_and_base_are_compatible(zoo):
    parents = resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))
    assert [p.name for p in parents.parents] == ["arith", "facts"]
    assert parents.base.path == zoo.model_path("base")
    assert parents.architecture == "LlamaForCausalLM"


def test_a_different_architecture_class_is_refused(zoo, copy):
    other = copy("facts", "other")
    edit_json(other / "config.json", lambda c: c.update(architectures=["MistralForCausalLM"]))
    with pytest.raises(ConfigError, match="other and arith differ in architectures"):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_reshaped_tensor_is_named(zoo, copy):
    other = copy("facts", "other")
    rewrite_weights(other, lambda t: t.update({TENSOR: t[TENSOR][:-1].clone()}))
    with pytest.raises(
        ConfigError, match=rf"tensor {TENSOR} has shape \[\d+, \d+\] in arith but \[\d+, \d+\] in other"
    ):
        resolve_parents([zoo.model_path("arith"), other])


def test_the_first_mismatching_tensor_in_name_order_is_named(zoo, copy):
    other = copy("facts", "other")
    second = "model.layers.1.mlp.up_proj.weight"
    rewrite_weights(other, lambda t: t.update({TENSOR: t[TENSOR][:-1].clone(), second: t[second][:-1].clone()}))
    with pytest.raises(ConfigError, match=rf"tensor {TENSOR} "):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_missing_tensor_is_named(zoo, copy):
    other = copy("facts", "other")
    rewrite_weights(other, lambda t: t.pop(TENSOR))
    with pytest.raises(ConfigError, match=f"tensor {TENSOR} is missing from other"):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_different_dtype_is_named(zoo, copy):
    other = copy("facts", "other")
    rewrite_weights(other, lambda t: t.update({TENSOR: t[TENSOR].to(torch.float16)}))
    with pytest.raises(ConfigError, match=f"tensor {TENSOR} is F32 in arith but F16 in other"):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_different_vocabulary_size_is_refused(zoo, copy):
    other = copy("facts", "other")
    edit_json(other / "config.json", lambda c: c.update(vocab_size=c["vocab_size"] + 1))
    with pytest.raises(ConfigError, match="differ in vocab_size"):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_different_tokenizer_vocabulary_is_refused(zoo, copy):
    other = copy("facts", "other")

    def swap_two_tokens(tokenizer: dict) -> None:
        vocab = tokenizer["model"]["vocab"]
        first, second = list(vocab)[10:12]
        vocab[first], vocab[second] = vocab[second], vocab[first]

    edit_json(other / "tokenizer.json", swap_two_tokens)
    with pytest.raises(ConfigError, match="different tokenizer vocabularies"):
        resolve_parents([zoo.model_path("arith"), other])


def test_a_base_that_differs_is_refused_too(zoo, copy):
    base = copy("base", "odd-base")
    rewrite_weights(base, lambda t: t.update({TENSOR: t[TENSOR][:-1].clone()}))
    with pytest.raises(ConfigError, match=f"tensor {TENSOR}"):
        resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], base)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (lambda zoo: ([zoo.model_path("arith"), zoo.model_path("arith")], None), "a parent is listed twice"),
        (
            lambda zoo: ([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("arith")),
            "is also listed as a parent",
        ),
        (lambda zoo: ([zoo.model_path("arith")], None), "at least two parents"),
        (lambda zoo: ([zoo.model_path("arith"), zoo.root / "absent"], None), "not a directory"),
        (lambda zoo: ([zoo.model_path("arith"), zoo.root], None), "no config.json"),
    ],
)
def test_bad_parent_lists_are_refused(zoo, arguments, expected):
    parents, base = arguments(zoo)
    with pytest.raises(ConfigError, match=expected) as caught:
        resolve_parents(parents, base)
    assert caught.value.exit_code == 2


def test_pickled_weights_are_refused_unless_allowed(zoo, copy):
    other = copy("facts", "other")
    (other / "model.safetensors").rename(other / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="only pickled weights"):
        resolve_parents([zoo.model_path("arith"), other])


def test_the_cli_exits_2_and_merges_nothing_for_bad_parents(zoo, copy, tmp_path):
    from typer.testing import CliRunner

    from mergescope.cli.app import app

    other = copy("facts", "other")
    rewrite_weights(other, lambda t: t.update({TENSOR: t[TENSOR][:-1].clone()}))
    export = tmp_path / "export"
    result = CliRunner().invoke(
        app,
        [
            "candidates",
            "sweeps/default.yaml",
            "--parents",
            str(zoo.model_path("arith")),
            str(other),
            "--export",
            str(export),
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: tensor {TENSOR} has shape")
    assert len(result.output.strip().splitlines()) == 1
    assert not export.exists()


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")])
def test_a_nonfinite_weight_is_refused_naming_the_tensor_and_the_model(zoo, copy, value, kind):
    other = copy("facts", "broken")
    rewrite_weights(other, lambda t: t[TENSOR].view(-1).__setitem__(-1, value))  # the last element of one tensor
    parents = resolve_parents([zoo.model_path("arith"), other], zoo.model_path("base"))
    with pytest.raises(ConfigError, match=rf"broken \(.*broken\): tensor {TENSOR} holds {kind} values") as refused:
        check_finite(parents.models())
    assert "--allow-nonfinite" in refused.value.hint


def test_finite_models_are_checked_once_by_their_fingerprints(zoo, copy):
    models = resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base")).models()
    fingerprints = check_finite(models)
    assert len(set(fingerprints)) == 3
    broken = copy("facts", "broken")
    rewrite_weights(broken, lambda t: t[TENSOR].view(-1).__setitem__(0, float("nan")))
    (model,) = resolve_parents([zoo.model_path("arith"), broken]).parents[1:]
    # a fingerprint recorded as checked is not read again; rewriting the file changes the fingerprint
    assert check_finite([model], already_checked={weights_fingerprint(model)}) == (weights_fingerprint(model),)
    rewrite_weights(broken, lambda t: None)
    with pytest.raises(ConfigError, match="holds NaN"):
        check_finite([model], already_checked=set(fingerprints))


def test_huge_finite_weights_whose_sum_overflows_are_accepted(zoo, copy):
    """The check sums each block first; a sum that overflows to inf is confirmed element by element."""
    huge = copy("facts", "huge")
    rewrite_weights(huge, lambda t: t[TENSOR].view(-1)[:4].fill_(3e38))  # float32: finite, their sum is inf
    (model,) = resolve_parents([zoo.model_path("arith"), huge]).parents[1:]
    assert check_finite([model]) == (weights_fingerprint(model),)
