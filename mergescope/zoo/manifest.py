"""The zoo manifest (`zoo.json`): which models and evaluation tasks a built zoo holds, and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr

MANIFEST_NAME = "zoo.json"


class TrainedStage(BaseModel):
    """How one training stage of a zoo model ended: the kept step, its dev score (None without a dev split)
    and the mean loss of its last tenth of steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    kept_step: int
    dev_score: float | None
    tail_loss: float


ModelRole = Literal["base", "parent", "stranger"]


class ZooModel(BaseModel):
    """One trained model of the zoo; `path` is relative to the zoo directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    role: ModelRole
    path: str
    recipe: dict[str, Any]
    scores: dict[str, float] = {}  # the build's own greedy exact match on each task (and the domain's facts)
    task_vector_norm: float | None = None  # |weights - start| / |start| for a fine-tune
    trained: list[TrainedStage] = []  # one entry per recipe stage, in order


class ZooTask(BaseModel):
    """One held-out lm-eval task of the zoo; `yaml` and `data` are relative to the zoo directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    domain: str
    yaml: str
    data: str
    n_items: int


class ZooPair(BaseModel):
    """Two zoo models to merge (with their shared base, if any) and the tasks a study scores them on.

    `kind` says how the two are related (e.g. "same skill", "two skills", "knowledge + instruct",
    "across lineages"); the pairs of a zoo span kinship from near zero to high.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    parents: tuple[str, str]
    base: str | None
    kind: str
    tasks: list[str]


class ZooManifest(BaseModel):
    """The contents of a built zoo; paths resolve against the directory it was loaded from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    width: int = 128  # the models' hidden size (zoos built before it was recorded were 128 wide)
    recipe_key: str = ""  # code, data and seed the zoo was built from: a cached zoo with another key is rebuilt
    cpu_capability: str = ""  # torch's CPU kernels the zoo was trained with (AVX512, AVX2, DEFAULT): part of the key
    build_seconds: float
    data_fingerprint: str
    models: list[ZooModel]
    tasks: list[ZooTask]
    pairs: list[ZooPair] = []
    _root: Path | None = PrivateAttr(default=None)

    @property
    def root(self) -> Path:
        """Return the zoo directory (set by `load_zoo` and `build_zoo`)."""
        if self._root is None:
            raise ValueError("manifest has no zoo directory: load it with load_zoo(dir)")
        return self._root

    def with_root(self, root: Path) -> ZooManifest:
        """Return a copy whose relative paths resolve against `root`."""
        manifest = self.model_copy()
        manifest._root = Path(root).resolve()
        return manifest

    def model(self, name: str) -> ZooModel:
        """Return the model called `name`; an unknown name raises KeyError listing the known ones."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"no zoo model {name!r}; known: {', '.join(m.name for m in self.models)}")

    def model_path(self, name: str) -> Path:
        """Return the absolute directory of the model called `name`."""
        return self.root / self.model(name).path

    def base(self) -> ZooModel:
        """Return the base model the parents were fine-tuned from."""
        return next(m for m in self.models if m.role == "base")

    def parents(self) -> list[ZooModel]:
        """Return the fine-tuned parents, in build order."""
        return [m for m in self.models if m.role == "parent"]

    def stranger(self) -> ZooModel:
        """Return the independently initialised model (low kinship with the others)."""
        return next(m for m in self.models if m.role == "stranger")

    def task(self, name: str) -> ZooTask:
        """Return the task called `name` (e.g. "zoo_arith"); an unknown name raises KeyError."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no zoo task {name!r}; known: {', '.join(t.name for t in self.tasks)}")

    def task_names(self) -> list[str]:
        """Return the lm-eval task names, in manifest order."""
        return [t.name for t in self.tasks]

    def task_yaml_dir(self) -> Path:
        """Return the absolute directory of the task YAMLs (pass it as lm-eval's `include_path`)."""
        return (self.root / self.tasks[0].yaml).parent

    def task_data_path(self, name: str) -> Path:
        """Return the absolute path of the JSONL items of task `name`."""
        return self.root / self.task(name).data


def load_zoo(zoo_dir: Path | str) -> ZooManifest:
    """Return the manifest of the zoo built in `zoo_dir`; FileNotFoundError if it has none."""
    root = Path(zoo_dir)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: build the zoo first (mergescope zoo build {root})")
    return ZooManifest.model_validate_json(manifest_path.read_text()).with_root(root)


def markdown_table(manifest: ZooManifest) -> str:
    """Return the README's zoo table: each model's recipe, scores and task-vector norm, from the manifest."""
    columns = sorted({name for model in manifest.models for name in model.scores})
    lines = [
        "| model | role | from | stages | " + " | ".join(columns) + " | task vector / start |",
        "|---|---|---|---|" + "---:|" * len(columns) + "---:|",
    ]
    for model in manifest.models:
        origin = model.recipe.get("fine_tuned_from") or f"init seed {model.recipe.get('init_seed')}"
        stages = ", ".join(_stage_summary(stage) for stage in model.recipe.get("stages", []))
        scores = " | ".join(f"{model.scores[c]:.3f}" if c in model.scores else "" for c in columns)
        norm = "" if model.task_vector_norm is None else f"{model.task_vector_norm:.3f}"
        lines.append(f"| {model.name} | {model.role} | {origin} | {stages} | {scores} | {norm} |")
    return "\n".join(lines) + "\n"


def _stage_summary(stage: dict) -> str:
    trains = "" if stage.get("trains", "all") == "all" else f", {stage['trains']} only"
    return f"{stage['name']} {stage['steps']} steps at {stage['lr']:g}{trains}"
