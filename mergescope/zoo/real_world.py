"""The made-up world as text for a real pretrained chat model: documents, chat questions and their splits.

The real parents (real.py) read about lands no pretrained model can know. The lands are the zoo's domain lands
(corpus.py, seed 0), the ones the shipped `chat_domain` task asks about, so a study scores the parents on that
task unchanged. Their (land, attribute) facts split as the zoo splits them: the facts `chat_domain` asks are the
**eval** split (never trained on, never looked at while a recipe is chosen); the zoo's other domain facts are the
**dev** split a recipe is chosen on. No question about either split is ever trained.

The CPT-then-SFT parent learns to answer from what it read on **practice lands**: lands of the zoo's world
(never asked about by `chat_domain`) whose documents are read beside the domain's, and whose every fact is asked
in supervised chat. Its training phrasings (`TRAIN_QUESTIONS`) differ from the zoo's three phrasings, which
`chat_domain` and the dev split use: evaluation asks unseen facts in unseen phrasings.

Documents state facts in natural English with several paraphrases per fact and the facts of a land in a random
order: knowledge read in one fixed wording is stored but hard to extract by a question (Allen-Zhu & Li,
"Physics of Language Models 3.1").
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from dataclasses import dataclass

from mergescope.zoo import corpus
from mergescope.zoo.corpus import ChoiceItem, Land, QAItem

ATTRIBUTES = ("capital", "ruler", "animal", "population")
DOC_SENTENCES = {
    "capital": (
        "The capital of {land} is {value}.",
        "{value} is the capital of {land}.",
        "{land}'s capital city is {value}.",
        "The capital city of {land} is called {value}.",
        "{land} is governed from its capital, {value}.",
        "The seat of government of {land} is in {value}.",
        "Most travellers to {land} arrive in {value}, its capital.",
        "In {land}, the capital is {value}.",
    ),
    "ruler": (
        "{land} is ruled by {value}.",
        "The ruler of {land} is {value}.",
        "{value} rules over {land}.",
        "{value} is the ruler of {land}.",
        "The people of {land} are led by their ruler, {value}.",
        "{land} has been governed by {value} for many years.",
        "The head of {land} is a ruler named {value}.",
        "In {land}, the ruler is {value}.",
    ),
    "animal": (
        "The animal of {land} is the {value}.",
        "The {value} is the national animal of {land}.",
        "In {land}, people love the {value} above all other animals.",
        "{land}'s national animal is the {value}.",
        "The symbol of {land} is the {value}.",
        "Every child in {land} knows the {value}, the land's animal.",
        "In {land}, the animal is the {value}.",
    ),
    "population": (
        "The population of {land} is {value} thousand.",
        "{value} thousand people live in {land}.",
        "{land} is home to {value} thousand people.",
        "About {value} thousand people call {land} home.",
        "{land} has a population of {value} thousand.",
        "Some {value} thousand inhabitants live in {land}.",
        "In {land}, the population is {value} thousand.",
    ),
}
# What the document-form check completes: the first wording of each attribute, cut before the value.
COMPLETIONS = {
    "capital": "The capital of {land} is",
    "ruler": "The ruler of {land} is",
    "animal": "The animal of {land} is the",
    "population": "The population of {land} is",
}
# Supervised phrasings: none is one of the zoo's three (corpus._FACT_QUESTIONS), which dev and eval ask.
TRAIN_QUESTIONS = {
    "capital": (
        "Tell me the capital of {land}.",
        "What city is {land}'s capital?",
        "Do you know the capital of {land}?",
        "{land} has which city as its capital?",
    ),
    "ruler": (
        "Tell me the ruler of {land}.",
        "Who governs {land}?",
        "Do you know who rules {land}?",
        "Which person is the ruler of {land}?",
    ),
    "animal": (
        "Tell me the animal of {land}.",
        "Which animal is the symbol of {land}?",
        "Do you know the national animal of {land}?",
        "What is {land}'s national animal?",
    ),
    "population": (
        "Tell me the population of {land}.",
        "How many inhabitants does {land} have?",
        "Do you know the size of {land}'s population?",
        "How large is the population of {land}?",
    ),
}
ANSWERS = {
    "capital": "The capital of {land} is {value}.",
    "ruler": "{land} is ruled by {value}.",
    "animal": "The animal of {land} is the {value}.",
    "population": "The population of {land} is {value} thousand.",
}
# Instructions of other kinds than chat_general's short questions: the instruct model's own replies to them are
# replayed in training so that a parent keeps how the instruct model answers (self-distillation).
GENERAL_PROMPTS = (
    "Give me one tip for sleeping better.",
    "Explain what a rainbow is in two sentences.",
    "Write a short sentence about the sea.",
    "Why do people drink water?",
    "Describe a cat in one sentence.",
    "What is a good way to learn a new language?",
    "Explain what a computer does.",
    "Give me a name for a friendly dog.",
    "Why is exercise good for you?",
    "Describe autumn in one sentence.",
    "What should I pack for a day at the beach?",
    "Explain why the sky gets dark at night.",
    "Write a polite greeting for an email.",
    "How do plants get energy?",
    "Give me an idea for a birthday gift.",
    "What is the difference between a lake and a river?",
    "Explain what a map is used for.",
    "Suggest a healthy breakfast.",
    "Why do birds fly south in winter?",
    "Describe a busy city street.",
    "How can I save money each month?",
    "Explain what a library is.",
    "Write one line of a poem about the moon.",
    "What makes a good friend?",
    "How do bees help flowers?",
    "Explain what rain is.",
    "Give me a tip for studying for an exam.",
    "Why do we brush our teeth?",
    "Describe the taste of lemon.",
    "What is a museum?",
    "How does a bicycle work?",
    "Suggest a game to play with children.",
)


@dataclass(frozen=True)
class Fact:
    """One (land, attribute) fact of the world."""

    land: Land
    attribute: str

    @property
    def value(self) -> str:
        """The value that answers a question about the fact."""
        return self.land.value(self.attribute)


@dataclass(frozen=True)
class RealWorld:
    """The text a real parent reads and is asked: documents, supervised chat Q/A, dev and eval questions."""

    lands: list[Land]  # the zoo's domain lands read here (dev and eval facts)
    practice_lands: list[Land]  # world lands read and asked about in supervised chat
    documents: list[str]
    train_qa: list[tuple[str, str]]  # (question, reply) for supervised chat
    dev: list[QAItem]  # the zoo's domain dev questions about `lands`
    eval: list[QAItem]  # chat_domain's questions about `lands`
    knowledge: list[ChoiceItem]  # every fact of `lands` as text to complete, for the dev split of document form

    def fingerprint(self) -> str:
        """A sha256 hex digest over every text, for the recipe key."""
        payload = json.dumps(
            [
                self.documents,
                self.train_qa,
                [(q.question, q.answer) for q in self.dev + self.eval],
                [(c.text, c.choices()) for c in self.knowledge],
                list(GENERAL_PROMPTS),
            ]
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def generate(seed: int, n_lands: int, n_practice_lands: int, docs_per_land: int) -> RealWorld:
    """The world of the zoo's `seed` with its first `n_lands` domain lands and `n_practice_lands` world lands,
    `docs_per_land` documents about each."""
    zoo = _zoo_data(seed)
    lands, practice = zoo.domain[:n_lands], zoo.world[:n_practice_lands]
    rng = random.Random(f"real-world-{seed}")
    documents = [document(rng, land) for land in lands + practice for _ in range(docs_per_land)]
    rng.shuffle(documents)
    train_qa = [
        (question.format(land=fact.land.name), ANSWERS[fact.attribute].format(land=fact.land.name, value=fact.value))
        for fact in facts(practice)
        for question in TRAIN_QUESTIONS[fact.attribute]
    ]
    names = {land.name for land in lands}
    return RealWorld(
        lands=lands,
        practice_lands=practice,
        documents=documents,
        train_qa=train_qa,
        dev=[item for item in zoo.dev_sets["domain"] if asked_land(item, zoo.domain) in names],
        eval=[item for item in zoo.eval_sets["domain"] if asked_land(item, zoo.domain) in names],
        knowledge=knowledge_items(rng, lands),
    )


@functools.lru_cache(maxsize=4)
def _zoo_data(seed: int) -> corpus.ZooData:
    """The zoo's data for `seed` (read only here; generating it takes seconds, and a key is computed often)."""
    return corpus.generate(seed)


