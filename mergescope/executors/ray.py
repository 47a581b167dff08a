"""Ray executor: serving actors across a cluster, each with one live engine, fed subjects one at a time.

Each actor merges the candidates it serves (merges run where the weights are used) into the job's merges
folder (on a multi-node cluster, a shared filesystem path or one local to each node). Results flow back to
this process, which alone writes the results store. An actor that dies is restarted by Ray and its subject
retried; a subject whose retries are spent goes back into the queue for a fresh actor.
"""

from __future__ import annotations

from tqdm import tqdm

from mergescope.errors import PrerequisiteError
from mergescope.executors.worker import EvalJob, SubjectWorker
from mergescope.runs.records import EvalSubject
from mergescope.serving.options import RayOptions


class RayExecutor:
    name = "ray"

    def __init__(self, options: RayOptions = RayOptions()):
        self.options = options

    def run(self, todo: list[EvalSubject], job: EvalJob, on_result) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.options.address, include_dashboard=False, log_to_driver=False)
        actor_class = ray.remote(
            num_cpus=self.options.cpus_per_worker,
            num_gpus=self.options.gpus_per_worker,
            max_restarts=2,
            max_task_retries=2,
        )(SubjectWorker)
        actors = [actor_class.remote(job) for _ in range(min(self.options.workers, max(len(todo), 1)))]
        queue = [(subject, 1) for subject in todo]
        running: dict = {}  # object ref -> (actor, subject, attempt)
        bar = tqdm(total=len(todo), desc="sweep (ray)", unit="model", disable=not self.options.progress)
        try:
            while queue or running:
                idle = [a for a in actors if all(a is not busy for busy, _, _ in running.values())]
                for actor in idle[: len(queue)]:
                    subject, attempt = queue.pop(0)
                    running[actor.evaluate.remote(subject)] = (actor, subject, attempt)
                (ref,), _ = ray.wait(list(running), num_returns=1)
                actor, subject, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
                    actors[actors.index(actor)] = actor_class.remote(job)
                    if attempt >= self.options.max_attempts:
                        raise RuntimeError(f"{subject.label}: every serving actor died ({error})") from None
                    queue.append((subject, attempt + 1))
                    continue
                on_result(result)
                bar.update(1)
        finally:
            bar.close()
            for actor in actors:
                ray.kill(actor)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise PrerequisiteError(
            "the ray executor needs Ray, which is not installed",
            hint="pip install 'mergescope[ray]', or use --executor local",
        ) from None
    return ray
