"""What a benchmark merges and scores: two parents, a base, tasks and how lm-eval prompts them.

The zoo gives one (tiny float32 models, its own Q/A tasks); the real model's parents (`mergescope models parents
DIR`: SmolLM2-135M-Instruct and two children, bf16) give another, scored in chat on `chat_general`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class BenchPair:
    name: str  # the benchmark rows' label: "zoo" or "smollm2"
    parents: tuple[Path, Path]
    base: Path
    tasks: tuple[str, ...]
    task_paths: tuple[Path, ...]
    dtype: str  # the parents' dtype: what every side loads, merges and serves in
    chat: bool = False  # lm-eval's --apply-chat-template
    limit: int | None = None  # items per task (None: all)

    def mergescope_eval_args(self) -> list[str]:
        """The evaluation options of `mergescope sweep` for these tasks."""
        return [
            *[arg for task in self.tasks for arg in ("--tasks", task)],
            *[arg for path in self.task_paths for arg in ("--task-path", str(path))],
            *(["--apply-chat-template"] if self.chat else []),
            *(["--limit", str(self.limit)] if self.limit else []),
        ]

    def lm_eval_args(self) -> list[str]:
        """The same evaluation as options of the `lm_eval` CLI."""
        return [
            "--tasks",
            ",".join(self.tasks),
            *[arg for path in self.task_paths for arg in ("--include_path", str(path))],
            *(["--apply_chat_template"] if self.chat else []),
            *(["--limit", str(self.limit)] if self.limit else []),
        ]


def zoo_pair(zoo, tasks: tuple[str, ...] = ("zoo_arith", "zoo_composite")) -> BenchPair:
    """The zoo's arith and facts parents with their base, on `tasks`."""
    return BenchPair(
        name="zoo",
        parents=(zoo.model_path("arith"), zoo.model_path("facts")),
        base=zoo.model_path("base"),
        tasks=tasks,
        task_paths=(zoo.task_yaml_dir(),),
        dtype="float32",
    )


def real_pair(directory: Path, limit: int = 20) -> BenchPair:
    """The real model's CPT and CPT-then-SFT parents with the instruct model as base, on `limit` general
    questions in chat (generation: the costly kind of evaluation)."""
    from mergescope.scoring.lmeval import SHIPPED_TASKS
    from mergescope.zoo.real import CPT, CPT_SFT, INSTRUCT

    return BenchPair(
        name="smollm2",
        parents=(directory / CPT, directory / CPT_SFT),
        base=directory / INSTRUCT,
        tasks=("chat_general",),
        task_paths=(SHIPPED_TASKS,),
        dtype="bfloat16",
        chat=True,
        limit=limit,
    )
