"""The in-process merges (in memory and to disk) equal mergekit's own merge, tensor for tensor; directories load.

Tolerance: none. Both paths run mergekit's planner and kernels in mergekit's own schedule, so every tensor
must be bitwise equal (torch.equal) to `run_merge` / `mergekit-yaml` output, seeded DARE/DELLA included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.merging.candidates import export_candidates, validate_with_mergekit
from mergescope.merging.merge import is_merged, merge_in_memory, merge_to_disk, merged_dir, write_merge
from mergescope.merging.spec import SWEEPS_DIR, load_sweep
from mergescope.models.parents import resolve_parents

MERGEKIT_YAML = Path(sys.executable).with_name("mergekit-yaml")


@pytest.fixture(scope="module")
def parents(zoo):
    return resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))


def candidates(spec: str, parents):
    from mergescope.merging.candidates import expand

    return expand(load_sweep(SWEEPS_DIR / spec), parents)


def weights_of(directory: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def assert_bitwise_equal(merged: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert sorted(merged) == sorted(reference)
    for name, tensor in reference.items():
        assert merged[name].dtype == tensor.dtype, name
        assert torch.equal(merged[name], tensor), name


def reference_merge(candidate, out: Path) -> dict[str, torch.Tensor]:
    """mergekit's own complete merge (`run_merge`, as `mergekit-yaml` calls it) of the candidate."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    run_merge(validate_with_mergekit(candidate), str(out), MergeOptions(random_seed=candidate.seed, quiet=True))
    return weights_of(out)


def method_points(zoo_parents):
    return candidates("methods_compare.yaml", zoo_parents) + candidates("lu2024_slerp.yaml", zoo_parents)


# One point per method of methods_compare.yaml (every mergekit method taking 2+ models) and the lu2024 recipe.
POINTS = [b.label or b.method for b in load_sweep(SWEEPS_DIR / "methods_compare.yaml").methods] + ["lu2024"]


@pytest.mark.parametrize("point", POINTS)
def test_each_method_equals_mergekits_own_merge_bitwise(parents, tmp_path, point):
    (candidate,) = [c for c in method_points(parents) if c.label.split()[0] == point]
    reference = reference_merge(candidate, tmp_path / candidate.id)
    assert_bitwise_equal(merge_in_memory(candidate), reference)
    assert_bitwise_equal(weights_of(write_merge(candidate, tmp_path / "written")), reference)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lu2024", "dare_ties", "model_stock"])
def test_fast_merge_equals_the_mergekit_yaml_cli_on_the_exported_config(parents, tmp_path, method):
    (candidate,) = [c for c in method_points(parents) if c.label.split()[0] == method]
    (config_file,) = export_candidates([candidate], tmp_path / "configs")
    seed = ["--random-seed", str(candidate.seed)] if candidate.seed is not None else []
    subprocess.run(
        [str(MERGEKIT_YAML), str(config_file), str(tmp_path / "cli"), *seed], check=True, capture_output=True
    )
    assert_bitwise_equal(weights_of(write_merge(candidate, tmp_path / "written")), weights_of(tmp_path / "cli"))


def test_seeded_dare_and_della_reproduce_and_differ_between_seeds(zoo, parents, tmp_path):
    spec = tmp_path / "seeds.yaml"
    spec.write_text(
        "name: seeds\nmethods:\n- method: dare_ties\n  per_parent: {weight: 0.5, density: 0.5}\n"
        "  seeds: [3, 4]\n- method: della\n  per_parent: {weight: 0.5, density: 0.5}\n  seeds: [3]\n"
    )
    from mergescope.merging.candidates import expand

    dare3, dare4, della3 = expand(load_sweep(spec), parents)
    merged = {candidate.id: merge_in_memory(candidate) for candidate in (dare3, dare4, della3)}
    for candidate in (dare3, della3):
        assert_bitwise_equal(merged[candidate.id], merge_in_memory(candidate))
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(merged[dare3.id][name], merged[dare4.id][name])


def test_write_makes_a_loadable_model_directory_atomically_and_merge_to_disk_reuses_it(zoo, parents, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    candidate = candidates("lu2024_slerp.yaml", parents)[0]
    root = tmp_path / "merges"
    directory = merge_to_disk(candidate, root)
    assert directory == merged_dir(root, candidate) and is_merged(root, candidate)
    assert sorted(p.name for p in root.iterdir()) == [candidate.id]
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    loaded = {k: v for k, v in model.state_dict().items() if k in weights_of(directory)}
    assert_bitwise_equal(loaded, merge_in_memory(candidate))
    assert (
        AutoTokenizer.from_pretrained(directory).get_vocab()
        == AutoTokenizer.from_pretrained(zoo.model_path("arith")).get_vocab()
    )
    assert (directory / "mergekit_config.yml").is_file()
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    assert merge_to_disk(candidate, root) == directory
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp


def test_merge_command_turns_a_mergekit_yaml_into_a_model_directory(parents, tmp_path):
    candidate = candidates("methods_compare.yaml", parents)[0]
    (config_file,) = export_candidates([candidate], tmp_path / "configs")
    result = CliRunner().invoke(app, ["merge", str(config_file), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert_bitwise_equal(weights_of(tmp_path / "out"), merge_in_memory(candidate))


def test_a_tokenizer_merge_goes_through_run_merge_whole(parents, tmp_path):
    from mergescope.merging.merge import needs_full_merge
    from mergescope.runs.records import Candidate

    base = candidates("lu2024_slerp.yaml", parents)[0]
    config = {**base.mergekit_config, "tokenizer_source": "base"}
    candidate = Candidate(id="tokenizer", method="slerp", label="slerp tokenizer", mergekit_config=config)
    assert needs_full_merge(validate_with_mergekit(candidate))
    assert_bitwise_equal(merge_in_memory(candidate), reference_merge(candidate, tmp_path / "ref"))


def test_a_written_merge_leaves_no_parent_shard_mapped(parents, tmp_path):
    """Bounded memory: mergekit's loaders map parent shards lazily, and every mapping is closed after the merge."""
    candidate = candidates("lu2024_slerp.yaml", parents)[0]
    write_merge(candidate, tmp_path / "merged")
    parent_dirs = [str(model.path.resolve()) for model in (*parents.parents, parents.base)]
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if any(d in line for d in parent_dirs)]
    assert mapped == []
