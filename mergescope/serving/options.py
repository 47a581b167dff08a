"""The typed options of backends and executors, and the registries that name each one's options record.

A backend or executor takes one frozen record, never keyword options it could silently drop: a key that no
field of the record names is a ConfigError naming the key (with a did-you-mean), raised before any work.
This module imports neither torch nor lm-eval, so `mergescope serve` and the CLI read the records cheaply.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mergescope.errors import ConfigError, did_you_mean
from mergescope.merging.spec import DTYPES


@dataclass(frozen=True)
class Plugin:
    """A registered backend or executor: its "module:factory" (imported on first use) and its options record."""

    target: str
    options: type  # a frozen dataclass; the factory takes one instance of it

    def factory(self) -> Callable[[Any], Any]:
        module_name, name = self.target.split(":")
        return getattr(importlib.import_module(module_name), name)


class Registry(dict[str, Plugin]):
    """The plugins of one kind ("backend", "executor") by name."""

    def __init__(self, kind: str, plugins: Mapping[str, Plugin]):
        super().__init__(plugins)
        self.kind = kind

    def plugin(self, name: str) -> Plugin:
        """The plugin registered as `name`; a ConfigError with a did-you-mean for an unknown name."""
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}", hint=did_you_mean(name, set(self)))
        return self[name]

    def options(self, name: str, values: Mapping[str, Any]) -> Any:
        """The options record of plugin `name` holding `values`; a ConfigError names a key it has no field for."""
        record = self.plugin(name).options
        known = _field_names(record)
        for key in values:
            if key not in known:
                raise ConfigError(f"the {name} {self.kind} takes no option {key!r}", hint=self._hint(key, known))
        return record(**values)

    def configured(self, name: str, options: Any | None, values: Mapping[str, Any]) -> Any:
        """`options` (a record) as given, or the record made from keyword `values`; not both."""
        if options is None:
            return self.options(name, values)
        if values:
            raise TypeError(f"give the {name} {self.kind} an options record or keyword options, not both")
        return options

    def _hint(self, key: str, known: set[str]) -> str:
        """Which other plugin takes `key` (a flag meant for another backend), else a did-you-mean."""
        takers = sorted(name for name, plugin in self.items() if key in _field_names(plugin.options))
        if takers:
            return f"{key!r} is an option of the {' and '.join(takers)} {self.kind}: --{self.kind} {takers[0]}"
        return did_you_mean(key, known)


def _field_names(record: type) -> set[str]:
    return {field.name for field in fields(record)}


def check_dtype(backend: str, dtype: str) -> None:
    """Refuse a dtype name that no backend serves (the spec's are checked by its schema; --dtype's here)."""
    if dtype not in DTYPES:
        raise ConfigError(
            f"the {backend} backend cannot serve dtype {dtype!r}",
            hint=f"use one of {', '.join(DTYPES)} (--dtype or the spec's dtype)",
        )


@dataclass(frozen=True)
class HFOptions:
    """In-process transformers: lm-eval's batch size, the device, and the dtype the weights are served in."""

    # 64 rather than lm-eval's usual 32: on the zoo, 25% less time per model (fewer generate calls), same answers
    batch_size: int = 64
    device: str = "auto"  # "auto": the GPU where torch sees one, else the CPU
    dtype: str = "float32"  # the sweep spec's dtype; the model is loaded (and computes) in it
    chat_template: str | None = None  # --chat-template NAME: lm-eval's prompts use the tokenizer's template NAME

    def __post_init__(self):
        check_dtype("hf", self.dtype)


@dataclass(frozen=True)
class EngineOptions:
    """How the vLLM engine is sized; CPU machines read `kv_cache_gib`, GPU machines the two GPU settings."""

    dtype: str = "float32"
    max_model_len: int = 2048
    kv_cache_gib: int = 1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    seed: int = 0
    max_gen_toks: int = 256  # lm-eval's budget when a task sets none; read per request, not by the engine
    batch_size: int | None = None  # --batch-size: the most sequences the engine runs at once (None: vLLM's own)
    chat_template: str | None = None  # --chat-template NAME: lm-eval's prompts use the tokenizer's template NAME

    def __post_init__(self):
        check_dtype("vllm", self.dtype)

    def engine_kwargs(self, model_dir: Path) -> dict:
        """Keyword arguments of `vllm.LLM` for `model_dir`; model files are untrusted: no remote code."""
        config = json.loads((Path(model_dir) / "config.json").read_text())
        max_positions = config.get("max_position_embeddings", self.max_model_len)
        batch = {"max_num_seqs": self.batch_size} if self.batch_size else {}
        return dict(
            model=str(model_dir),
            dtype=self.dtype,
            max_model_len=min(self.max_model_len, max_positions),
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            seed=self.seed,
            trust_remote_code=False,
            load_format="safetensors",
            enforce_eager=True,
            **batch,
        )


@dataclass(frozen=True)
class OpenAIOptions:
    """An OpenAI-compatible endpoint (default: $OPENAI_BASE_URL) and model; generation and wait limits."""

    base_url: str | None = None
    model: str | None = None
    max_gen_toks: int = 256
    timeout: float = 300
    dtype: str = "float32"
    batch_size: int = 16  # requests per API call

    def __post_init__(self):
        check_dtype("openai", self.dtype)
        # A server's dtype was fixed when it started and its API does not report it: a spec asking for
        # another dtype than the default is refused rather than scored in whatever the server holds.
        if self.dtype != "float32":
            raise ConfigError(
                f"the openai backend cannot serve dtype {self.dtype}: the server's dtype is fixed when it starts",
                hint="use --backend hf or vllm, or start the server in that dtype and leave the dtype at float32",
            )


@dataclass(frozen=True)
class LocalOptions:
    """The local executor: whether it draws a progress bar."""

    progress: bool = True


@dataclass(frozen=True)
class RayOptions:
    """The Ray executor: the cluster (default: start a local one), its serving actors and what each reserves."""

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # a GPU request on a CPU-only cluster waits forever: 0 unless it has GPUs
    progress: bool = True
    max_attempts: int = 3
