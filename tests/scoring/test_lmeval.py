"""The lm-eval adapter: one TaskRunner reused across models scores each exactly as a fresh lm-eval run does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mergescope.scoring.lmeval import TaskRunner, resolve_tasks
from mergescope.serving.hf import HFBackend

# Plain lm-eval in a fresh process, with none of mergescope's changes to it: the reference.
REFERENCE_SCRIPT = """
import json, sys
import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

model, task_dir, tasks = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
lm = HFLM(pretrained=AutoModelForCausalLM.from_pretrained(model), tokenizer=AutoTokenizer.from_pretrained(model),
          device="cpu", batch_size=32)
results = lm_eval.simple_evaluate(model=lm, tasks=tasks, bootstrap_iters=0, log_samples=True,
                                  task_manager=TaskManager(include_path=task_dir, include_defaults=False))
print(json.dumps({task: [[s["doc_id"], s["arguments"][0][0], s["filtered_resps"][0], s["exact_match"]]
                         for s in samples] for task, samples in results["samples"].items()}))
"""


@pytest.fixture(scope="module")
def task_dir(zoo, tmp_path_factory) -> Path:
    """The zoo's arithmetic task, plus a 3-shot copy of it: few-shot prompts depend on lm-eval's seeding."""
    folder = tmp_path_factory.mktemp("tasks")
    task = yaml.safe_load((zoo.task_yaml_dir() / "zoo_arith.yaml").read_text())
    (folder / "zoo_arith.yaml").write_text(yaml.safe_dump(task))
    few_shot = task | {"task": "zoo_arith_3shot", "num_fewshot": 3, "fewshot_split": "test"}
    (folder / "zoo_arith_3shot.yaml").write_text(yaml.safe_dump(few_shot))
    return folder


def _reference(model: Path, task_dir: Path, tasks: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", REFERENCE_SCRIPT, str(model), str(task_dir), ",".join(tasks)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _runner_items(evaluation) -> dict:
    items: dict[str, list] = {}
    for item in sorted(evaluation.items, key=lambda i: (i.task, i.doc_id)):
        items.setdefault(item.task, []).append([item.doc_id, item.prompt, item.response, item.value])
    return items


def test_a_reused_runner_scores_like_a_fresh_lm_eval_run(zoo, task_dir):
    tasks = ["zoo_arith", "zoo_arith_3shot"]
    runner = TaskRunner(resolve_tasks(tasks, [task_dir]))
    backend = HFBackend()
    # another model first: nothing of its run (responses, few-shot draws) may leak into the next one
    runner.evaluate(backend.load(zoo.model_path("facts")), "facts")
    reused = runner.evaluate(backend.load(zoo.model_path("arith")), "arith")
    reference = _reference(zoo.model_path("arith"), task_dir, tasks)
    assert _runner_items(reused) == {task: sorted(items) for task, items in reference.items()}
    assert "A:" in reference["zoo_arith_3shot"][0][1].split("\n\n")[0]  # the prompt carries its 3 shots
    by_task = {s.task: s.value for s in reused.scores}
    assert by_task["zoo_arith"] == pytest.approx(sum(i[3] for i in reference["zoo_arith"]) / 150)


def test_samples_score_those_documents_only_as_a_whole_run_scores_them(zoo, task_dir):
    """A search's fitness subset (lm-eval's `samples=`): the listed documents only, each scored as in a whole run."""
    runner = TaskRunner(resolve_tasks(["zoo_arith"], [task_dir]))
    lm = HFBackend().load(zoo.model_path("arith"))
    whole = {item[0]: item for item in _runner_items(runner.evaluate(lm, "arith"))["zoo_arith"]}
    ids = (97, 3, 41, 120)  # out of order: lm-eval logs the k-th document it scores under the k-th listed id
    subset = runner.evaluate(lm, "arith", samples={"zoo_arith": ids})
    assert _runner_items(subset)["zoo_arith"] == [whole[i] for i in sorted(ids)]
    assert [s.n_items for s in subset.scores] == [len(ids)]
    with pytest.raises(ValueError, match="every task"):  # lm-eval takes an empty list for every document
        runner.evaluate(lm, "arith", samples={"zoo_arith": ()})
