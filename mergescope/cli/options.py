"""The options several `mergescope` commands share, declared once (typer `Annotated` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RunArgument = Annotated[Path, typer.Argument(help="A run directory (the --out of a sweep).")]
JudgeUrlOption = Annotated[str | None, typer.Option(help="OpenAI-compatible judge endpoint, e.g. http://localhost:8000/v1.")]
JudgeModelOption = Annotated[str | None, typer.Option(help="Model name the judge endpoint serves.")]
RubricOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rubric", help="Judge rubric: a YAML file, or a shipped rubric's name such as zoo_skills (repeatable)."
    ),
]
ApiKeyEnvOption = Annotated[str, typer.Option(help="Environment variable holding the judge's API key.")]
LogprobsOption = Annotated[int, typer.Option(
    "--judge-logprobs", min=0, help="Ask the judge for N top alternatives per token and also keep "
                                     "probability-weighted scores (metrics *_weighted); 0: off.")]
AllowNonfiniteOption = Annotated[bool, typer.Option(
    help="Merge parents whose weights hold NaN or inf (refused by default, naming the tensor).")]
JudgeMaxTokensOption = Annotated[int | None, typer.Option(
    "--judge-max-tokens", min=1, help="The judge's reply budget (default: the rubric's judge_max_tokens); "
                                      "capped by the judge's context where the server reports it.")]

# How lm-eval prompts every subject, as lm-eval's own CLI names it (config.EvalSettings; part of a run's identity).
NumFewshotOption = Annotated[int | None, typer.Option(
    "--num-fewshot", help="Few-shot examples per prompt (lm-eval's --num_fewshot; default: each task's own).")]
ApplyChatTemplateOption = Annotated[bool, typer.Option(
    "--apply-chat-template", help="Prompt through each model's chat template (lm-eval's --apply_chat_template).")]
ChatTemplateOption = Annotated[str | None, typer.Option(
    "--chat-template", help="The tokenizer's template of this name (lm-eval's --apply_chat_template NAME); "
                            "implies --apply-chat-template.")]
FewshotAsMultiturnOption = Annotated[bool | None, typer.Option(
    "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
    help="Few-shot examples as chat turns, not one user turn (default: on with a chat template, as lm-eval).")]
SystemInstructionOption = Annotated[str | None, typer.Option(
    "--system-instruction", help="A system turn (or text) before every prompt (lm-eval's --system_instruction).")]
GenKwargsOption = Annotated[str | None, typer.Option(
    "--gen-kwargs", help="Generation options of generating tasks, e.g. temperature=0,max_gen_toks=64 or JSON "
                         "(lm-eval's --gen_kwargs).")]
BatchSizeOption = Annotated[int | None, typer.Option(
    "--batch-size", help="Requests computed at once (hf: lm-eval's batch size, default 64; vllm: the engine's "
                         "max_num_seqs; openai: per API call, default 16).")]
DtypeOption = Annotated[str | None, typer.Option(
    "--dtype", help="Merge and serve models in this dtype: float32, bfloat16 or float16 (default: the spec's).")]


def evaluation_settings(ctx: typer.Context):
    """The checked EvalSettings of a command's evaluation flags (a ConfigError names a bad one)."""
    from mergescope.merging.spec import eval_settings

    given = ctx.params
    return eval_settings(num_fewshot=given["num_fewshot"],
                         apply_chat_template=given["chat_template"] or given["apply_chat_template"],
                         fewshot_as_multiturn=given["fewshot_as_multiturn"],
                         system_instruction=given["system_instruction"], gen_kwargs=given["gen_kwargs"] or {},
                         batch_size=given["batch_size"])
