"""The default executor: one worker in this process, subjects in sweep order, with a progress bar."""

from __future__ import annotations

from tqdm import tqdm

from mergescope.executors.worker import EvalJob, SubjectWorker
from mergescope.runs.records import EvalSubject
from mergescope.serving.options import LocalOptions


class LocalExecutor:
    name = "local"

    def __init__(self, options: LocalOptions = LocalOptions()):
        self.progress = options.progress

    def run(self, todo: list[EvalSubject], job: EvalJob, on_result) -> None:
        worker = SubjectWorker(job)
        try:
            bar = tqdm(todo, desc="sweep", unit="model", disable=not self.progress)
            for subject in bar:
                bar.set_postfix_str(subject.label)
                on_result(worker.evaluate(subject))
        finally:
            worker.close()
