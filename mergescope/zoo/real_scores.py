"""How a real chat model does while its parents are built: free chat replies scored as the chat tasks score them.

The fast in-process copy of the shipped `chat_domain` / `chat_general` tasks (mergescope/scoring/tasks/): each
question goes through the tokenizer's chat template, the greedy reply (up to 48 tokens, cut at a blank line)
counts when it contains the answer as whole words after normalisation (lower case, punctuation as spaces).
lm-eval remains the judge of a study; this picks recipes on the dev split and measures forgetting. Domain replies
are also scored on their first sentence alone, which tells answering from reciting a document.
Document-form knowledge is scored as the zoo scores it (quality.choice_accuracy: the true value's likelihood
after a sentence's start against other lands' values).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.resources import files

from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from mergescope.zoo.corpus import ChoiceItem, QAItem
from mergescope.zoo.quality import choice_accuracy, greedy_continuations

MAX_NEW_TOKENS = 48  # as the chat tasks
_BATCH = 64


@dataclass(frozen=True)
class ChatItem:
    """A question with the answers (the answer and its aliases) a reply must contain one of."""

    question: str
    answers: tuple[str, ...]


def general_items() -> list[ChatItem]:
    """chat_general's questions: what the instruct model knows before it is fine-tuned."""
    lines = files("mergescope.scoring").joinpath("tasks/chat_general.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [ChatItem(row["question"], (row["answer"], *row.get("aliases", []))) for row in rows]


def chat_items(items: list[QAItem]) -> list[ChatItem]:
    """Zoo questions as chat items (their one answer)."""
    return [ChatItem(item.question, (item.answer,)) for item in items]


def normalised_words(text: str) -> list[str]:
    """The words of `text`: lower case, every run of characters other than letters and digits a separator."""
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).split()


def contains(reply: str, answer: str) -> bool:
    """Whether `answer`'s normalised words occur in `reply`'s, contiguously."""
    words, wanted = normalised_words(reply), normalised_words(answer)
    return bool(wanted) and any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


def chat_replies(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    questions: list[str],
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[str]:
    """Each question's greedy reply through the chat template (left-padded batches), cut at a blank line."""
    encoded = [chat_prompt(tokenizer, q) for q in questions]
    replies = greedy_continuations(model, tokenizer, encoded, max_new_tokens, _BATCH)
    return [reply.split("\n\n")[0] for reply in replies]


def chat_prompt(tokenizer: PreTrainedTokenizerFast, question: str) -> list[int]:
    """The ids of `question` as the user's turn of a chat, ending where the assistant's reply starts."""
    return list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def recall(replies: list[str], items: list[ChatItem], first_sentence: bool = False) -> float:
    """The share of `items` whose reply contains one of its answers (in its first sentence, with `first_sentence`:
    a model that recites everything it read about a land contains the answer without answering)."""
    if first_sentence:
        replies = [re.split(r"(?<=[.!?])\s", reply.strip(), maxsplit=1)[0] for reply in replies]
    return sum(any(contains(reply, a) for a in item.answers) for reply, item in zip(replies, items, strict=True)) / len(
        items
    )


def knowledge(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, items: list[ChoiceItem]) -> float:
    """The share of facts whose true value is the likeliest completion of its sentence (document form)."""
    return choice_accuracy(model, tokenizer, items)
