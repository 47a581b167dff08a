"""The options of `mergescope` commands, each declared once: typer `Annotated` aliases, and the option groups
(groups.py) that commands with many options take as one record each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mergescope.cli.groups import OptionGroup

if TYPE_CHECKING:
    from mergescope.merging.spec import EvalSettings
    from mergescope.recipes.search import SearchSettings
    from mergescope.recipes.sweep import SweepSettings
    from mergescope.scoring.judge_run import JudgeSettings

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RunArgument = Annotated[Path, typer.Argument(help="A run directory (the --out of a sweep).")]
JudgeUrlOption = Annotated[
    str | None, typer.Option(help="OpenAI-compatible judge endpoint, e.g. http://localhost:8000/v1.")
]
JudgeModelOption = Annotated[str | None, typer.Option(help="Model name the judge endpoint serves.")]
RubricOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rubric", help="Judge rubric: a YAML file, or a shipped rubric's name such as zoo_skills (repeatable)."
    ),
]
ApiKeyEnvOption = Annotated[str, typer.Option(help="Environment variable holding the judge's API key.")]
LogprobsOption = Annotated[
    int,
    typer.Option(
        "--judge-logprobs",
        min=0,
        help="Ask the judge for N top alternatives per token and also keep "
        "probability-weighted scores (metrics *_weighted); 0: off.",
    ),
]
AllowNonfiniteOption = Annotated[
    bool, typer.Option(help="Merge parents whose weights hold NaN or inf (refused by default, naming the tensor).")
]
JudgeMaxTokensOption = Annotated[
    int | None,
    typer.Option(
        "--judge-max-tokens",
        min=1,
        help="The judge's reply budget (default: the rubric's judge_max_tokens); "
        "capped by the judge's context where the server reports it.",
    ),
]

# What a sweep merges and scores (sweep, search, study, candidates).
ParentsOption = Annotated[
    list[str] | None, typer.Option("--parents", help="Parent model directories or hub ids (org/name[@revision]).")
]
# `--parents A B` is accepted as the issue writes it: extra positional words are more parents.
ExtraParentsArgument = Annotated[list[str] | None, typer.Argument(hidden=True)]
BaseOption = Annotated[
    str | None, typer.Option(help="The shared base model the parents were tuned from (directory or hub id).")
]
SweepSpecOption = Annotated[
    Path | None,
    typer.Option(
        "--sweep", help="Sweep spec: a YAML file, or a shipped spec's name such as slerp_grid (default: default)."
    ),
]
TasksOption = Annotated[list[str] | None, typer.Option("--tasks", help="lm-eval task names.")]
TaskPathOption = Annotated[list[Path] | None, typer.Option(help="Folders of extra lm-eval task YAMLs.")]
OutOption = Annotated[
    Path | None,
    typer.Option(
        help="Run directory (default: runs/NAME_A_B, from the sweep spec's or search space's name and the parents')."
    ),
]
BackendOption = Annotated[str | None, typer.Option(help="Serving backend: hf, vllm, openai.")]
LimitOption = Annotated[int | None, typer.Option(help="Evaluate only the first N items of each task.")]
MaxMemoryOption = Annotated[
    str | None, typer.Option(help="Refuse merges that would need more memory than this, e.g. 8GB.")
]

# How lm-eval prompts every subject, as lm-eval's own CLI names it (config.EvalSettings; part of a run's identity).
NumFewshotOption = Annotated[
    int | None,
    typer.Option(
        "--num-fewshot", help="Few-shot examples per prompt (lm-eval's --num_fewshot; default: each task's own)."
    ),
]
ApplyChatTemplateOption = Annotated[
    bool,
    typer.Option(
        "--apply-chat-template", help="Prompt through each model's chat template (lm-eval's --apply_chat_template)."
    ),
]
ChatTemplateOption = Annotated[
    str | None,
    typer.Option(
        "--chat-template",
        help="The tokenizer's template of this name (lm-eval's --apply_chat_template NAME); "
        "implies --apply-chat-template.",
    ),
]
FewshotAsMultiturnOption = Annotated[
    bool | None,
    typer.Option(
        "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
        help="Few-shot examples as chat turns, not one user turn (default: on with a chat template, as lm-eval).",
    ),
]
SystemInstructionOption = Annotated[
    str | None,
    typer.Option(
        "--system-instruction", help="A system turn (or text) before every prompt (lm-eval's --system_instruction)."
    ),
]
GenKwargsOption = Annotated[
    str | None,
    typer.Option(
        "--gen-kwargs",
        help="Generation options of generating tasks, e.g. temperature=0,max_gen_toks=64 or JSON "
        "(lm-eval's --gen_kwargs).",
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Requests computed at once (hf: lm-eval's batch size, default 64; vllm: the engine's "
        "max_num_seqs; openai: per API call, default 16).",
    ),
]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        "--dtype", help="Merge and serve models in this dtype: float32, bfloat16 or float16 (default: the spec's)."
    ),
]


# -- option groups -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ParentOptions(OptionGroup):
    """The models a sweep merges (sweep, search, candidates)."""

    parents: ParentsOption = None
    extra_parents: ExtraParentsArgument = None
    base: BaseOption = None

    def models(self) -> list[str]:
        """The parents: those after --parents, then any further positional words."""
        return [*(self.parents or []), *(self.extra_parents or [])]


@dataclass(frozen=True, kw_only=True)
class ScoringOptions(OptionGroup):
    """What every subject is scored on, and what serves it (sweep, search, study)."""

    tasks: TasksOption = None
    task_path: TaskPathOption = None
    backend: BackendOption = None
    limit: LimitOption = None


@dataclass(frozen=True, kw_only=True)
class EvaluationOptions(OptionGroup):
    """How every subject is prompted (lm-eval's flags) and in which dtype it is merged and served."""

    num_fewshot: NumFewshotOption = None
    apply_chat_template: ApplyChatTemplateOption = False
    chat_template: ChatTemplateOption = None
    fewshot_as_multiturn: FewshotAsMultiturnOption = None
    system_instruction: SystemInstructionOption = None
    gen_kwargs: GenKwargsOption = None
    batch_size: BatchSizeOption = None
    dtype: DtypeOption = None

    def settings(self) -> EvalSettings:
        """The checked EvalSettings of the evaluation flags (a ConfigError names a bad one)."""
        from mergescope.merging.spec import eval_settings

        return eval_settings(
            num_fewshot=self.num_fewshot,
            apply_chat_template=self.chat_template or self.apply_chat_template,
            fewshot_as_multiturn=self.fewshot_as_multiturn,
            system_instruction=self.system_instruction,
            gen_kwargs=self.gen_kwargs or {},
            batch_size=self.batch_size,
        )


@dataclass(frozen=True, kw_only=True)
class ModelChecks(OptionGroup):
    """The parents' checks a sweep may lift, and its memory ceiling."""

    allow_pickle: Annotated[bool, typer.Option(help="Allow pickled (.bin) checkpoints.")] = False
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from config.json auto_map.")] = False
    allow_nonfinite: AllowNonfiniteOption = False
    max_memory: MaxMemoryOption = None


@dataclass(frozen=True, kw_only=True)
class JudgeEndpointOptions(OptionGroup):
    """The LLM judge and its rubrics (search; sweep and judge take JudgeOptions)."""

    judge_url: JudgeUrlOption = None
    judge_model: JudgeModelOption = None
    rubric: RubricOption = None
    judge_api_key_env: ApiKeyEnvOption = "MERGESCOPE_JUDGE_API_KEY"

    def sweep_judge(self) -> JudgeSettings | None:
        """The judge a sweep's options ask for (None: no judging), with the rubric's reply budget, no logprobs."""
        return self._sweep_judge(logprobs=0, max_tokens=None)

    def _sweep_judge(self, logprobs: int, max_tokens: int | None) -> JudgeSettings | None:
        from mergescope.scoring.judge_run import sweep_judge

        return sweep_judge(
            self.judge_url, self.judge_model, self.rubric or [], self.judge_api_key_env, logprobs, max_tokens
        )


@dataclass(frozen=True, kw_only=True)
class JudgeOptions(JudgeEndpointOptions):
    """The LLM judge, its rubrics and how it replies (sweep, judge)."""

    judge_logprobs: LogprobsOption = 0
    judge_max_tokens: JudgeMaxTokensOption = None

    def sweep_judge(self) -> JudgeSettings | None:
        """The judge a sweep's options ask for (None: no judging)."""
        return self._sweep_judge(logprobs=self.judge_logprobs, max_tokens=self.judge_max_tokens)


@dataclass(frozen=True, kw_only=True)
class ExecutorOptions(OptionGroup):
    """Where subjects are merged, served and scored (search; sweep takes ServingOptions)."""

    executor: Annotated[str, typer.Option(help="Where subjects run: local, or ray.")] = "local"
    address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster address (default: start a local one).")
    ] = None
    workers: Annotated[
        int,
        typer.Option(help="Ray serving actors, each with one live engine (a search asks this many trials at once)."),
    ] = 1

    def executor_options(self, ctx: typer.Context) -> dict[str, Any]:
        """The executor's options given on the command line (see `given`)."""
        return given(ctx, self, ("address", "workers"))


