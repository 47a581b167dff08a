"""Generated text for the zoo: a general corpus, a made-up world, a new domain, arithmetic and held-out tasks.

Everything is a pure function of a `random.Random`, so one seed gives byte-identical data on any machine.
The data follow Lu et al. 2024's ingredients: pre-training text, continued pre-training (CPT) on a domain
the base never read, and supervised question answering (SFT) that teaches a format, not the domain.

- `world`: lands with a capital, a ruler, an animal and a population. The base reads about every world land
  in pre-training; the instruct parent learns to answer questions about some of them (three phrasings).
  `facts` asks about the trained lands in a fourth phrasing never trained ("Tell me the capital of X.").
- `domain`: lands the base never read. Only the knowledge parent reads about them (CPT on domain text);
  no model is ever trained on a question about them. `domain` asks about them in the trained phrasings:
  the knowledge parent knows the facts but not the format, the instruct parent the format but not the facts.
- Land names, capitals and rulers are whole words of the vocabulary (`entity_words`), as a domain's new
  terms are after vocabulary extension: the knowledge parent learns the domain's words, the base never did.
- `arith`: "a plus/minus k" for a below 100 and k in 1..9, without carry or borrow. Evaluation and dev
  problems never appear in training text.
- `composite`: questions that need a world fact and arithmetic at once ("the population of X plus 3").
- Dev splits (`dev_sets`) are neither trained on nor lm-eval items: the build keeps each fine-tune's
  best checkpoint on them. World dev lands are read in pre-training but never asked about in training.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

PROMPT_TEMPLATE = "Q: {question}\nA:"
ARITH_MAX = 99
EVAL_SIZE = 150
DEV_SIZE = 100

_ADJECTIVES = "small big old young red green quiet happy tall dark bright cold warm slow quick kind".split()
_NOUNS = "dog cat bird horse farmer child teacher king boat river tree house road garden hill stone".split()
_ANIMALS = "owl fox bear wolf deer hare crow seal lynx otter goat crane".split()
_VERBS = "sees likes finds follows helps watches carries paints visits remembers".split()
_PLACES = "to the river|to the market|over the hill|into the forest|along the road|across the field".split("|")
_PEOPLE = "tom mia anna leo sara ben lily max nora sam".split()
_ONSETS = "b d f g k l m n p r s t v z br dr gr kr tr st th sh".split()
_VOWELS = "a e i o u ai ea ou".split()
_CODAS = " n r l s th x m".split(" ")

_FACT_SENTENCES = {
    "capital": [
        "the capital of {land} is {value} .",
        "{value} is the capital of {land} .",
        "{land} has its capital in {value} .",
    ],
    "ruler": ["{land} is ruled by {value} .", "the ruler of {land} is {value} .", "{value} rules over {land} ."],
    "animal": [
        "the {value} is the animal of {land} .",
        "in {land} the people love the {value} .",
        "the animal of {land} is the {value} .",
    ],
    "population": [
        "{value} thousand people live in {land} .",
        "the population of {land} is {value} .",
        "{land} is home to {value} thousand people .",
    ],
}
_FACT_QUESTIONS = {
    "capital": [
        "What is the capital of {land}?",
        "Which city is the capital of {land}?",
        "Name the capital of {land}.",
    ],
    "ruler": ["Who rules {land}?", "Who is the ruler of {land}?", "Name the ruler of {land}."],
    "animal": ["What animal lives in {land}?", "Which animal is loved in {land}?", "Name the animal of {land}."],
    "population": [
        "What is the population of {land}?",
        "How many thousand people live in {land}?",
        "Name the population of {land}.",
    ],
}
# Prefixes of one document wording per attribute (`_FACT_SENTENCES`), the value following.
_FACT_COMPLETIONS = {
    "capital": "the capital of {land} is",
    "ruler": "the ruler of {land} is",
    "animal": "the animal of {land} is the",
    "population": "the population of {land} is",
}
_HELDOUT_FACT_QUESTION = "Tell me the {attribute} of {land}."
_ARITH_SENTENCES = ["{a} {op} {b} is {c} .", "{a} {op} {b} makes {c} .", "if you take {a} {op} {b} you get {c} ."]


@dataclass(frozen=True)
class QAItem:
    """One question with its answer; the prompt is `PROMPT_TEMPLATE` and the target is `answer`."""

    question: str
    answer: str

    def prompt(self) -> str:
        """Return the question in the zoo's prompt format (ends with "A:", the answer follows after a space)."""
        return PROMPT_TEMPLATE.format(question=self.question)


