"""Real parents (zoo/real.py, real_world.py, real_scores.py): the world's splits, the recipe key and its cache, the
manifest, the scoring rule; slow: a cheap recipe built end to end from SmolLM2-135M-Instruct and loaded back."""

from __future__ import annotations

import dataclasses
import json
import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch

from mergescope.zoo import real, real_world
from mergescope.zoo.real import CPT, CPT_SFT, INSTRUCT, MANIFEST_NAME, QUICK_RECIPE, ParentModel, ParentSet
from mergescope.zoo.real_scores import ChatItem, contains, recall

SHA = "0" * 64


def phrasing(question: str, land: str) -> str:
    return re.sub(rf"\b{land}\b", "{land}", question)


@pytest.fixture(scope="module")
def world() -> real_world.RealWorld:
    return real_world.generate(0, n_lands=12, n_practice_lands=5, docs_per_land=3)


def test_the_eval_split_is_chat_domain_s_items_about_the_lands_read(world):
    rows = [
        json.loads(line)
        for line in files("mergescope.scoring").joinpath("tasks/chat_domain.jsonl").read_text().splitlines()
        if line.strip()
    ]
    names = {land.name for land in world.lands}
    assert [(item.question, item.answer) for item in world.eval] == [
        (row["question"], row["answer"]) for row in rows if row["land"] in names
    ]
    assert world.eval and world.dev


def test_no_dev_or_eval_fact_is_trained_nor_asked_in_a_trained_phrasing(world):
    domain = {land.name for land in world.lands}
    practice = {land.name for land in world.practice_lands}
    assert not domain & practice
    asked = [real_world.asked_land(real_world.QAItem(q, a), world.practice_lands) for q, a in world.train_qa]
    assert set(asked) == practice and len(world.train_qa) == 4 * len(real_world.TRAIN_QUESTIONS["capital"]) * 5
    held_out = world.dev + world.eval
    assert not {item.question for item in world.dev} & {item.question for item in world.eval}
    trained = {phrasing(q, land) for (q, _), land in zip(world.train_qa, asked, strict=True)}
    tested = {phrasing(item.question, real_world.asked_land(item, world.lands)) for item in held_out}
    assert not trained & tested


def test_every_land_read_has_documents_with_all_its_facts(world):
    for land in world.lands + world.practice_lands:
        about = [doc for doc in world.documents if land.name in doc.replace(".", " ").replace("'s", " ").split()]
        assert len(about) == 3
        assert all(land.capital in doc and land.ruler in doc and f"{land.population} thousand" in doc for doc in about)


def test_knowledge_items_rank_the_true_value_against_other_lands_values(world):
    assert len(world.knowledge) == 4 * len(world.lands)
    for item in world.knowledge:
        assert item.choices()[0] == item.answer and item.answer not in item.distractors
        assert len(set(item.distractors)) == len(item.distractors) == 4


def test_the_recipe_key_changes_with_recipe_seed_start_weights_and_cpu_kernels(monkeypatch):
    key = real.recipe_key(QUICK_RECIPE, 0, SHA)
    assert key == real.recipe_key(QUICK_RECIPE, 0, SHA) and re.fullmatch("[0-9a-f]{16}", key)
    others = {
        real.recipe_key(dataclasses.replace(QUICK_RECIPE, cpt=dataclasses.replace(QUICK_RECIPE.cpt, lr=2e-4)), 0, SHA),
        real.recipe_key(dataclasses.replace(QUICK_RECIPE, threads=2), 0, SHA),
        real.recipe_key(dataclasses.replace(QUICK_RECIPE, n_lands=4), 0, SHA),
        real.recipe_key(QUICK_RECIPE, 1, SHA),
        real.recipe_key(QUICK_RECIPE, 0, "1" * 64),
    }
    monkeypatch.setattr(real, "cpu_capability", lambda: "DEFAULT")
    others.add(real.recipe_key(QUICK_RECIPE, 0, SHA))
    assert len(others) == 6 and key not in others


def _fake_manifest(key: str, recipe: real.RealRecipe) -> ParentSet:
    return ParentSet(
        recipe_key=key,
        recipe=recipe.as_dict(),
        seed=0,
        cpu_capability="AVX512",
        torch_version="2",
        data_fingerprint="f",
        instruct_sha256=SHA,
        split_sizes={"dev": 1, "eval": 2},
        lands=["A"],
        models=[
            ParentModel(name=INSTRUCT, path=INSTRUCT, scores={"general": 0.5}),
            ParentModel(
                name=CPT,
                path=CPT,
                scores={"general": 0.4},
                forgetting=0.1,
                task_vector_norm=0.01,
                tail_loss=1.0,
                seconds=3.0,
            ),
        ],
        build_seconds=4.0,
        load_average=(1.0, 2.0),
    )


