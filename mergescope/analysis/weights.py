"""Tensors of safetensors model directories, read one at a time across shards without loading a model.

Analyses that compare models weight by weight (kinship, SLERP diagnostics) read through `WeightIndex`,
so their memory holds one tensor per model, whatever the model's size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from mergescope.errors import ConfigError

INDEX_NAME = "model.safetensors.index.json"
# Largest piece of a tensor read at once (elements); bounds memory even for a huge embedding matrix.
BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class WeightIndex:
    """Which file holds each tensor of one model, and each tensor's shape, read from the headers alone."""

    model: str
    directory: Path
    files: Mapping[str, Path]
    shapes: Mapping[str, tuple[int, ...]]

    def n_params(self, name: str) -> int:
        """Returns the number of elements of tensor `name`."""
        return int(torch.Size(self.shapes[name]).numel())

    def row_blocks(self, name: str) -> list[slice | None]:
        """Returns consecutive row ranges (first axis) of tensor `name`, each of at most BLOCK_ELEMENTS
        elements or one row; [None] (the whole tensor) for a scalar."""
        shape = self.shapes[name]
        if not shape:
            return [None]
        rows_per_block = max(1, BLOCK_ELEMENTS // max(1, int(torch.Size(shape[1:]).numel())))
        return [slice(start, min(start + rows_per_block, shape[0])) for start in range(0, shape[0], rows_per_block)]

    def read(self, name: str, dtype: torch.dtype | None = torch.float64, rows: slice | None = None) -> torch.Tensor:
        """Returns tensor `name` (only `rows` of its first axis, if given) as `dtype` (None: as stored);
        a ConfigError names the file if it cannot be read."""
        file = self.files[name]
        # The file is mapped only while one piece is copied out, so its pages never pile up in memory.
        try:
            with safe_open(str(file), framework="pt") as handle:
                tensor = handle.get_tensor(name) if rows is None else handle.get_slice(name)[rows]
                return tensor if dtype is None else tensor.to(dtype)
        except OSError as error:
            raise ConfigError(
                f"{file}: cannot read tensor {name} of {self.model} ({error})", hint="check that the file is complete"
            ) from None
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise ConfigError(
                f"{file}: corrupt safetensors file, tensor {name} of {self.model} ({error})",
                hint="re-save or re-download the model",
            ) from None


def weight_index(directory: str | Path, model: str | None = None) -> WeightIndex:
    """Returns the tensor index of a model directory, from model.safetensors.index.json if present."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory", hint="give the path of a model directory")
    weight_map = _read_shard_index(directory)
    shards = sorted(set(weight_map.values())) if weight_map else sorted(directory.glob("*.safetensors"))
    missing = [file for file in shards if not file.is_file()]
    if missing:
        raise ConfigError(
            f"{missing[0]}: shard listed in {INDEX_NAME} is missing",
            hint="copy the missing shard, or re-download the model",
        )
    if not shards:
        raise ConfigError(f"{directory}: no *.safetensors weights", hint="give a directory of safetensors weights")
    headers = {file: _header_shapes(file) for file in shards}
    weight_map = weight_map or {name: file for file, shapes in headers.items() for name in shapes}
    for name, file in weight_map.items():
        if name not in headers[file]:
            raise ConfigError(
                f"{file}: tensor {name} is listed in {INDEX_NAME} but missing from the file",
                hint="the index and the shards disagree; re-save the model",
            )
    shapes = {name: headers[file][name] for name, file in weight_map.items()}
    return WeightIndex(model=model or directory.name, directory=directory, files=weight_map, shapes=shapes)


def _read_shard_index(directory: Path) -> dict[str, Path] | None:
    """Returns tensor name -> shard file from the directory's shard index, or None without one."""
    index_file = directory / INDEX_NAME
    if not index_file.is_file():
        return None
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
        return {str(name): (directory / shard).resolve() for name, shard in sorted(weight_map.items())}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"{index_file}: unreadable shard index ({error})", hint="re-save the model") from None


def _header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as error:  # safetensors checks the header and that the data covers it exactly
        raise ConfigError(f"{file}: corrupt safetensors file ({error})", hint="re-save or re-download it") from None


def check_same_tensors(indexes: Sequence[WeightIndex]) -> None:
    """Raises ConfigError naming the first tensor whose name or shape differs between the models."""
    reference = indexes[0]
    for other in indexes[1:]:
        for name in sorted(set(reference.shapes) ^ set(other.shapes)):
            missing_from = other.model if name in reference.shapes else reference.model
            raise ConfigError(
                f"tensor {name} is missing from {missing_from}; the models' tensors differ",
                hint="compare models of one architecture fine-tuned from one base",
            )
        for name in sorted(reference.shapes):
            if reference.shapes[name] != other.shapes[name]:
                raise ConfigError(
                    f"tensor {name} has shape {list(reference.shapes[name])} in {reference.model} "
                    f"but {list(other.shapes[name])} in {other.model}",
                    hint="compare models of one architecture fine-tuned from one base",
                )