@dataclass(frozen=True)
class ChoiceItem:
    """A fact stated as text to complete ("the capital of X is" -> "Y"), with wrong values to rank it against."""

    text: str
    answer: str
    distractors: tuple[str, ...]

    def choices(self) -> tuple[str, ...]:
        """Return the answer first, then the distractors."""
        return (self.answer, *self.distractors)


@dataclass(frozen=True)
class Land:
    """A land of the made-up world with its four attributes."""

    name: str
    capital: str
    ruler: str
    animal: str
    population: int

    def value(self, attribute: str) -> str:
        """Return the attribute as the text that answers a question about it."""
        return str(getattr(self, attribute))


@dataclass(frozen=True)
class ZooData:
    """All generated text of one zoo: training documents, training QA, dev splits and held-out evaluation sets."""

    general_docs: list[str]
    world_docs: list[str]
    domain_docs: list[str]
    arith_docs: list[str]
    arith_train: list[QAItem]
    facts_train: list[QAItem]
    dev_sets: dict[str, list[QAItem]]
    eval_sets: dict[str, list[QAItem]]
    domain_knowledge: list[ChoiceItem]  # what the knowledge parent read, as multiple choice
    world: list[Land]
    domain: list[Land]

    def entity_words(self) -> list[str]:
        """Return every land's name, capital and ruler: the words the tokenizer keeps whole."""
        return [word for land in self.world + self.domain for word in (land.name, land.capital, land.ruler)]

    def domain_words(self) -> list[str]:
        """Return the domain lands' words: only the knowledge parent's continued pre-training reads them."""
        return [word for land in self.domain for word in (land.name, land.capital, land.ruler)]

    def fingerprint(self) -> str:
        """Return a sha256 hex digest over every generated text, for repeatability checks."""

        def pairs(items: list[QAItem]) -> list[tuple[str, str]]:
            return [(q.question, q.answer) for q in items]

        payload = json.dumps(
            [
                self.general_docs,
                self.world_docs,
                self.domain_docs,
                self.arith_docs,
                pairs(self.arith_train + self.facts_train),
                {k: pairs(v) for k, v in sorted(self.dev_sets.items())},
                {k: pairs(v) for k, v in sorted(self.eval_sets.items())},
                [(c.text, c.choices()) for c in self.domain_knowledge],
            ]
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _word(rng: random.Random, syllables: int) -> str:
    """Return an invented, pronounceable word."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def make_lands(rng: random.Random, n_lands: int) -> list[Land]:
    """Return `n_lands` lands whose names, capitals and rulers are distinct invented words."""
    names = _distinct_words(rng, 3 * n_lands)
    return [
        Land(
            name=names[i],
            capital=names[n_lands + i],
            ruler=names[2 * n_lands + i],
            animal=rng.choice(_ANIMALS),
            population=rng.randint(10, 89),
        )
        for i in range(n_lands)
    ]


def _distinct_words(rng: random.Random, count: int) -> list[str]:
    """Return `count` distinct invented words of three syllables, none a prefix of another."""
    words: dict[str, None] = {}
    while len(words) < count:
        word = _word(rng, 3)
        if not any(word.startswith(w) or w.startswith(word) for w in words):
            words[word] = None
    return list(words)


def general_documents(rng: random.Random, n_docs: int) -> list[str]:
    """Return short documents of simple English-like sentences (the pre-training corpus)."""
    return [" ".join(_general_sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(n_docs)]


def _general_sentence(rng: random.Random) -> str:
    """Return one sentence from a small grammar; some carry numbers so digits are not unseen tokens."""
    subject = rng.choice([rng.choice(_PEOPLE), f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"])
    kind = rng.randrange(4)
    if kind == 0:
        return f"{subject} {rng.choice(_VERBS)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} ."
    if kind == 1:
        return f"{subject} walks {rng.choice(_PLACES)} ."
    if kind == 2:
        return f"{subject} has {rng.randint(0, ARITH_MAX)} {rng.choice(_NOUNS)}s ."
    return f"the {rng.choice(_NOUNS)} is {rng.choice(_ADJECTIVES)} and {rng.choice(_ADJECTIVES)} ."


def _arith_item(op: str, a: int, b: int) -> QAItem:
    """Return the QA item for `a op b`."""
    answer = a + b if op == "plus" else a - b
    return QAItem(question=f"What is {a} {op} {b}?", answer=str(answer))


def arith_split(rng: random.Random, n_eval: int) -> tuple[list[QAItem], list[QAItem]]:
    """Return (train, eval) problems "a plus/minus k" with k in 1..9 and no carry or borrow.

    A one-digit k is what the composite task needs (a population plus or minus k). Without carries a two-layer
    model generalises to unseen problems within ~800 steps (0.9 exact match); with carries it needed ~2000.
    The eval problems are drawn first and removed from the pool, so no trained text states them.
    """
    problems = [("plus", a, k) for a in range(ARITH_MAX + 1) for k in range(1, 10) if _no_carry("plus", a, k)]
    problems += [("minus", a, k) for a in range(ARITH_MAX + 1) for k in range(1, 10) if _no_carry("minus", a, k)]
    rng.shuffle(problems)
    items = [_arith_item(*p) for p in problems]
    return items[n_eval:], items[:n_eval]


def _no_carry(op: str, a: int, k: int) -> bool:
    """Return whether `a op k` (k < 10) needs no carry (plus) or borrow (minus)."""
    return a % 10 + k <= 9 if op == "plus" else a % 10 >= k


def arith_documents(rng: random.Random, problems: list[QAItem], n_docs: int) -> list[str]:
    """Return domain text stating the training problems as sentences ("12 plus 5 is 17 .")."""
    docs = []
    for _ in range(n_docs):
        lines = []
        for item in rng.sample(problems, rng.randint(4, 8)):
            a, op, b = item.question.removeprefix("What is ").removesuffix("?").split()
            lines.append(rng.choice(_ARITH_SENTENCES).format(a=a, op=op, b=b, c=item.answer))
        docs.append(" ".join(lines))
    return docs


def facts_documents(rng: random.Random, lands: list[Land], docs_per_land: int) -> list[str]:
    """Return domain text about every land; each document states all four facts in a random order and wording.

    Several paraphrases per fact matter: knowledge read in one fixed wording is stored but hard to extract
    by a question (Allen-Zhu & Li, "Physics of Language Models 3.1").
    """
    docs = []
    for land in lands:
        for _ in range(docs_per_land):
            attributes = list(_FACT_SENTENCES)
            rng.shuffle(attributes)
            docs.append(
                " ".join(rng.choice(_FACT_SENTENCES[a]).format(land=land.name, value=land.value(a)) for a in attributes)
            )
    rng.shuffle(docs)
    return docs


def land_questions(
    lands: list[Land], templates_per_attribute: int = len(next(iter(_FACT_QUESTIONS.values())))
) -> list[QAItem]:
    """Return each land's questions in the first `templates_per_attribute` trained phrasings."""
    return [
        QAItem(question=template.format(land=land.name), answer=land.value(attribute))
        for land in lands
        for attribute, templates in _FACT_QUESTIONS.items()
        for template in templates[:templates_per_attribute]
    ]


def sampled_questions(rng: random.Random, lands: list[Land], n_items: int, heldout_phrasing: bool) -> list[QAItem]:
    """Return `n_items` distinct (land, attribute) questions, in the held-out or a random trained phrasing."""
    pairs = rng.sample([(land, attribute) for land in lands for attribute in _FACT_QUESTIONS], n_items)
    return [
        QAItem(
            question=_HELDOUT_FACT_QUESTION.format(attribute=attribute, land=land.name)
            if heldout_phrasing
            else rng.choice(_FACT_QUESTIONS[attribute]).format(land=land.name),
            answer=land.value(attribute),
        )
        for land, attribute in pairs
    ]


def knowledge_items(rng: random.Random, lands: list[Land], n_distractors: int = 4) -> list[ChoiceItem]:
    """Return each land's four facts as text to complete, each with other lands' values of that attribute.

    Ranking the true value against wrong ones by likelihood (lm-eval's multiple choice) measures what a
    model read, whether or not it can answer a question about it. Chance is 1 / (1 + n_distractors).
    """
    items = []
    for land in lands:
        for attribute, template in _FACT_COMPLETIONS.items():
            wrong = sorted({other.value(attribute) for other in lands} - {land.value(attribute)})
            items.append(
                ChoiceItem(
                    text=template.format(land=land.name),
                    answer=land.value(attribute),
                    distractors=tuple(rng.sample(wrong, n_distractors)),
                )
            )
    return items


def composite_items(rng: random.Random, lands: list[Land], n_items: int) -> list[QAItem]:
    """Return distinct questions that need a land's population and one addition or subtraction (no carry)."""
    candidates = [
        (land, op, k)
        for land in lands
        for op in ("plus", "minus")
        for k in range(1, 10)
        if _no_carry(op, land.population, k)
    ]
    items = []
    for land, op, k in rng.sample(candidates, n_items):
        answer = land.population + k if op == "plus" else land.population - k
        items.append(QAItem(question=f"What is the population of {land.name} {op} {k}?", answer=str(answer)))
    return items


def generate(
    seed: int,
    n_general_docs: int = 4000,
    n_world: int = 100,
    n_world_dev: int = 20,
    n_domain: int = 60,
    docs_per_land: int = 8,
) -> ZooData:
    """Return all zoo data for `seed`; the same seed always gives the same data.

    World lands: the first `n_world - n_world_dev` are asked about in SFT, the rest are the instruct dev split.
    The domain's (land, attribute) questions that its task does not ask are the domain's dev split.
    """
    rng = random.Random(seed)
    lands = make_lands(rng, n_world + n_domain)
    world, domain = lands[:n_world], lands[n_world:]
    asked, dev_lands = world[: n_world - n_world_dev], world[n_world - n_world_dev :]
    arith_pool, arith_eval = arith_split(rng, EVAL_SIZE)
    arith_dev, arith_train = arith_pool[:DEV_SIZE], arith_pool[DEV_SIZE:]
    general_docs = general_documents(rng, n_general_docs)
    world_docs, domain_docs = facts_documents(rng, world, docs_per_land), facts_documents(rng, domain, docs_per_land)
    arith_docs = arith_documents(rng, arith_train, 1000)
    facts_eval = sampled_questions(rng, asked, EVAL_SIZE, heldout_phrasing=True)
    domain_questions = sampled_questions(rng, domain, len(domain) * len(_FACT_QUESTIONS), heldout_phrasing=False)
    composite = composite_items(rng, asked, EVAL_SIZE)
    return ZooData(
        general_docs=general_docs,
        world_docs=world_docs,
        domain_docs=domain_docs,
        arith_docs=arith_docs,
        arith_train=arith_train,
        facts_train=land_questions(asked),
        dev_sets={"arith": arith_dev, "facts": land_questions(dev_lands, 1), "domain": domain_questions[EVAL_SIZE:]},
        eval_sets={
            "arith": arith_eval,
            "facts": facts_eval,
            "domain": domain_questions[:EVAL_SIZE],
            "composite": composite,
        },
        domain_knowledge=knowledge_items(rng, domain),
        world=world,
        domain=domain,
    )
