"""lm-eval tasks that score a chat model's free replies (and its likelihoods) on short-answer questions.

The YAML files beside this module (`chat_general`, `chat_domain` and their multiple-choice `_mc` variants) are
found by name: `resolve_tasks` adds this folder to lm-eval's include path. They are meant to be run with
`--apply-chat-template`. Their items ship as JSON lines beside them:

- `chat_general.jsonl`: 50 hand-written questions an instruct model already knows (capitals, colours, small sums,
  counts, opposites, common facts), each with a one-word or number answer that its question does not contain.
  Kept by a merge, lost by one that forgets.
- `chat_domain.jsonl`: the zoo's `domain` questions (mergescope/zoo/corpus.py, seed 0) about lands of its made-up
  world, which no pretrained model can know; a parent that read the zoo's domain documents may. Written by
  `domain_items()`, and a test checks the file against it, so a change to the zoo's corpus cannot drift apart
  from the shipped items unseen. Shipped rather than generated at run time: a task's items stay fixed between
  runs and releases, and lm-eval reads them without importing the zoo.

A chat model answers in sentences ("The capital of France is Paris."), so an exact match of the reply scores it 0.
The `contains` filter (`answer_in_reply`) maps a reply to the item's answer when the answer, or one of its
aliases ("5", "five"), occurs in it as whole words after normalisation (lower case, punctuation as spaces);
otherwise the reply stays as it is. lm-eval's `exact_match` (ignore_case, ignore_punctuation) then compares the
filtered reply with the answer. A reply that names several candidates scores as if it named the answer: replies
are greedy and short (48 tokens), and the stored rows keep every raw reply for checking.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).resolve().parent
DOMAIN_SEED = 0  # the zoo's default seed (`mergescope zoo build`): its domain documents are what a CPT parent reads
N_CHOICES = 4  # the answer and three wrong values of the same kind


def normalised_words(text: str) -> list[str]:
    """The words of `text`: lower case, every run of characters other than letters and digits a separator."""
    return re.sub(r"[^0-9a-z]+", " ", str(text).lower()).split()


def contains_words(reply: str, phrase: str) -> bool:
    """Whether `phrase`'s normalised words occur in `reply`'s, contiguously."""
    words, wanted = normalised_words(reply), normalised_words(phrase)
    return bool(wanted) and any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


def answer_in_reply(resps: Iterable[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """lm-eval `custom` filter: each reply that contains its item's answer or an alias becomes the answer."""
    return [
        [
            doc["answer"] if any(contains_words(reply, alias) for alias in doc["aliases"]) else str(reply).strip()
            for reply in replies
        ]
        for replies, doc in zip(resps, docs, strict=True)
    ]


def _dataset(name: str, lands: Sequence[str] | None = None):
    import datasets

    rows = [json.loads(line) for line in (TASKS_DIR / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    if lands is not None:
        rows = [row for row in rows if row["land"] in set(lands)]
        if not rows:
            raise ValueError(f"{name}: no item asks about the lands {', '.join(lands)}")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_general(**_: Any):
    """lm-eval `custom_dataset`: the general questions (lm-eval passes the task's metadata, unused here)."""
    return _dataset("chat_general")


def load_domain(lands: Sequence[str] | None = None, **_: Any):
    """lm-eval `custom_dataset`: the made-up world's questions, or only those about `lands` (a task's
    `dataset_kwargs`, e.g. the lands a real model's parents read: zoo/real.py writes such a task)."""
    return _dataset("chat_domain", lands)


def domain_items(seed: int = DOMAIN_SEED) -> list[dict[str, Any]]:
    """The zoo's domain evaluation questions for `seed`, each with three wrong values of its attribute drawn
    from the other domain lands (seeded), as the rows of chat_domain.jsonl."""
    from mergescope.zoo.corpus import generate

    data = generate(seed)
    rng = random.Random(seed)
    rows = []
    for item in data.eval_sets["domain"]:
        land = next(land for land in data.domain if re.search(rf"\b{land.name}\b", item.question))
        attribute = next(a for a in ("capital", "ruler", "animal", "population") if land.value(a) == item.answer)
        others = sorted({other.value(attribute) for other in data.domain} - {item.answer})
        rows.append(
            {
                "question": item.question,
                "answer": item.answer,
                "aliases": [item.answer],
                "choices": [item.answer, *rng.sample(others, N_CHOICES - 1)],
                "land": land.name,
                "attribute": attribute,
            }
        )
    return rows


def write_domain_items(path: Path = TASKS_DIR / "chat_domain.jsonl") -> None:
    """Rewrite chat_domain.jsonl from the zoo's corpus (after a deliberate change to it)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in domain_items()))
