"""Memory and disk checks before merging: sizes read from safetensors headers, limits parsed from the CLI."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file

from mergescope.errors import ConfigError, MergescopeError
from mergescope.models.parents import resolve_parents, weight_files
from mergescope.models.resources import (
    KERNEL_COPIES,
    RUNTIME_BYTES,
    check_disk,
    check_memory,
    merge_memory_bytes,
    merged_output_bytes,
    model_bytes,
    parse_size,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8GB", 8 * 10**9),
        ("8GiB", 8 * 2**30),
        ("8G", 8 * 2**30),
        ("512MB", 512 * 10**6),
        ("1.5gb", 15 * 10**8),
        ("1000", 1000),
    ],
)
def test_sizes_parse_in_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "8 parsecs", "-1GB", ""])
def test_a_malformed_size_is_a_config_error(text):
    with pytest.raises(ConfigError, match="is not a size"):
        parse_size(text)


@pytest.fixture(scope="module")
def parents(zoo):
    return resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))


def stored_bytes(model_dir) -> int:
    """The bytes of every tensor as loaded (independent of the header reading under test)."""
    return sum(t.numel() * t.element_size() for f in weight_files(model_dir) for t in load_file(str(f)).values())


def test_model_size_is_read_from_the_headers(parents):
    arith = parents.parents[0]
    assert model_bytes(arith) == stored_bytes(arith.path)
    assert model_bytes(arith, "bfloat16") * 2 == stored_bytes(arith.path)  # the zoo stores float32


def test_merge_memory_counts_the_served_copy_and_one_shard_and_tensor_of_the_merge_not_whole_inputs(parents):
    arith = parents.parents[0].path
    served = stored_bytes(arith)
    largest = max(t.numel() * t.element_size() for f in weight_files(arith) for t in load_file(str(f)).values())
    merging = served + (3 + KERNEL_COPIES) * largest  # the zoo's whole model is one output shard; 3 inputs
    needed = RUNTIME_BYTES + served + max(merging, served)
    assert merge_memory_bytes(parents, "float32") == needed
    check_memory(parents, "float32", None)  # no limit given: nothing to check
    check_memory(parents, "float32", str(needed))
    with pytest.raises(ConfigError, match="over --max-memory 1MB"):
        check_memory(parents, "float32", "1MB")


def test_a_merged_model_is_its_tensors_and_the_parents_side_files(parents):
    arith = parents.parents[0].path
    side = sum(f.stat().st_size for f in arith.iterdir() if f.is_file() and f.suffix != ".safetensors")
    assert merged_output_bytes(parents, "float32") == stored_bytes(arith) + side


def test_the_disk_check_names_needed_and_free_bytes(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_disk(tmp_path / "not-yet" / "merges", 1, "1 merged model")  # a missing folder is checked on its parent
    with pytest.raises(MergescopeError, match=rf"needs .* \({free + 10**12} bytes\), .* free"):
        check_disk(tmp_path, free + 10**12, "6 merged models")