def test_a_set_is_reused_for_its_key_and_rebuilt_for_another(tmp_path, monkeypatch):
    (tmp_path / INSTRUCT).mkdir()
    (tmp_path / INSTRUCT / "model.safetensors").write_bytes(b"weights")
    built = []

    def fake_build(root: Path, recipe: real.RealRecipe, seed: int = 0, log=None) -> ParentSet:
        built.append(recipe)
        (root / CPT).mkdir(exist_ok=True)
        key = real.recipe_key(recipe, seed, real.file_sha256(root / INSTRUCT / "model.safetensors"))
        manifest = _fake_manifest(key, recipe)
        (root / MANIFEST_NAME).write_text(manifest.model_dump_json())
        return manifest

    monkeypatch.setattr(real, "build_parents", fake_build)
    first = real.ensure_parents(tmp_path, QUICK_RECIPE, log=None)
    assert real.ensure_parents(tmp_path, QUICK_RECIPE, log=None) == first and len(built) == 1
    (tmp_path / CPT / "stale").write_text("from the other recipe")
    real.ensure_parents(tmp_path, dataclasses.replace(QUICK_RECIPE, docs_per_land=3), log=None)
    assert len(built) == 2 and not (tmp_path / CPT / "stale").exists()
    (tmp_path / INSTRUCT / "model.safetensors").write_bytes(b"other weights")
    real.ensure_parents(tmp_path, dataclasses.replace(QUICK_RECIPE, docs_per_land=3), log=None)
    assert len(built) == 3


def test_the_manifest_round_trips_and_refuses_unknown_keys():
    manifest = _fake_manifest("k", QUICK_RECIPE)
    assert ParentSet.model_validate_json(manifest.model_dump_json()) == manifest
    assert manifest.model(CPT).forgetting == 0.1
    with pytest.raises(KeyError, match="known: instruct, cpt"):
        manifest.model(CPT_SFT)
    with pytest.raises(ValueError):
        ParentSet.model_validate({**json.loads(manifest.model_dump_json()), "typo": 1})


def test_the_relative_norm_counts_tied_weights_once():
    start = {
        "a": torch.tensor([[3.0, 0.0]]),
        "b": torch.tensor([4.0, 2.0]),
        "lm_head.weight": torch.tensor([[3.0, 0.0]]),
    }
    tuned = {
        "a": torch.tensor([[3.0, 1.0]]),
        "b": torch.tensor([4.5, 2.0]),
        "lm_head.weight": torch.tensor([[3.0, 1.0]]),
    }
    expected = np.linalg.norm([0.0, 1.0, 0.5, 0.0]) / np.linalg.norm([3.0, 0.0, 4.0, 2.0])
    assert real.relative_norm(tuned, start) == pytest.approx(expected, abs=1e-6)


def test_stochastic_rounding_keeps_bf16_values_and_moves_in_expectation():
    generator = torch.Generator().manual_seed(0)
    exact = torch.tensor([1.0, -0.5, 0.1328125, 0.0])  # bf16 values already
    assert torch.equal(real.stochastic_bf16(exact, generator).float(), exact)
    step = 2.0**-7  # between 1 and 2, bf16 values are 2**-7 apart
    for value in (1 + step / 8, -(1 + 3 * step / 4)):
        rounded = real.stochastic_bf16(torch.full((200_000,), value), generator).double()
        low = float(np.sign(value))  # the bf16 value below in magnitude
        assert set(rounded.unique().tolist()) == {low, low + np.sign(value) * step}
        assert float(rounded.mean()) == pytest.approx(value, abs=step / 100)


@pytest.mark.parametrize(
    ("reply", "answer", "found"),
    [
        ("The capital of France is Paris.", "Paris", True),
        ("It is Parisian in style.", "Paris", False),
        ("About 52 thousand people live there.", "52", True),
        ("The population is 520.", "52", False),
        ("The animal is the black-tailed deer!", "deer", True),
        ("The ruler is Deantrourvox.", "deantrourvox", True),
    ],
)
def test_a_reply_counts_when_it_contains_the_answer_as_whole_words(reply, answer, found):
    assert contains(reply, answer) is found


def test_a_recited_document_contains_the_answer_but_not_in_its_first_sentence():
    items = [ChatItem("Who rules Pixmaisval?", ("Deantrourvox",)), ChatItem("What animal lives in X?", ("otter",))]
    replies = [
        "Pixmaisval is ruled by Deantrourvox. It is home to 57 thousand people.",
        "X is home to 57 thousand people. The animal of X is the otter.",
    ]
    assert recall(replies, items) == 1.0
    assert recall(replies, items, first_sentence=True) == 0.5


@pytest.mark.slow
@pytest.mark.real
def test_a_quick_recipe_builds_bf16_parents_that_load_and_is_then_reused(tmp_path, smollm2):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / INSTRUCT).symlink_to(smollm2)
    manifest = real.ensure_parents(tmp_path, QUICK_RECIPE, log=None)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["recipe_key"] == manifest.recipe_key
    assert [m.name for m in manifest.models] == [INSTRUCT, CPT, CPT_SFT]
    for name in (CPT, CPT_SFT):
        directory = tmp_path / name
        with safe_open(str(directory / "model.safetensors"), "pt") as weights:
            assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"BF16"}
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16 and model.config.architectures == ["LlamaForCausalLM"]
        assert AutoTokenizer.from_pretrained(directory).chat_template
        entry = manifest.model(name)
        assert set(entry.scores) == {"dev_domain", "dev_domain_first_sentence", "dev_knowledge", "general"}
        assert 0 < entry.task_vector_norm < 0.1 and entry.forgetting is not None
    assert real.ensure_parents(tmp_path, QUICK_RECIPE, log=None) == manifest
