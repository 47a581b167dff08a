"""The real model's parents as study pairs (zoo/real_study.py): chat settings, their own spec, and a domain task
that asks chat_domain's questions about the lands the parents read, and only those. No training: the manifest
is written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mergescope.errors import ConfigError
from mergescope.recipes.study import zoo_pairs
from mergescope.scoring.lmeval import SHIPPED_TASKS, resolve_tasks
from mergescope.zoo.real import MANIFEST_NAME, QUICK_RECIPE, ParentSet
from mergescope.zoo.real_study import DOMAIN_TASK, real_study_pairs

LANDS = ["Bulveaxthea", "Zirvulir"]


def write_manifest(root: Path, seed: int = 0, lands: list[str] = LANDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    manifest = ParentSet(
        recipe_key="k", recipe=QUICK_RECIPE.as_dict(), seed=seed, cpu_capability="AVX2", torch_version="2",
        data_fingerprint="f", instruct_sha256="0" * 64, split_sizes={"dev": 1, "eval": 1}, lands=lands, models=[],
        build_seconds=1.0, load_average=(0.0, 0.0),
    )  # fmt: skip
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json())
    return root


def test_the_pairs_are_scored_in_chat_with_their_own_spec(tmp_path):
    root = write_manifest(tmp_path / "smollm2")
    pairs = real_study_pairs(root)
    assert [pair.key for pair in pairs] == ["smollm2/instruct_cpt_sft", "smollm2/instruct_cpt", "smollm2/cpt_cpt_sft"]
    assert pairs[0].parents == (root / "instruct", root / "cpt_sft") and pairs[0].base is None
    assert pairs[2].base == root / "instruct"
    for pair in pairs:
        assert pair.evaluation is not None and pair.evaluation.apply_chat_template is True
        assert pair.sweep is not None
        assert pair.tasks == (DOMAIN_TASK, "chat_general")
    # task arithmetic and TIES need a base: only the pair that has one sweeps them
    specs = [pair.sweep.name for pair in pairs if pair.sweep]
    assert specs == ["real_study.yaml", "real_study.yaml", "real_study_base.yaml"]
    assert zoo_pairs(root, "real") == real_study_pairs(root, "real")  # `--zoo real=DIR` takes such a directory


def test_the_domain_task_asks_about_the_read_lands_only(tmp_path):
    root = write_manifest(tmp_path / "smollm2")
    (pair, *_) = real_study_pairs(root)
    suite = resolve_tasks([DOMAIN_TASK, f"{DOMAIN_TASK}_mc"], pair.task_paths)
    loaded = suite.task_manager().load([DOMAIN_TASK, f"{DOMAIN_TASK}_mc"])["tasks"]
    shipped = [json.loads(line) for line in (SHIPPED_TASKS / "chat_domain.jsonl").read_text().splitlines()]
    expected = [row["question"] for row in shipped if row["land"] in LANDS]
    assert 0 < len(expected) < len(shipped)
    for task in loaded.values():
        assert [doc["question"] for doc in task.eval_docs] == expected


def test_parents_of_another_seed_or_no_parents_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="seed 1 read other lands"):
        real_study_pairs(write_manifest(tmp_path / "seed1", seed=1))
    with pytest.raises(ConfigError, match="holds no finished set of parents"):
        real_study_pairs(tmp_path / "nothing")
