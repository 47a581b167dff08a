"""The lm-evaluation-harness adapter: the one place that reads lm-eval's result dicts."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergescope.errors import ConfigError
from mergescope.merging.spec import EvalSettings
from mergescope.runs.records import Evaluation, ItemOutcome, TaskScore
from mergescope.shipped import shipped_folder

# Never read a hub: tasks use local data and models are local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


BOOTSTRAP_ITERS = 1000  # resamples behind each score's stderr
# lm-eval tasks shipped with mergescope (chat_general, chat_domain and their _mc variants: scoring/tasks/),
# found by name without --task-path
SHIPPED_TASKS = shipped_folder("mergescope.scoring", "tasks")


@dataclass(frozen=True)
class TaskSuite:
    """lm-eval tasks by name, with the folders of our own task YAMLs, and how lm-eval prompts them."""

    names: tuple[str, ...]
    include_paths: tuple[Path, ...] = ()
    limit: int | None = None
    needs_builtin: bool = False
    settings: EvalSettings = EvalSettings()

    def task_manager(self):
        from lm_eval.tasks import TaskManager

        include = [str(p) for p in self.include_paths] or None
        return TaskManager(include_path=include, include_defaults=self.needs_builtin or not include)


def _quiet_lm_eval() -> None:
    for name in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_tasks(
    names: list[str],
    include_paths: Sequence[Path] = (),
    limit: int | None = None,
    settings: EvalSettings = EvalSettings(),
) -> TaskSuite:
    """A checked task suite: every name exists and its data loads, or a ConfigError names the task."""
    if not names:
        raise ConfigError("no tasks to evaluate", hint="pass --tasks NAME [--tasks NAME ...]")
    _quiet_lm_eval()
    from lm_eval.tasks import TaskManager

    include = list(dict.fromkeys(str(Path(p).resolve()) for p in [*include_paths, SHIPPED_TASKS]))
    local = set(TaskManager(include_path=include, include_defaults=False).all_tasks)
    suite = TaskSuite(
        tuple(names), tuple(Path(p) for p in include), limit, needs_builtin=not set(names) <= local, settings=settings
    )
    manager = suite.task_manager()
    for name in names:
        if name not in manager.all_tasks:
            from mergescope.errors import did_you_mean

            raise ConfigError(f"unknown lm-eval task {name!r}", hint=did_you_mean(name, set(manager.all_tasks)))
        _check_task_loads(manager, name)
    return suite


def _check_task_loads(manager, name: str) -> None:
    try:
        manager.load([name])
    except Exception as error:  # lm-eval and datasets raise many types for a bad task or missing data
        message = " ".join(str(error).split())[:300]
        raise ConfigError(
            f"lm-eval task {name!r} cannot be loaded: {message}",
            hint="check the task YAML and that its data files exist",
        ) from None


class TaskRunner:
    """A suite's lm-eval tasks, loaded once and then run against one model after another.

    `lm_eval.simple_evaluate` reloads every task and collects the machine's environment (pip and
    nvidia-smi subprocesses) on each call: about 0.5 s per model on the zoo, more than scoring it.
    A sweep scores dozens of models on the same tasks, so a worker keeps one runner and calls
    lm-eval's `evaluate` on the loaded tasks, seeded as `simple_evaluate` seeds them.
    """

    def __init__(self, suite: TaskSuite):
        _quiet_lm_eval()
        _compile_each_template_once()
        self.suite = suite
        self.loaded = suite.task_manager().load(list(suite.names))
        for task in self.loaded["tasks"].values():
            _configure(task, suite.settings)

    def evaluate(self, lm, subject_id: str, samples: dict[str, tuple[int, ...]] | None = None) -> Evaluation:
        """Scores and per-item outcomes of the model behind `lm` on every task of the suite (with `samples`: on
        those doc ids of each task only, in place of the suite's limit)."""
        from lm_eval.evaluator import evaluate as lm_eval_evaluate

        started = time.perf_counter()
        settings = self.suite.settings
        self._seed()
        # lm-eval draws a progress bar per request type; the sweep draws its own, so theirs go to a buffer.
        with contextlib.redirect_stderr(io.StringIO()):
            results = lm_eval_evaluate(
                lm=lm,
                task_dict=self.loaded,
                **_items_to_score(self.suite, samples),
                log_samples=True,
                bootstrap_iters=BOOTSTRAP_ITERS,
                system_instruction=settings.system_instruction,
                apply_chat_template=settings.apply_chat_template,
                fewshot_as_multiturn=settings.fewshot_as_multiturn,
            )
        scores = tuple(_task_scores(results, subject_id))
        items = tuple(_item_outcomes(results, subject_id))
        return Evaluation(scores=scores, items=items, seconds=time.perf_counter() - started)

    def _seed(self) -> None:
        """The seeds `simple_evaluate` sets before every run, so that every model sees the same few-shot draws."""
        import random

        import numpy as np
        import torch
        from lm_eval.defaults import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED

        random.seed(DEFAULT_RANDOM_SEED)
        np.random.seed(DEFAULT_OTHER_SEED)
        torch.manual_seed(DEFAULT_OTHER_SEED)
        for task in self.loaded["tasks"].values():
            task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)


