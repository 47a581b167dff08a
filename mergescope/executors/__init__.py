"""Executors: where a sweep's subjects are merged, served and scored (this process, or a Ray cluster).

Whatever the executor, results come back to the one process that writes the results store, one subject at a
time, through `on_result`; an executor never writes the store itself.
"""

from __future__ import annotations

import importlib
from typing import Callable, Protocol

from mergescope.errors import ConfigError, did_you_mean
from mergescope.executors.worker import EvalJob, SubjectResult, SubjectWorker
from mergescope.records import EvalSubject

# Called in the writing process for each finished subject.
ResultHandler = Callable[[SubjectResult], None]


class Executor(Protocol):
    name: str

    def run(self, todo: list[EvalSubject], job: EvalJob, on_result: ResultHandler) -> None:
        """Evaluate every subject of `todo`, handing each result to `on_result` as it finishes."""


EXECUTORS: dict[str, str] = {
    "local": "mergescope.executors.local:LocalExecutor",
    "ray": "mergescope.executors.ray:RayExecutor",
}


def create_executor(name: str, **options) -> Executor:
    """A new executor of the registered `name`; its module is imported only now (Ray is optional)."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}", hint=did_you_mean(name, set(EXECUTORS)))
    module_name, factory = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module_name), factory)(**options)


__all__ = ["EXECUTORS", "EvalJob", "Executor", "ResultHandler", "SubjectResult", "SubjectWorker", "create_executor"]
