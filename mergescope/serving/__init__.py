"""Serving: backends (hf, vllm, openai) behind one small protocol, found by name in a registry and imported lazily;
the typed options of backends and executors (options.py); `mergescope serve` (server.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mergescope.serving.options import EngineOptions, HFOptions, OpenAIOptions, Plugin, Registry

if TYPE_CHECKING:
    from lm_eval.api.model import LM


class Backend(Protocol):
    """Serves one model at a time to lm-eval and to answer generation."""

    name: str
    tokenizer: Any  # the transformers tokenizer of the model loaded last (None before the first load)
    # Whether `generate` computes its prompts together (an engine or server batch), rather than one by one:
    # progress is then shown per call, not per prompt. A backend without the attribute counts as unbatched.
    batched: bool

    def load(self, model_dir: Path) -> LM:
        """An lm-eval model serving the weights in `model_dir` (replacing whatever was served)."""

    def generate(self, prompts: list[str], max_tokens: int, temperature: float = 0.0) -> list[str]:
        """Completions of `prompts` by the model loaded last, each asked through its chat template where it has one."""

    def close(self) -> None:
        """Release the engine and its memory."""


# name -> "module:factory" and its options record; the factory takes one record and returns a Backend.
BACKENDS = Registry(
    "backend",
    {
        "hf": Plugin("mergescope.serving.hf:HFBackend", HFOptions),
        "vllm": Plugin("mergescope.serving.vllm:VLLMBackend", EngineOptions),
        "openai": Plugin("mergescope.serving.openai:OpenAIBackend", OpenAIOptions),
    },
)


def register_backend(name: str, target: str, options: type) -> None:
    """Make a backend available under `name`: `target` is "module:factory", imported on first use, and
    `options` the frozen dataclass its factory takes."""
    BACKENDS[name] = Plugin(target, options)


def default_backend() -> str:
    """vLLM on a GPU machine where it is installed and registered, else in-process transformers.

    On CPU-only machines hf stays the default: there vLLM scores a small model no faster than transformers,
    so its engine start (17-35 s) is never repaid (numbers: benchmarks/vllm_bench.py and the README).
    """
    if "vllm" in BACKENDS and importlib.util.find_spec("vllm") is not None and _has_gpu():
        return "vllm"
    return "hf"


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def create_backend(name: str, options: Any | None = None, **values) -> Backend:
    """A new backend of the registered `name`, given its options record or keyword options checked into one."""
    options = BACKENDS.configured(name, options, values)
    try:
        factory = BACKENDS.plugin(name).factory()
    except ImportError as error:
        from mergescope.errors import PrerequisiteError

        others = " or ".join(sorted(set(BACKENDS) - {name}))
        raise PrerequisiteError(
            f"the {name} backend cannot be imported: {error}",
            hint=f"install what it needs (`make install`), or use --backend {others}",
        ) from None
    return factory(options)