def _configure(task, settings: EvalSettings) -> None:
    """Give a loaded task the few-shot count and generation options `simple_evaluate` would give it."""
    if settings.gen_kwargs and task.get_config("output_type") == "generate_until":
        task.set_config(key="generation_kwargs", value=dict(settings.gen_kwargs), update=True)
    # as lm-eval: a task that sets num_fewshot: 0 itself keeps it; one that sets none gets 0
    if settings.num_fewshot is not None and task.get_config("num_fewshot") != 0:
        task.set_config(key="num_fewshot", value=settings.num_fewshot)
    elif task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)


def _items_to_score(suite: TaskSuite, samples: dict[str, tuple[int, ...]] | None) -> dict[str, Any]:
    """lm-eval's `limit` or `samples` (it takes one or the other). Its log maps the k-th scored document to the
    k-th listed id, so the ids must be listed in document order; an empty list would mean every document."""
    if samples is None:
        return {"limit": suite.limit, "samples": None}
    if any(not ids for ids in samples.values()) or set(samples) != set(suite.names):
        raise ValueError(f"samples must list doc ids for every task of {suite.names}")
    return {"limit": None, "samples": {task: sorted(ids) for task, ids in samples.items()}}


def evaluate(lm, suite: TaskSuite, subject_id: str) -> Evaluation:
    """One model on `suite`; a sweep keeps a `TaskRunner` instead, to load the tasks once."""
    return TaskRunner(suite).evaluate(lm, subject_id)


@functools.cache
def _compile_each_template_once() -> None:
    """Make lm-eval compile each prompt template once instead of once per document and call.

    lm-eval renders `doc_to_text`/`doc_to_target` with `Environment.from_string`, which compiles the
    Jinja source anew every time (lm-eval issue #1286, still open): ~0.3 ms x 4 calls per document,
    the largest cost of scoring a small model. A compiled template renders the same text.
    """
    import lm_eval.utils

    compiled = functools.lru_cache(maxsize=4096)(lm_eval.utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compiled(template).render(**doc)

    lm_eval.utils.apply_template = apply_template


def metric_name(key: str) -> str:
    """lm-eval's "metric,filter" key as we store it: the filter is dropped when it is "none"."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else key


def _task_scores(results: dict[str, Any], subject_id: str):
    for task, values in results["results"].items():
        n_items = int(results.get("n-samples", {}).get(task, {}).get("effective", 0))
        for key, value in values.items():
            # sample_len is a count lm-eval reports beside the metrics, not a score
            if key in ("alias", "sample_len") or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, filter_name = key.partition(",")
            stderr = values.get(f"{metric}_stderr,{filter_name}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None
            yield TaskScore(
                subject_id=subject_id,
                task=task,
                metric=metric_name(key),
                value=float(value),
                stderr=stderr,
                n_items=n_items,
            )


def _item_outcomes(results: dict[str, Any], subject_id: str):
    for task, samples in results.get("samples", {}).items():
        for sample in samples:
            prompt = _first_text(sample["arguments"])
            response = _first_text(sample["filtered_resps"])
            for metric in sample["metrics"]:
                yield ItemOutcome(
                    subject_id=subject_id,
                    task=task,
                    doc_id=int(sample["doc_id"]),
                    doc_hash=sample["doc_hash"],
                    metric=metric_name(f"{metric},{sample['filter']}"),
                    value=float(sample[metric]),
                    prompt=prompt,
                    target=str(sample["target"]),
                    response=response,
                )


def _first_text(value: Any) -> str:
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return str(value)
