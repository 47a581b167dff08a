"""In-process Hugging Face transformers: the simple backend that always works on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mergescope.serving.chat import answer_prompt_ids
from mergescope.serving.options import HFOptions


class HFBackend:
    """Loads each model with transformers and wraps it in lm-eval's HFLM."""

    name = "hf"
    batched = False  # generate runs one prompt at a time

    def __init__(self, options: HFOptions = HFOptions()):
        self.batch_size = options.batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if options.device == "auto" else options.device
        self.dtype = getattr(torch, options.dtype)
        # lm-eval's evaluate renders chats with the tokenizer's default template whatever name it is given;
        # a named one reaches the tokenizer only through HFLM's chat_template_args
        self.chat_template_args = {"chat_template": options.chat_template} if options.chat_template else None
        self.model: Any = None  # transformers' model and tokenizer, once `load` has run
        self.tokenizer: Any = None

    def load(self, model_dir: Path):
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # safetensors only and no remote code: model files are untrusted input.
        self.model = (
            AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=self.dtype, use_safetensors=True, trust_remote_code=False
            )
            .to(self.device)
            .eval()
        )  # HFLM serves a model it is handed on the model's own device
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        return HFLM(
            pretrained=self.model,
            tokenizer=self.tokenizer,
            device=self.device,
            batch_size=self.batch_size,
            chat_template_args=self.chat_template_args,
        )

    @torch.no_grad()
    def generate(self, prompts: list[str], max_tokens: int, temperature: float = 0.0) -> list[str]:
        outputs = []
        for prompt_ids in answer_prompt_ids(self.tokenizer, prompts):
            ids = torch.tensor([prompt_ids], device=self.device)
            sample = temperature > 0
            generated = self.model.generate(
                ids,
                max_new_tokens=max_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
            outputs.append(self.tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True))
        return outputs

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
