"""vLLM serving: one live engine per sweep, each candidate's weights reloaded into it in place.

vLLM's cost is its engine start (35 s for a zoo model on CPU), so the engine is started once for the
sweep's architecture and every later model is swapped in with vLLM's public weight reload:
`LLM.collective_rpc("reload_weights", kwargs={"weights_path": DIR})` (0.03-0.05 s on the zoo), then
`LLM.reset_prefix_cache()` so no cached KV of the old weights is reused. A model whose config or tokenizer
differs from the engine's gets a fresh engine instead (logged), and a dead engine is restarted on the
current weights and the request asked again, so a sweep never stops because the engine died.

Handing tensors over without writing a directory: `reload_weights` also takes `weights_iterator`, but with
the default multiprocess engine `collective_rpc` sends its arguments through vLLM's msgpack channel, which
decodes untyped arguments, so tensors arrive as raw (dtype, shape, buffer) lists and generators cannot be
sent at all (vLLM's docstring: "use this API only to pass control messages"). Only an in-process engine
(VLLM_ENABLE_V1_MULTIPROCESSING=0) would receive Python tensors. The sweep writes every merge to disk
anyway (it is the merge cache), so reloading from that directory costs no extra write; for merges made
in memory, write them to a RAM-backed directory (/dev/shm) and reload from there (benchmarks/vllm_bench.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from lm_eval.api.registry import register_model

from mergescope.errors import PrerequisiteError
from mergescope.serving import BACKENDS
from mergescope.serving.chat import answer_prompt_ids
from mergescope.serving.live_lm import LiveEngineLM
from mergescope.serving.options import EngineOptions

log = logging.getLogger(__name__)

# config.json keys that name or describe a checkpoint without changing the engine it needs.
CHECKPOINT_ONLY_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
USE_INSTEAD = "use --backend hf (in-process transformers) instead"


def engine_signature(model_dir: Path) -> str:
    """A hash of what an engine is built from: the config (less checkpoint-only keys) and the tokenizer."""
    config = {k: v for k, v in _read_config(model_dir).items() if k not in CHECKPOINT_ONLY_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in TOKENIZER_FILES:
        if (Path(model_dir) / name).is_file():
            digest.update(name.encode() + (Path(model_dir) / name).read_bytes())
    return digest.hexdigest()


def _read_config(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


class VLLMBackend:
    """Serves models through one live vLLM engine, swapping weights in rather than restarting it."""

    name = "vllm"
    batched = True

    def __init__(self, options: EngineOptions = EngineOptions()):
        self.options = options
        self.llm: Any = None  # vllm.LLM and its tokenizer, once `load` has started the engine
        self.tokenizer: Any = None
        self.model_dir: Path | None = None
        self.signature: str | None = None
        self.engine_starts = 0
        self.swaps = 0

    def load(self, model_dir: Path) -> LiveEngineLM:
        """An lm-eval model over the live engine, now serving the weights in `model_dir`."""
        self.serve(model_dir)
        return LiveEngineLM(backend=self)

    def serve(self, model_dir: Path) -> None:
        """Put `model_dir`'s weights into the engine: a swap when the engine fits it, else a (re)start."""
        model_dir = Path(model_dir).resolve()
        signature = engine_signature(model_dir)
        if self.llm is not None and signature == self.signature:
            self._swap(model_dir)
        else:
            if self.llm is not None:
                log.warning("%s has another architecture or tokenizer than the engine: restarting it", model_dir)
            self._start(model_dir)
        self.signature = signature

    def _swap(self, model_dir: Path) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model_dir)})
            self.llm.reset_prefix_cache()
        except EngineDeadError:
            log.warning("the vLLM engine died; restarting it on %s", model_dir)
            self._start(model_dir)
            return
        self.model_dir = model_dir
        self.swaps += 1

    def _start(self, model_dir: Path) -> None:
        vllm = _import_vllm()
        from transformers import AutoTokenizer

        self.close()
        # The CPU build sizes its KV cache from this variable (GiB); GPU builds ignore it.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options.kv_cache_gib))
        try:
            self.llm = vllm.LLM(**self.options.engine_kwargs(model_dir))
        except Exception as error:  # vLLM raises many types for unsupported models, OOM and bad options
            message = " ".join(str(error).split())[:300] or type(error).__name__
            raise PrerequisiteError(
                f"vLLM could not start an engine for {model_dir}: {message}",
                hint=f"{USE_INSTEAD}, or lower max_model_len / VLLM_CPU_KVCACHE_SPACE",
            ) from None
        # The same tokenizer the hf backend uses, so that both backends see identical token ids.
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        self.model_dir = model_dir
        self.engine_starts += 1

    def run(self, prompts: list[list[int]], sampling_params) -> list:
        """vLLM's outputs for token-id prompts; a dead engine is restarted on the current weights once."""
        from vllm import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        try:
            return self.llm.generate(requests, sampling_params, use_tqdm=False)
        except EngineDeadError:
            if self.model_dir is None:
                raise
            log.warning("the vLLM engine died; restarting it on %s and asking again", self.model_dir)
            self._start(self.model_dir)
            return self.llm.generate(requests, sampling_params, use_tqdm=False)

    def generate(self, prompts: list[str], max_tokens: int, temperature: float = 0.0) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=self.options.seed)
        return [output.outputs[0].text for output in self.run(answer_prompt_ids(self.tokenizer, prompts), params)]

    @property
    def max_model_len(self) -> int:
        return self.llm.llm_engine.model_config.max_model_len

    def close(self) -> None:
        if self.llm is not None:
            # LLM has no public close; shutting its engine core down ends the engine processes now.
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None


@register_model("mergescope-vllm")
class StartedEngineLM(LiveEngineLM):
    """lm-eval's own CLI on one model: `lm_eval --model mergescope-vllm --model_args pretrained=DIR[,dtype=...]`."""

    # lm-eval hands every model batch_size, max_batch_size and device: the engine batches and places itself.
    def __init__(self, pretrained: str, batch_size=None, max_batch_size=None, device=None, **engine_options):
        backend = VLLMBackend(BACKENDS.options("vllm", engine_options))
        backend.serve(Path(pretrained))
        super().__init__(backend)


def _import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise PrerequisiteError(
            f"the vllm backend needs vLLM, which cannot be imported: {error}",
            hint=f"{USE_INSTEAD}, or `make install` (SERVE_EXTRA=vllm on GPU machines)",
        ) from None
    return vllm
