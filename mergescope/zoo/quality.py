"""How good a zoo model is while the zoo is built: greedy exact match, scored the way the zoo's lm-eval tasks score.

The build uses this to keep each fine-tune's best checkpoint on a dev split (items neither trained on nor in
an lm-eval task) and to refuse a zoo whose models miss their quality bars. lm-eval itself is the judge of
the finished zoo; this is the fast in-process copy of its metric (greedy generation up to a newline,
leading whitespace removed, case and punctuation ignored).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from mergescope.errors import MergescopeError
from mergescope.zoo.corpus import ChoiceItem, QAItem

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_BATCH = 128


class ZooQualityError(MergescopeError):
    """A zoo model missed its quality bar: the zoo is not written."""


def _normalised(text: str) -> str:
    return text.lower().translate(_PUNCTUATION).strip()


def greedy_answers(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], max_new_tokens: int
) -> list[str]:
    """Return each prompt's greedy continuation, cut at the first newline (left-padded batches, as lm-eval's)."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return [text.split("\n")[0] for text in greedy_continuations(model, tokenizer, encoded, max_new_tokens, _BATCH)]


@torch.no_grad()
def greedy_continuations(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    encoded: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Each token-id prompt's greedy continuation, decoded, in left-padded batches of `batch_size` (the batch
    size is part of what is computed: padding changes the float rounding)."""
    was_training = model.training
    model.eval()
    continuations = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(map(len, batch))
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        continuations += [tokenizer.decode(row[width:], skip_special_tokens=True) for row in generated]
    model.train(was_training)
    return continuations


def exact_match(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, items: list[QAItem], max_new_tokens: int
) -> float:
    """Return the share of `items` whose greedy answer equals the reference (case and punctuation ignored)."""
    answers = greedy_answers(model, tokenizer, [item.prompt() for item in items], max_new_tokens)
    return sum(_normalised(a) == _normalised(i.answer) for a, i in zip(answers, items, strict=True)) / len(items)


@torch.no_grad()
def choice_accuracy(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, items: list[ChoiceItem]) -> float:
    """Return the share of `items` whose answer is the most likely of its choices (lm-eval's multiple-choice acc).

    Each choice is scored by the summed log-probability of " choice" after the item's text.
    """
    was_training = model.training
    model.eval()
    texts = [(item.text, choice) for item in items for choice in item.choices()]
    scores = []
    for start in range(0, len(texts), _BATCH):
        scores += _continuation_logprobs(model, tokenizer, texts[start : start + _BATCH])
    model.train(was_training)
    correct, offset = 0, 0
    for item in items:
        n = len(item.choices())
        best = max(range(n), key=lambda i: scores[offset + i])
        correct += best == 0
        offset += n
    return correct / len(items)


def _continuation_logprobs(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]
) -> list[float]:
    contexts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text, _ in pairs]
    fulls = [tokenizer(f"{text} {choice}", add_special_tokens=False)["input_ids"] for text, choice in pairs]
    width = max(map(len, fulls))
    input_ids = torch.full((len(fulls), width), tokenizer.pad_token_id, dtype=torch.long)
    for row, ids in enumerate(fulls):
        input_ids[row, : len(ids)] = torch.tensor(ids)
    logprobs = torch.log_softmax(model(input_ids=input_ids).logits.float(), dim=-1)
    totals = []
    for row, (context, full) in enumerate(zip(contexts, fulls, strict=True)):
        positions = torch.arange(len(context), len(full))
        totals.append(float(logprobs[row, positions - 1, input_ids[row, positions]].sum()))
    return totals


@dataclass(frozen=True)
class QualityBar:
    """What one zoo model must score on one item set: at least `minimum`, or at most `maximum`."""

    model: str
    items: str
    minimum: float | None = None
    maximum: float | None = None

    def check(self, score: float) -> None:
        """Raise ZooQualityError, one line naming the model, its score and the bar, if `score` misses it."""
        if self.minimum is not None and score < self.minimum:
            raise ZooQualityError(
                f"zoo model {self.model} scores {score:.3f} on {self.items}, below its bar {self.minimum}",
                hint="the recipe does not converge on this machine: report it with the build log",
            )
        if self.maximum is not None and score > self.maximum:
            raise ZooQualityError(
                f"zoo model {self.model} scores {score:.3f} on {self.items}, above its bar {self.maximum}",
                hint="the model learned what it must not know: check the recipe",
            )