@dataclass(frozen=True, kw_only=True)
class ServingOptions(ExecutorOptions):
    """Where subjects run, and the GPUs and vLLM engine settings they are served with (sweep)."""

    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray serving actor.")] = 0.0
    tensor_parallel_size: Annotated[int, typer.Option(help="vLLM: GPUs each engine splits a model over.")] = 1
    gpu_memory_utilization: Annotated[float, typer.Option(help="vLLM: share of GPU memory an engine takes.")] = 0.85

    def executor_options(self, ctx: typer.Context) -> dict[str, Any]:
        """The executor's options given on the command line (see `given`)."""
        return given(ctx, self, ("address", "workers", "gpus_per_worker"))

    def backend_options(self, ctx: typer.Context) -> dict[str, Any]:
        """The serving backend's options given on the command line (see `given`)."""
        return given(ctx, self, ("tensor_parallel_size", "gpu_memory_utilization"))


def given(ctx: typer.Context, group: OptionGroup, names: tuple[str, ...]) -> dict[str, Any]:
    """The options of `group` among `names` given on the command line (or from the environment).

    Only those: a sweep refuses an option its backend or executor does not take (a vLLM flag with --backend hf),
    while defaults never get in the way of the backend chosen (vllm on a GPU machine).
    """
    defaults = {"DEFAULT", "DEFAULT_MAP"}  # by name: typer vendors its own click, whose ParameterSource is not click's
    sources = {name: ctx.get_parameter_source(name) for name in names}
    return {name: getattr(group, name) for name, source in sources.items() if source and source.name not in defaults}


