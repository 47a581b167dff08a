"""Memory and disk checks made before a sweep merges anything, from the parents' safetensors headers.

Estimates, not measurements: a merged model has the parents' tensor shapes in the spec's dtype. A merge
(merge.py) reads its inputs tensor by tensor and writes shard by shard, so it holds the interpreter and its
libraries, one output shard, and the inputs and kernel temporaries of one output tensor; the backend holds the
model it serves, and while the next model loads, briefly two. benchmarks/merge_bench.py sets these against
measured peaks.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

from mergescope.errors import ConfigError, MergescopeError
from mergescope.runs.records import ModelRef, ParentSet

# Bytes per element of the dtypes safetensors headers name and mergekit writes.
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
}
# The interpreter with torch, transformers, mergekit and mergescope imported, before any weights: 0.60 GiB
# measured here (benchmarks/merge_bench.py reports it beside the merge's peak).
RUNTIME_BYTES = 650 * 10**6
# Temporaries of a merge kernel beside its inputs, in units of the output tensor (SLERP: normalised copies and the
# result; TIES/DARE: masks and the stacked task vectors are of the same order).
KERNEL_COPIES = 3
UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "K": 2**10,
    "KIB": 2**10,
    "M": 2**20,
    "MIB": 2**20,
    "G": 2**30,
    "GIB": 2**30,
    "T": 2**40,
    "TIB": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes in a size such as "8GB" (10^9), "8GiB" or "8G" (2^30), "512MB" or "1000000"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    if match is None or match.group(2).upper() not in UNITS:
        raise ConfigError(f"--max-memory {text!r} is not a size", hint="write it like 8GB, 16GiB or 512MB")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def human(n_bytes: int) -> str:
    """A byte count as "1.23 GB" (decimal units, as disk tools print them)."""
    exponent = min(max(len(str(int(n_bytes))) - 1, 0) // 3, 4)
    if exponent == 0:
        return f"{int(n_bytes)} B"
    return f"{n_bytes / 1000**exponent:.2f} {('B', 'KB', 'MB', 'GB', 'TB')[exponent]}"


def tensor_bytes(model: ModelRef, dtype: str | None = None) -> list[int]:
    """The bytes of each tensor of `model`, in `dtype` if given, else as stored (read from safetensors headers)."""
    from mergescope.models.parents import tensor_layout

    return [math.prod(shape) * DTYPE_BYTES.get(dtype or stored, 4) for shape, stored in tensor_layout(model).values()]


def model_bytes(model: ModelRef, dtype: str | None = None) -> int:
    """The weights of `model` in bytes, in `dtype` if given, else as stored."""
    return sum(tensor_bytes(model, dtype))


def merge_stage_bytes(parents: ParentSet, dtype: str) -> int:
    """Peak memory of merging one candidate to disk: runtime, one output shard, one output tensor's working set."""
    from mergescope.merging.merge import OUT_SHARD_BYTES

    first = parents.parents[0]
    inputs = len(parents.parents) + (1 if parents.base else 0)
    out_shard = min(OUT_SHARD_BYTES, model_bytes(first, dtype))
    return RUNTIME_BYTES + out_shard + (inputs + KERNEL_COPIES) * max(tensor_bytes(first, dtype), default=0)


def merge_memory_bytes(parents: ParentSet, dtype: str) -> int:
    """Peak memory of a sweep's worker: the served model, and beside it the next merge or the next model loading
    (every subject is merged and served in the run's dtype)."""
    served = model_bytes(parents.parents[0], dtype)
    return served + max(merge_stage_bytes(parents, dtype), RUNTIME_BYTES + served)


def check_memory(parents: ParentSet, dtype: str, max_memory: str | None) -> None:
    """Refuse (ConfigError) a sweep whose estimated peak memory is over `max_memory`; no limit when None."""
    if max_memory is None:
        return
    limit, needed = parse_size(max_memory), merge_memory_bytes(parents, dtype)
    if needed > limit:
        raise ConfigError(
            f"merging these parents needs about {human(needed)} of memory, over --max-memory "
            f"{max_memory} ({human(limit)})",
            hint="raise --max-memory, or merge smaller models or in a lower dtype",
        )


def check_disk(directory: Path, needed: int, what: str) -> None:
    """Refuse (MergescopeError) when the file system of `directory` has less than `needed` bytes free."""
    directory = Path(directory)
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise MergescopeError(
            f"not enough disk space for {what} in {directory}: needs {human(needed)} "
            f"({needed} bytes), {human(free)} ({free} bytes) free",
            hint="free disk space or choose another --out",
        )


def merged_output_bytes(parents: ParentSet, dtype: str) -> int:
    """The estimated size of one merged model directory: the parents' tensors in `dtype`, and the first
    parent's other files (config, tokenizer), which the merge copies."""
    from mergescope.models.parents import weight_files

    first = parents.parents[0]
    weights = set(weight_files(first.path))
    side_files = sum(f.stat().st_size for f in first.path.iterdir() if f.is_file() and f not in weights)
    return model_bytes(first, dtype) + side_files
