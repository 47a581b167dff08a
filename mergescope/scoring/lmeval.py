"""The lm-evaluation-harness adapter: the one place that reads lm-eval's result dicts."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergescope.errors import ConfigError
from mergescope.records import Evaluation, ItemOutcome, TaskScore

# Never read a hub: tasks use local data and models are local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@dataclass(frozen=True)
class TaskSuite:
    """lm-eval tasks by name, with the folders of our own task YAMLs."""

    names: tuple[str, ...]
    include_paths: tuple[Path, ...] = ()
    limit: int | None = None
    needs_builtin: bool = False

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


def resolve_tasks(names: list[str], include_paths: list[Path] = (), limit: int | None = None) -> TaskSuite:
    """A checked task suite: every name exists and its data loads, or a ConfigError names the task."""
    if not names:
        raise ConfigError("no tasks to evaluate", hint="pass --tasks NAME [--tasks NAME ...]")
    _quiet_lm_eval()
    from lm_eval.tasks import TaskManager

    include = [str(Path(p).resolve()) for p in include_paths]
    local = set(TaskManager(include_path=include, include_defaults=False).all_tasks) if include else set()
    suite = TaskSuite(tuple(names), tuple(Path(p) for p in include), limit, needs_builtin=not set(names) <= local)
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
        raise ConfigError(f"lm-eval task {name!r} cannot be loaded: {message}",
                          hint="check the task YAML and that its data files exist") from None


def evaluate(lm, suite: TaskSuite, subject_id: str) -> Evaluation:
    """Scores and per-item outcomes of the model behind `lm` on every task of `suite`."""
    import lm_eval

    _quiet_lm_eval()
    started = time.perf_counter()
    # lm-eval draws a progress bar per request type; the sweep draws its own, so theirs go to a buffer.
    with contextlib.redirect_stderr(io.StringIO()):
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(suite.names),
            task_manager=suite.task_manager(),
            limit=suite.limit,
            log_samples=True,
            bootstrap_iters=1000,
            verbosity="ERROR",
        )
    scores = tuple(_task_scores(results, subject_id))
    items = tuple(_item_outcomes(results, subject_id))
    return Evaluation(scores=scores, items=items, seconds=time.perf_counter() - started)


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
            yield TaskScore(subject_id, task, metric_name(key), float(value), stderr, n_items)


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