@dataclass(frozen=True, kw_only=True)
class SearchOptions(OptionGroup):
    """The search's own options: its space and budget, the sampler, the objective, the fitness subset."""

    space: Annotated[
        Path, typer.Option("--space", help="Search space: a YAML file, or a shipped space's name such as space_lu2024.")
    ]
    budget: Annotated[int, typer.Option(help="Trials to run (a resumed search counts the stored ones).")]
    sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe, cmaes, random or nsga2.")] = "tpe"
    seed: Annotated[int, typer.Option(help="The sampler's seed (and the fitness subset's).")] = 0
    objective: Annotated[str, typer.Option(help="mean (of the tasks' primary metrics) or pareto (one per task).")] = (
        "mean"
    )
    fitness_items: Annotated[
        int | None, typer.Option(help="Score trials on K seeded selection-half items per task.")
    ] = None
    finalists: Annotated[int, typer.Option(help="The best trials rescored on the whole selection half.")] = 3

    def settings(self, run: SweepSettings) -> SearchSettings:
        """The search's settings over the run's (plan_search checks the sampler and the objective)."""
        from mergescope.recipes.search import SearchSettings

        return SearchSettings(
            run=run,
            space=self.space,
            budget=self.budget,
            sampler=self.sampler,
            seed=self.seed,
            objective=self.objective,
            fitness_items=self.fitness_items,
            finalists=self.finalists,
        )
