"""The shipped chat tasks (scoring/tasks/): found by name, their items sound, and their scoring of free replies
checked end to end through lm-eval with a stand-in model whose replies are known."""

from __future__ import annotations

import json

import pytest

from mergescope.merging.spec import EvalSettings
from mergescope.scoring.lmeval import SHIPPED_TASKS, TaskRunner, resolve_tasks
from mergescope.scoring.tasks import chat_tasks

CHAT_TASKS = ("chat_general", "chat_domain", "chat_general_mc", "chat_domain_mc")


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED_TASKS / f"{name}.jsonl").read_text().splitlines()]


def test_the_chat_tasks_are_found_by_name_without_a_task_path():
    suite = resolve_tasks(list(CHAT_TASKS))
    assert suite.names == CHAT_TASKS and not suite.needs_builtin


@pytest.mark.parametrize(
    "reply, phrase, contained",
    [
        ("The capital of France is Paris.", "Paris", True),
        ("PARIS!", "Paris", True),
        ("Parisian food is famous.", "Paris", False),  # whole words only
        ("It has five legs... no, 8 legs.", "8", True),
        ("There are twenty four hours.", "twenty-four", True),  # punctuation is a separator on both sides
        ("12 is the answer", "2", False),
        ("", "Paris", False),
    ],
)
def test_an_answer_is_contained_as_whole_words(reply, phrase, contained):
    assert chat_tasks.contains_words(reply, phrase) is contained


def test_the_filter_maps_a_reply_holding_an_alias_to_the_answer():
    docs = [{"answer": "5", "aliases": ["5", "five"]}, {"answer": "Paris", "aliases": ["Paris"]}]
    assert chat_tasks.answer_in_reply([["It is five."], ["  Lyon, I think. "]], docs) == [["5"], ["Lyon, I think."]]


@pytest.mark.parametrize("name", ["chat_general", "chat_domain"])
def test_no_item_gives_its_answer_away_and_every_choice_differs(name):
    items = rows(name)
    assert len(items) == {"chat_general": 50, "chat_domain": 150}[name]
    assert len({item["question"] for item in items}) == len(items)
    for item in items:
        assert item["aliases"][0] == item["answer"] == item["choices"][0], item
        assert not any(chat_tasks.contains_words(item["question"], alias) for alias in item["aliases"]), item
        assert len(item["choices"]) == chat_tasks.N_CHOICES, item
        distractors = item["choices"][1:]
        assert not any(chat_tasks.contains_words(wrong, alias) for wrong in distractors for alias in item["aliases"])
        assert len(set(map(str.lower, item["choices"]))) == chat_tasks.N_CHOICES, item


def test_the_shipped_domain_items_are_the_zoo_corpus_questions():
    """A change to the zoo's corpus must be shipped deliberately (chat_tasks.write_domain_items)."""
    assert rows("chat_domain") == chat_tasks.domain_items()


class KnownReplies:
    """An lm-eval model answering the even-numbered items right, in a sentence, and the odd ones wrong; for
    multiple choice, the first (true) choice is likeliest on even items and the last on odd ones."""

    def __init__(self, items: list[dict]):
        from lm_eval.api.model import LM

        self.index = {item["question"]: number for number, item in enumerate(items)}
        self.items = items
        outer = self

        class Model(LM):
            def generate_until(self, requests):
                return [outer.reply(request.args[0]) for request in requests]

            def loglikelihood(self, requests):
                return [outer.likelihood(*request.args) for request in requests]

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

        self.lm = Model()

    def number(self, context: str) -> int:
        return next(n for question, n in self.index.items() if context.rstrip().endswith(question))

    def reply(self, context: str) -> str:
        number = self.number(context)
        item = self.items[number]
        return f"I believe the answer is {item['answer']}." if number % 2 == 0 else "I am not sure, sorry."

    def likelihood(self, context: str, continuation: str) -> tuple[float, bool]:
        number = self.number(context)
        choices = self.items[number]["choices"]
        likeliest = choices[0] if number % 2 == 0 else choices[-1]
        return (0.0 if continuation == likeliest else -5.0), continuation == likeliest


@pytest.mark.parametrize("task, metric", [("chat_general", "exact_match,contains"), ("chat_general_mc", "acc")])
def test_scores_follow_the_replies(task, metric):
    items = rows("chat_general")
    runner = TaskRunner(resolve_tasks([task], settings=EvalSettings()))
    evaluation = runner.evaluate(KnownReplies(items).lm, "known")
    score = next(s for s in evaluation.scores if s.metric == metric)
    assert (score.value, score.n_items) == (0.5, 50)
    per_item = {outcome.doc_id: outcome.value for outcome in evaluation.items if outcome.metric == metric}
    assert per_item == {number: float(number % 2 == 0) for number in range(50)}


@pytest.mark.slow
@pytest.mark.real
def test_the_instruct_model_knows_the_general_questions_and_not_the_made_up_world(smollm2):
    """SmolLM2-135M-Instruct through its chat template: most general questions, (almost) no domain question."""
    from mergescope.serving.hf import HFBackend
    from mergescope.serving.options import HFOptions

    lm = HFBackend(HFOptions(dtype="bfloat16", batch_size=16)).load(smollm2)
    chat = EvalSettings(apply_chat_template=True)
    general = TaskRunner(resolve_tasks(["chat_general"], settings=chat)).evaluate(lm, "instruct").scores[0]
    domain = TaskRunner(resolve_tasks(["chat_domain"], limit=30, settings=chat)).evaluate(lm, "instruct").scores[0]
    assert general.value > 0.5 and general.n_items == 50, general
    assert domain.value < 0.15 and domain.n_items == 30, domain
