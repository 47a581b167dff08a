"""Executors: where a sweep's subjects are merged, served and scored (this process, or a Ray cluster).

Whatever the executor, results come back to the one process that writes the results store, one subject at a
time, through `on_result`; an executor never writes the store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mergescope.executors.worker import EvalJob, SubjectResult, SubjectWorker
from mergescope.runs.records import EvalSubject
from mergescope.serving.options import LocalOptions, Plugin, RayOptions, Registry

# Called in the writing process for each finished subject.
ResultHandler = Callable[[SubjectResult], None]


class Executor(Protocol):
    name: str

    def run(self, todo: list[EvalSubject], job: EvalJob, on_result: ResultHandler) -> None:
        """Evaluate every subject of `todo`, handing each result to `on_result` as it finishes."""


# name -> "module:factory" and its options record; the factory takes one record and returns an Executor.
EXECUTORS = Registry(
    "executor",
    {
        "local": Plugin("mergescope.executors.local:LocalExecutor", LocalOptions),
        "ray": Plugin("mergescope.executors.ray:RayExecutor", RayOptions),
    },
)


def create_executor(name: str, options: Any | None = None, **values) -> Executor:
    """A new executor of the registered `name` (given its options record or keyword options checked into one);
    its module is imported only now (Ray is optional)."""
    options = EXECUTORS.configured(name, options, values)
    return EXECUTORS.plugin(name).factory()(options)


__all__ = ["EXECUTORS", "EvalJob", "Executor", "ResultHandler", "SubjectResult", "SubjectWorker", "create_executor"]