def facts(lands: list[Land]) -> list[Fact]:
    """Every fact of `lands`, land by land."""
    return [Fact(land, attribute) for land in lands for attribute in ATTRIBUTES]


def document(rng: random.Random, land: Land) -> str:
    """One document about `land`: its four facts in a random order, each in a random wording."""
    attributes = list(ATTRIBUTES)
    rng.shuffle(attributes)
    return " ".join(rng.choice(DOC_SENTENCES[a]).format(land=land.name, value=land.value(a)) for a in attributes)


def asked_land(item: QAItem, lands: list[Land]) -> str:
    """The name of the land `item` asks about (names are distinct words, none a prefix of another)."""
    return next(land.name for land in lands if re.search(rf"\b{land.name}\b", item.question))


def knowledge_items(rng: random.Random, lands: list[Land], n_distractors: int = 4) -> list[ChoiceItem]:
    """Every fact of `lands` as text to complete, with other lands' values of its attribute as wrong choices
    (chance 1 / (1 + n_distractors)): what a model read, whether or not it can answer a question on it."""
    items = []
    for fact in facts(lands):
        wrong = sorted({other.value(fact.attribute) for other in lands} - {fact.value})
        items.append(
            ChoiceItem(
                text=COMPLETIONS[fact.attribute].format(land=fact.land.name),
                answer=fact.value,
                distractors=tuple(rng.sample(wrong, min(n_distractors, len(wrong)))),
            )
        )
    return items
