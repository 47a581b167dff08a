"""The dtype a run merges and serves in (merging/dtype.py): --dtype, else the spec's, else the parents' own.

bf16 parents are zoo models cast to bfloat16 in a tmp dir; the zoo itself is float32, so its runs are unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.weights import stored_dtypes
from mergescope.merging.dtype import DtypeChoice, choose_dtype, parents_dtype
from mergescope.models.parents import resolve_parents
from mergescope.runs.records import ModelRef, ParentSet

ONE_MERGE = "name: one_merge\n{dtype}methods:\n  - method: linear\n    per_parent: {{weight: 0.5}}\n"


def cast_copy(source: Path, target: Path, dtype: torch.dtype, only: str | None = None) -> Path:
    """A copy of model directory `source` whose floating-point tensors (or only those named `only`) are `dtype`."""
    shutil.copytree(source, target)
    for file in target.glob("*.safetensors"):
        tensors = load_file(str(file))
        save_file(
            {
                name: tensor.to(dtype) if tensor.is_floating_point() and only in (None, name) else tensor
                for name, tensor in tensors.items()
            },
            str(file),
            metadata={"format": "pt"},
        )
    return target


@pytest.fixture
def bf16_zoo(zoo, tmp_path):
    """arith, facts and base cast to bfloat16."""
    return {
        name: cast_copy(zoo.model_path(name), tmp_path / f"{name}-bf16", torch.bfloat16)
        for name in ("arith", "facts", "base")
    }


def spec_file(tmp_path: Path, dtype: str | None = None) -> Path:
    path = tmp_path / f"one_merge_{dtype}.yaml"
    path.write_text(ONE_MERGE.format(dtype=f"dtype: {dtype}\n" if dtype else ""))
    return path


def test_the_parents_dtype_is_the_one_their_tensors_share(zoo, bf16_zoo, tmp_path):
    as_stored = resolve_parents([bf16_zoo["arith"], bf16_zoo["facts"]], bf16_zoo["base"])
    assert parents_dtype(as_stored) == "bfloat16"
    assert parents_dtype(resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")])) == "float32"
    name = next(iter(load_file(str(next(zoo.model_path("arith").glob("*.safetensors"))))))
    mixed = cast_copy(zoo.model_path("arith"), tmp_path / "mixed", torch.bfloat16, only=name)
    one_mixed = ParentSet(parents=(ModelRef(name="mixed", path=mixed),), base=None, architecture="LlamaForCausalLM")
    assert parents_dtype(one_mixed) == "float32"  # one bf16 tensor among float32 ones


def test_the_flag_wins_over_the_spec_and_the_spec_over_the_parents(bf16_zoo):
    parents = resolve_parents([bf16_zoo["arith"], bf16_zoo["facts"]])
    assert choose_dtype("float16", "float32", parents) == DtypeChoice("float16", "flag")
    assert choose_dtype(None, "float32", parents) == DtypeChoice("float32", "spec")
    assert choose_dtype(None, None, parents) == DtypeChoice("bfloat16", "parents")
    assert DtypeChoice("bfloat16", "parents").describe() == "bfloat16 (the parents')"


@pytest.mark.parametrize(
    "spec_dtype, flag, expected",
    [
        (None, None, DtypeChoice("bfloat16", "parents")),
        ("float32", None, DtypeChoice("float32", "spec")),
        (None, "float32", DtypeChoice("float32", "flag")),
    ],
)
def test_the_plan_merges_and_serves_in_the_chosen_dtype(bf16_zoo, zoo, tmp_path, spec_dtype, flag, expected):
    from mergescope.recipes.sweep import SweepSettings, plan_sweep

    plan = plan_sweep(
        SweepSettings(
            parents=[str(bf16_zoo["arith"]), str(bf16_zoo["facts"])],
            sweep=spec_file(tmp_path, spec_dtype),
            dtype=flag,
            tasks=["zoo_arith"],
            task_paths=[zoo.task_yaml_dir()],
            backend="hf",
            out=tmp_path / "run",
        )
    )
    assert plan.dtype == expected and plan.spec.dtype == expected.dtype
    assert [c.mergekit_config["dtype"] for c in plan.candidates] == [expected.dtype]
    assert plan.backend_options.dtype == expected.dtype


def test_zoo_parents_still_merge_in_float32(zoo, tmp_path):
    from mergescope.recipes.sweep import SweepSettings, plan_sweep

    plan = plan_sweep(
        SweepSettings(
            parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
            base=str(zoo.model_path("base")),
            backend="hf",
            out=tmp_path / "run",
        )
    )
    assert plan.dtype == DtypeChoice("float32", "parents")
    assert {c.mergekit_config["dtype"] for c in plan.candidates} == {"float32"}


def test_a_sweep_of_bf16_parents_stores_a_bf16_candidate_and_records_why(bf16_zoo, zoo, tmp_path):
    from mergescope.recipes.sweep import SweepSettings, sweep
    from mergescope.runs.directory import merges_dir, read_run_meta

    run = tmp_path / "run"
    sweep(
        SweepSettings(
            parents=[str(bf16_zoo["arith"]), str(bf16_zoo["facts"])],
            sweep=spec_file(tmp_path),
            tasks=["zoo_arith"],
            task_paths=[zoo.task_yaml_dir()],
            limit=2,
            backend="hf",
            out=run,
            progress=False,
        )
    )
    (merged,) = [folder for folder in merges_dir(run).iterdir() if folder.is_dir()]
    assert stored_dtypes(merged) == {"BF16"}
    assert stored_dtypes(merged) == stored_dtypes(bf16_zoo["arith"])
    meta = read_run_meta(run)
    assert (meta.served_dtype(), meta.dtype_source) == ("bfloat16", "parents")
