"""What a model directory's safetensors files hold, read without loading the tensors."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open


def stored_dtypes(directory: Path) -> set[str]:
    """The dtypes (safetensors' names: "BF16", "F32", ...) of every tensor in `directory`'s *.safetensors files."""
    dtypes = set()
    for file in Path(directory).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as weights:
            dtypes |= {weights.get_slice(name).get_dtype() for name in weights.keys()}
    return dtypes
