"""The dtype a run merges and serves in: `--dtype`, else the spec's `dtype`, else the parents' own.

Merging bf16 parents into a float32 child doubles its size and serves it unlike its parents; merging float32
parents into bf16 rounds them. So a spec without a `dtype` follows the parents: the dtype every floating-point
tensor of every parent (and the base) is stored in, read from the safetensors headers. Parents whose tensors mix
dtypes, or that hold no safetensors (pickled weights), are merged in float32, which holds each of them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mergescope.merging.spec import Dtype
from mergescope.runs.records import ParentSet

DtypeSource = Literal["flag", "spec", "parents"]  # what decided a run's dtype: --dtype, the spec, or the parents
FALLBACK: Dtype = "float32"
# safetensors' names of the floating-point dtypes mergescope merges and serves in
SAFETENSORS_DTYPES: dict[str, Dtype] = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
INTEGER_PREFIXES = ("I", "U", "BOOL")  # integer and boolean tensors (buffers, masks) keep their own dtype


@dataclass(frozen=True)
class DtypeChoice:
    """A run's dtype and what decided it."""

    dtype: Dtype
    source: DtypeSource

    def describe(self) -> str:
        """E.g. "bfloat16 (the parents')"."""
        why = {"flag": "--dtype", "spec": "the sweep spec's dtype", "parents": "the parents'"}[self.source]
        return f"{self.dtype} ({why})"


def choose_dtype(flag: str | None, spec_dtype: str | None, parents: ParentSet) -> DtypeChoice:
    """--dtype where given, else the spec's dtype where it sets one, else the parents' dtype."""
    if flag:
        return DtypeChoice(flag, "flag")  # type: ignore[arg-type]  # checked by the backend's options
    if spec_dtype:
        return DtypeChoice(spec_dtype, "spec")  # type: ignore[arg-type]  # checked by the spec's schema
    return DtypeChoice(parents_dtype(parents), "parents")


def parents_dtype(parents: ParentSet) -> Dtype:
    """The one dtype every floating-point tensor of the parents and base is stored in; float32 otherwise."""
    from mergescope.models.parents import tensor_layout, weight_files

    stored: set[str] = set()
    for model in parents.models():
        if not weight_files(model.path):  # pickled weights: their dtype is unknown until unpickled
            return FALLBACK
        stored |= {dtype for _, dtype in tensor_layout(model).values() if not dtype.startswith(INTEGER_PREFIXES)}
    if len(stored) != 1:
        return FALLBACK
    (only,) = stored
    return SAFETENSORS_DTYPES.get(only, FALLBACK)
