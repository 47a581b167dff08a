"""Any OpenAI-compatible completions endpoint (`vllm serve`, `mergescope serve`, a hosted API).

A remote server cannot have weights swapped into it: this backend scores whatever the endpoint serves.
So that a sweep never stores one model's scores under another's name, `load(model_dir)` asks the server
which model it serves; vLLM's server reports the served directory as the model's `root`, and a root that
is not `model_dir` is an error. A server that reports no root is trusted with a warning.

Scoring goes through lm-eval's `local-completions` model (it supports loglikelihood through prompt
logprobs; `local-chat-completions` does not). The endpoint and model come from the options or from
OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1) and MERGESCOPE_OPENAI_MODEL (default: the served model).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mergescope.errors import ConfigError, PrerequisiteError
from mergescope.serving.chat import answer_prompt_ids
from mergescope.serving.options import OpenAIOptions

log = logging.getLogger(__name__)


class OpenAIBackend:
    """Scores the model an OpenAI-compatible endpoint serves, through lm-eval's local-completions."""

    name = "openai"
    batched = True

    def __init__(self, options: OpenAIOptions = OpenAIOptions()):
        base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        self.base_url = base_url.rstrip("/")
        self.model = options.model or os.environ.get("MERGESCOPE_OPENAI_MODEL")
        self.max_gen_toks = options.max_gen_toks
        self.timeout = options.timeout
        self.batch_size = options.batch_size
        self.tokenizer: Any = None  # the served model's, once loaded

    def served_models(self) -> list[dict]:
        """The endpoint's /models entries (id, and root where the server reports it)."""
        return self._request("models")["data"]

    def load(self, model_dir: Path):
        from lm_eval.models.openai_completions import LocalCompletionsAPI
        from transformers import AutoTokenizer

        served = self._served_model(Path(model_dir).resolve())
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        # Tokenized requests with the model's own tokenizer, so loglikelihood splits context/continuation
        # exactly as the in-process backends do.
        return LocalCompletionsAPI(
            base_url=f"{self.base_url}/completions",
            model=served,
            tokenizer=str(model_dir),
            tokenizer_backend="huggingface",
            max_gen_toks=self.max_gen_toks,
            max_length=self._max_length(served),
            batch_size=self.batch_size,
            timeout=int(self.timeout),
            add_bos_token=_adds_bos(self.tokenizer),
        )

    def _served_model(self, model_dir: Path) -> str:
        entries = {entry["id"]: entry for entry in self.served_models()}
        name = self.model or next(iter(entries), None)
        if name is None or name not in entries:
            raise ConfigError(f"{self.base_url} does not serve {name!r}", hint=f"it serves: {', '.join(entries)}")
        root = entries[name].get("root")
        if root is None:
            log.warning("%s does not say which weights it serves; scoring it as %s", self.base_url, model_dir)
        elif Path(root).resolve() != model_dir:
            raise ConfigError(
                f"{self.base_url} serves {root}, not {model_dir}: the openai backend cannot swap weights on a server",
                hint="use --backend vllm for sweeps, or `mergescope serve` each model and score it alone",
            )
        self.model = name
        return name

    def _max_length(self, name: str) -> int:
        entry = next(e for e in self.served_models() if e["id"] == name)
        return int(entry.get("max_model_len") or 2048)

    def generate(self, prompts: list[str], max_tokens: int, temperature: float = 0.0) -> list[str]:
        model = self.model or self.served_models()[0]["id"]
        # token ids, so that the server adds no special tokens the chat template wrote already
        prompt = answer_prompt_ids(self.tokenizer, prompts) if self.tokenizer is not None else prompts
        reply = self._request(
            "completions", {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
        )
        return [choice["text"] for choice in sorted(reply["choices"], key=lambda c: c["index"])]

    def _request(self, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.base_url}/{path}", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError) as error:
            raise PrerequisiteError(
                f"cannot reach the OpenAI-compatible endpoint {self.base_url}: {error}",
                hint="start one with `mergescope serve MODEL`, set OPENAI_BASE_URL, or use --backend hf",
            ) from None

    def close(self) -> None:
        """Nothing to release: the server belongs to whoever started it."""


def _adds_bos(tokenizer) -> bool:
    """Whether the model's tokenizer starts a text with BOS (lm-eval's hf model then does too; API models not)."""
    return tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
