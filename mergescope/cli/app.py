"""The `mergescope` command line: each command parses options and calls one library function."""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mergescope.cli.groups import option_groups
from mergescope.cli.options import (
    AllowNonfiniteOption,
    EvaluationOptions,
    ExecutorOptions,
    JsonOption,
    JudgeEndpointOptions,
    JudgeOptions,
    MaxMemoryOption,
    ModelChecks,
    OutOption,
    ParentOptions,
    RunArgument,
    ScoringOptions,
    SearchOptions,
    ServingOptions,
    SweepSpecOption,
)
from mergescope.cli.usage import OneLineUsageErrors

if TYPE_CHECKING:
    from mergescope.recipes.sweep import SweepSettings

app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Sweep LLM merges, score them, and find what emerges.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
zoo_app = typer.Typer(help="The tiny trained model zoo used by tests and the demo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
models_app = typer.Typer(
    help="Pretrained models shipped inside packages on the index, written as model directories.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def user_errors(command: Callable) -> Callable:
    """Print a MergescopeError as one line with its hint and exit with its code; no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from mergescope.errors import MergescopeError

        try:
            return command(*args, **kwargs)
        except MergescopeError as error:
            typer.echo(f"error: {error.one_line()}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("\ninterrupted: finished results are saved; run the same command again to resume.", err=True)
            raise typer.Exit(130) from None

    return wrapper


@zoo_app.command("build")
@user_errors
def zoo_build(
    directory: Annotated[Path, typer.Argument(help="Where to write the zoo.")],
    seed: int = 0,
    width: Annotated[
        int, typer.Option(help="The models' hidden size (a multiple of 32): the demo's zoos are 64 and 128.")
    ] = 128,
):
    """Train the zoo's tokenizer, two lineages of bases and their fine-tunes on CPU; write DIR/zoo.json."""
    from mergescope.zoo import build_zoo

    manifest = build_zoo(directory, seed=seed, width=width)
    typer.echo(f"zoo written to {directory}/zoo.json in {manifest.build_seconds:.0f}s")


@zoo_app.command("table")
@user_errors
def zoo_table(directory: Annotated[Path, typer.Argument(help="A built zoo.")]):
    """Print the zoo's models, recipes, scores and task-vector norms as a Markdown table (the README's)."""
    from mergescope.zoo import load_zoo
    from mergescope.zoo.manifest import markdown_table

    typer.echo(markdown_table(load_zoo(directory)), nl=False)


def _packaged_model_command(name: str, summary: str) -> None:
    """`mergescope models NAME [DIR] [--hub]`, for one model of the registry in models/packaged.py."""

    @models_app.command(
        name,
        help=f"Write {summary} as a model directory (safetensors, config, tokenizer with its "
        "chat template), the same bytes every time; --hub also lays it out in the hub "
        "cache under its hub id, so that a sweep can name it by that id offline.",
    )
    @user_errors
    def write(
        directory: Annotated[Path | None, typer.Argument(help="A new (or empty) directory for the model.")] = None,
        hub: Annotated[bool, typer.Option("--hub", help="Lay it out in the hub cache ($HF_HUB_CACHE).")] = False,
        hub_cache: Annotated[Path | None, typer.Option(help="Lay it out in this hub cache instead.")] = None,
        as_json: JsonOption = False,
    ):
        from huggingface_hub import constants

        from mergescope.models.packaged import materialise

        cache = hub_cache or (Path(constants.HF_HUB_CACHE) if hub else None)
        result = materialise(name, directory, cache)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        **result.__dict__,
                        "directory": result.directory and str(result.directory),
                        "snapshot": result.snapshot and str(result.snapshot),
                    },
                    indent=1,
                )
            )
            return
        for where in (result.directory, result.snapshot):
            if where is not None:
                typer.echo(f"{result.repo_id} -> {where} ({len(result.files)} files, {result.seconds:.0f}s)")
        if result.snapshot is not None:
            typer.echo(f"Next: mergescope sweep --parents {result.repo_id} ... (offline, from {cache})")


def _packaged_model_commands() -> None:
    from mergescope.models.packaged import PACKAGED_MODELS

    for model in PACKAGED_MODELS.values():
        _packaged_model_command(model.name, model.summary)


_packaged_model_commands()


@models_app.command("parents")
@user_errors
def models_parents(
    directory: Annotated[
        Path, typer.Argument(help="The set's directory: DIR/instruct, DIR/cpt, DIR/cpt_sft, DIR/parents.json.")
    ],
    recipe: Annotated[str, typer.Option(help="default, or quick (a few steps: checks the pipeline only).")] = "default",
    seed: int = 0,
    as_json: JsonOption = False,
):
    """Build the seed paper's parents from SmolLM2-135M-Instruct on CPU (a CPT parent, a CPT-then-SFT parent), or
    reuse them when DIR holds a set of the same recipe key; print their dev scores and task-vector norms."""
    from mergescope.zoo.real import ensure_parents, recipe_named

    manifest = ensure_parents(directory, recipe_named(recipe), seed, log=None if as_json else print)
    if as_json:
        typer.echo(manifest.model_dump_json(indent=1))
        return
    for model in manifest.models:
        norm = "" if model.task_vector_norm is None else f", task vector {model.task_vector_norm:.4f} of the instruct's"
        scores = ", ".join(f"{name} {value:.3f}" for name, value in model.scores.items())
        typer.echo(f"{directory / model.path}: {scores}{norm}")
    typer.echo(f"recipe key {manifest.recipe_key}; built in {manifest.build_seconds:.0f} s")


@app.command()
@user_errors
@option_groups
def sweep(
    ctx: typer.Context,
    *,
    parents: ParentOptions,
    spec: SweepSpecOption = None,
    scoring: ScoringOptions,
    out: OutOption = None,
    evaluation: EvaluationOptions,
    checks: ModelChecks,
    judging: JudgeOptions,
    serving: ServingOptions,
):
    """Merge every candidate of a sweep, score it and its parents; rerunning resumes."""
    from mergescope.recipes.sweep import sweep as run_sweep

    settings = _sweep_settings(
        scoring,
        evaluation,
        judging,
        parents=parents.models(),
        base=parents.base,
        sweep=spec,
        out=out,
        allow_pickle=checks.allow_pickle,
        trust_remote_code=checks.trust_remote_code,
        allow_nonfinite=checks.allow_nonfinite,
        max_memory=checks.max_memory,
        executor=serving.executor,
        backend_options=serving.backend_options(ctx),
        executor_options=serving.executor_options(ctx),
    )
    result = run_sweep(settings)
    typer.echo(
        f"run {result.run_dir}: {result.n_evaluated} evaluated, {result.n_skipped} already done "
        f"({result.seconds:.0f}s). Next: mergescope report {result.run_dir}"
    )
    _fail_if_judging_incomplete(
        result.judging_incomplete,
        hint=f"rerun `mergescope judge {result.run_dir}` with the same judge options once the judge answers",
    )


def _sweep_settings(
    scoring: ScoringOptions, evaluation: EvaluationOptions, judging: JudgeEndpointOptions | None, **settings: Any
) -> SweepSettings:
    """The SweepSettings of the options every sweeping command takes (checked in this order), and `settings`."""
    from mergescope.recipes.sweep import SweepSettings

    checked = evaluation.settings()
    return SweepSettings(
        tasks=list(scoring.tasks or []),
        task_paths=list(scoring.task_path or []),
        backend=scoring.backend,
        limit=scoring.limit,
        evaluation=checked,
        dtype=evaluation.dtype,
        judge=judging.sweep_judge() if judging else None,
        **settings,
    )


def _fail_if_judging_incomplete(
    subjects: Sequence[str], hint: str = "rerun the same command once the judge answers", reason: str = ""
) -> None:
    """Exit 1 when some subjects' judging is incomplete, so that scripts see the gap; what was judged is kept."""
    from mergescope.errors import MergescopeError

    if subjects:
        raise MergescopeError(
            f"judging incomplete for {len(subjects)} subjects" + (f": {reason}" if reason else ""), hint=hint
        )


@app.command()
@user_errors
@option_groups
def search(
    ctx: typer.Context,
    *,
    search_options: SearchOptions,
    parents: ParentOptions,
    scoring: ScoringOptions,
    out: OutOption = None,
    evaluation: EvaluationOptions,
    allow_nonfinite: AllowNonfiniteOption = False,
    judging: JudgeEndpointOptions,
    executor: ExecutorOptions,
    as_json: JsonOption = False,
):
    """Search a space of merges with an Optuna sampler: every trial a candidate of the run; rerunning resumes."""
    from mergescope.recipes.search import search as run_search

    run = _sweep_settings(
        scoring,
        evaluation,
        judging,
        parents=parents.models(),
        base=parents.base,
        out=out,
        allow_nonfinite=allow_nonfinite,
        progress=not as_json,
        executor=executor.executor,
        executor_options=executor.executor_options(ctx),
    )
    result = run_search(search_options.settings(run))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run": str(result.run_dir),
                    "trials": result.n_trials,
                    "evaluated": result.n_evaluated,
                    "best_trial": result.best_trial,
                    "best_objective": result.best_objective,
                },
                indent=1,
            )
        )
    else:
        best = (
            f"best trial {result.best_trial} (objective {result.best_objective:.3f}, selection half)"
            if result.best_trial is not None
            else "the non-dominated trials are in the report"
        )
        typer.echo(
            f"run {result.run_dir}: {result.n_trials} trials, {result.n_evaluated} merged and scored now, "
            f"{best} ({result.seconds:.0f}s). Next: mergescope report {result.run_dir}"
        )
    _fail_if_judging_incomplete(result.judging_incomplete)


@app.command()
@user_errors
@option_groups
def study(
    *,
    pairs: Annotated[
        list[str] | None,
        typer.Option(
            "--pairs",
            help="A pair to study: [GROUP/]NAME=A,B[,BASE] (model directories or hub ids; repeatable), "
            "scored on --tasks.",
        ),
    ] = None,
    zoo: Annotated[
        list[str] | None,
        typer.Option(
            "--zoo",
            help="[GROUP=]DIR: study the pairs this zoo lists, on its tasks (repeatable; the group defaults "
            "to DIR's name); a DIR of `mergescope models parents` gives the real model's pairs, on chat tasks. "
            "Without --pairs and --zoo: the demo's .cache/zoo64 and .cache/zoo128.",
        ),
    ] = None,
    spec: SweepSpecOption = None,
    scoring: ScoringOptions,
    out: Annotated[Path, typer.Option(help="Study directory: one run per pair in OUT/pairs/.")] = Path("runs/study"),
    report: Annotated[Path | None, typer.Option(help="Report folder (default: OUT/report).")] = None,
    evaluation: EvaluationOptions,
    max_memory: MaxMemoryOption = None,
    allow_nonfinite: AllowNonfiniteOption = False,
    as_json: JsonOption = False,
):
    """Sweep several parent pairs and write one report of emergence against kinship; rerunning resumes."""
    from mergescope.recipes.demo import DEMO_ZOOS
    from mergescope.recipes.study import StudySettings, zoo_pairs
    from mergescope.recipes.study import study as run_study

    options = _sweep_settings(
        scoring,
        evaluation,
        None,
        parents=[],
        sweep=spec,
        max_memory=max_memory,
        allow_nonfinite=allow_nonfinite,
        progress=not as_json,
    )
    zoo_options = zoo or ([] if pairs else [f".cache/{name}" for name, _ in DEMO_ZOOS])
    study_pairs = [
        *(_study_pair(text) for text in pairs or []),
        *(pair for text in zoo_options for pair in zoo_pairs(*_zoo_option(text))),
    ]
    result = run_study(StudySettings(tuple(study_pairs), out=out, report=report, options=options))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=1))
    else:
        for outcome in result.pairs:
            typer.echo(
                f"pair {outcome.pair.key}: {outcome.status}, {outcome.n_evaluated} evaluated, "
                f"{outcome.n_skipped} already done ({outcome.run_dir})"
            )
        typer.echo(f"study report: {result.report} ({result.seconds:.0f}s)")
    _fail_if_judging_incomplete(result.judging_incomplete)


def _study_pair(text: str):
    """A StudyPair from `[GROUP/]NAME=A,B[,BASE]`; ConfigError when it does not read so."""
    from mergescope.errors import ConfigError
    from mergescope.recipes.study import StudyPair

    label, equals, models = text.partition("=")
    paths = models.split(",")
    if not equals or not label or len(paths) not in (2, 3) or not all(paths):
        raise ConfigError(
            f"--pairs {text!r}: expected [GROUP/]NAME=A,B[,BASE]",
            hint="e.g. --pairs arith_facts=zoo/models/arith,zoo/models/facts,zoo/models/base",
        )
    group, _, name = label.rpartition("/")
    return StudyPair(
        name=name,
        parents=(Path(paths[0]), Path(paths[1])),
        base=Path(paths[2]) if len(paths) == 3 else None,
        group=group,
    )


def _zoo_option(text: str) -> tuple[str, str | None]:
    """The zoo directory and group of `[GROUP=]DIR` (group None: the directory's name)."""
    group, equals, directory = text.partition("=")
    return (directory, group) if equals else (text, None)


@app.command()
@user_errors
@option_groups
def judge(
    run: RunArgument,
    *,
    judging: JudgeOptions,
    samples: Annotated[int, typer.Option(min=1, help="Judge samples per judgment (their spread is kept).")] = 1,
    temperature: Annotated[float, typer.Option(help="Judge sampling temperature.")] = 0.0,
    pairwise: Annotated[
        bool, typer.Option(help="Also compare each candidate with each parent, in both orders.")
    ] = True,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one judge reply.")] = 60.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries (with exponential backoff) of a failed request.")] = 4,
    judge_reply_format: Annotated[
        Literal["auto", "structured", "free_text"],
        typer.Option(
            help="Ask the judge for replies constrained to the rubric's JSON schema (structured), for free text, or "
            "(auto) structured where its server takes response_format."
        ),
    ] = "auto",
    backend: Annotated[str | None, typer.Option(help="Backend that generates missing answers.")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype", help="Generate missing answers in this dtype (default: the one the run was served in)."
        ),
    ] = None,
    as_json: JsonOption = False,
):
    """(Re)judge a run's finished subjects with an LLM judge; cached judgments cost nothing."""
    from mergescope.errors import ConfigError
    from mergescope.scoring.judge_run import JudgeSettings, judge_run

    if not (judging.judge_url and judging.judge_model):
        raise ConfigError(
            "judging needs --judge-url and --judge-model", hint="e.g. --judge-url http://localhost:8000/v1"
        )
    settings = JudgeSettings(
        url=judging.judge_url,
        model=judging.judge_model,
        rubrics=tuple(str(r) for r in judging.rubric or ()),
        api_key_env=judging.judge_api_key_env,
        samples=samples,
        temperature=temperature,
        pairwise=pairwise,
        concurrency=concurrency,
        timeout_s=timeout,
        max_retries=retries,
        logprobs=judging.judge_logprobs,
        max_tokens=judging.judge_max_tokens,
        reply_format=judge_reply_format,
    )
    result = judge_run(run, settings, backend, dtype, progress=not as_json)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run": str(result.run_dir),
                    "subjects": result.n_subjects,
                    "requests_sent": result.requests_sent,
                    "incomplete": result.incomplete,
                    "replies": [dataclasses.asdict(count) for count in result.reply_counts],
                },
                indent=1,
            )
        )
    else:
        state = f"incomplete for {len(result.incomplete)} subjects" if result.incomplete else "complete"
        typer.echo(
            f"judged {result.n_subjects} subjects of {result.run_dir} ({result.requests_sent} requests): "
            f"judging {state}"
        )
        for count in result.reply_counts:
            typer.echo(
                f"  {count.rubric}: {count.unreadable} of {count.replies} grading replies unreadable "
                f"({count.reply_format or 'reply format not recorded'})"
            )
    _fail_if_judging_incomplete(
        result.incomplete,
        reason=result.failure or "some judgments are missing",
        hint="rerun this command once the judge answers; finished judgments are kept",
    )


@app.command()
@user_errors
def report(run: RunArgument, out: Annotated[Path | None, typer.Option(help="Report folder.")] = None):
    """Write the self-contained HTML report of a run; print its path."""
    from mergescope.report import write_report

    typer.echo(str(write_report(run, out)))


@app.command()
@user_errors
def results(run: RunArgument, as_json: JsonOption = False):
    """Print a run's candidate/score table."""
    from mergescope.runs.store import ResultsStore

    store = ResultsStore.of_run(run)
    rows = store.score_table()
    store.close()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "candidate_id": row.subject_id,
                        "kind": row.kind,
                        "label": row.label,
                        "method": row.method,
                        "parameters": row.parameters,
                        "seed": row.seed,
                        "task": row.task,
                        "metric": row.metric,
                        "value": row.value,
                        "stderr": row.stderr,
                    }
                    for row in rows
                ],
                indent=1,
            )
        )
        return
    for row in rows:
        stderr = f" ± {row.stderr:.3f}" if row.stderr is not None else ""
        typer.echo(f"{row.kind:<9} {row.label:<28} {row.task:<16} {row.metric:<12} {row.value:.3f}{stderr}")


@app.command()
@user_errors
@option_groups
def candidates(
    spec: Annotated[Path, typer.Argument(help="Sweep spec: a YAML file, or a shipped spec's name such as default.")],
    parents: ParentOptions,
    export: Annotated[Path | None, typer.Option(help="Write one plain mergekit YAML per candidate here.")] = None,
    as_json: JsonOption = False,
):
    """Plan a sweep: how many candidates a spec gives over these parents, and their ids (nothing is merged)."""
    from mergescope.merging.candidates import plan_candidates

    plan = plan_candidates(spec, parents.models(), parents.base, export)
    if as_json:
        typer.echo(json.dumps(plan.rows(), indent=1))
        return
    typer.echo(f"{plan.spec}: {len(plan.candidates)} candidates of {', '.join(p.name for p in plan.parents.parents)}")
    for row in plan.rows():
        typer.echo(f"  {row['id']}  {row['label']}" + (f"  -> {row['file']}" if row["file"] else ""))


@app.command()
@user_errors
def merge(
    config: Annotated[str, typer.Argument(help="A mergekit YAML file, or a candidate id with --run.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the merged model directory.")],
    run: Annotated[Path | None, typer.Option(help="The run whose candidate CONFIG names.")] = None,
):
    """Merge one mergekit config (or one candidate of a run) into a loadable model directory, in process."""
    from mergescope.merging.merge import merge_file

    typer.echo(str(merge_file(config, out_dir, run)))


@app.command()
@user_errors
def export(
    candidate: Annotated[str, typer.Argument(help="The candidate's id in the run (or a unique prefix of it).")],
    out_dir: Annotated[Path, typer.Argument(help="A new (or empty) directory for the model.")],
    run: Annotated[Path, typer.Option(help="The run the candidate belongs to (the --out of a sweep).")],
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then upload it to this Hub repo (org/name, created private).")
    ] = None,
    as_json: JsonOption = False,
):
    """Write one candidate of a run as a standalone model directory: weights, config, tokenizer, card with its
    scores."""
    from mergescope.merging.export import export_candidate

    result = export_candidate(candidate, run, out_dir, push_to_hub)
    if as_json:
        typer.echo(json.dumps({**result.__dict__, "out": str(result.out)}, indent=1))
        return
    typer.echo(
        f"{result.label} ({result.candidate_id}) -> {result.out}" + (f" -> {result.hub_url}" if result.hub_url else "")
    )


@app.command()
@user_errors
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="YAML files or folders (default: the shipped sweep specs, search spaces and rubrics)."),
    ] = None,
    as_json: JsonOption = False,
):
    """Check every sweep spec (and other registered YAML) and report all problems at once; exit 2 on any."""
    from mergescope.recipes.validate import validate as validate_files

    report = validate_files(paths)
    if as_json:
        typer.echo(json.dumps({"files": [str(f) for f in report.files], "problems": list(report.problems)}, indent=1))
    else:
        for problem in report.problems:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(f"{len(report.files)} files checked, {len(report.problems)} problems")
    if not report.ok:
        raise typer.Exit(2)


@app.command()
@user_errors
def demo(
    cache: Annotated[
        Path, typer.Option(help="Where the zoos and the real model's parents are built (zoo64/, zoo128/, smollm2/).")
    ] = Path(".cache"),
    real: Annotated[
        bool,
        typer.Option(help="Then the real model's pairs (SmolLM2-135M-Instruct's parents: ~25 min more on 2 cores)."),
    ] = True,
):
    """Build the zoo at two widths (once per recipe), study both zoos' pairs with the shipped study spec, write the
    report; then build the real model's parents and add their pairs to the same study. Rerunning resumes."""
    from mergescope.recipes.demo import run_demo

    typer.echo(f"report: {run_demo(cache, real=real, say=typer.echo).report.resolve()}")


@app.command()
@user_errors
def emergence(
    run: RunArgument,
    as_json: JsonOption = False,
    alpha: Annotated[float, typer.Option(help="Significance level of the labels.")] = 0.05,
    correction: Annotated[str, typer.Option(help="Correction across a sweep's candidates: holm or bh.")] = "holm",
    split: Annotated[str, typer.Option(help="Items the figures use: all, selection-reporting or cross-fit.")] = "all",
):
    """Per candidate and task: gains over the parents, 0->1 / 1->0 items, McNemar p, adjusted p, label."""
    from mergescope.analysis.emergence import emergence as run_emergence

    report = run_emergence(run, alpha=alpha, correction=correction, split=split)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
        return
    typer.echo(
        f"{'task':<16} {'candidate':<26} {'split':<11} {'n':>4} {'score':>6} {'vs best':>8} {'vs mean':>8} "
        f"{'vs interp':>9} {'0->1':>5} {'1->0':>5} {'p best':>8} {'p adj':>8}  label"
    )
    for row in report.rows:
        split_name = f"{row.split}({row.half})" if row.half else row.split
        counts = (
            f"{row.gained_vs_best:>5} {row.lost_vs_best:>5}" if row.gained_vs_best is not None else f"{'-':>5} {'-':>5}"
        )
        gains = row.gains
        typer.echo(
            f"{row.task:<16} {row.candidate[:26]:<26} {split_name:<11} {row.n_items:>4} {gains.score:>6.3f} "
            f"{gains.gain_over_best:>+8.3f} {gains.gain_over_mean:>+8.3f} "
            f"{gains.gain_over_interpolation:>+9.3f} "
            f"{counts} {row.p_vs_best:>8.2g} {row.p_adjusted:>8.2g}  {row.label}{' *selected' if row.selected else ''}"
        )
    typer.echo(
        f"p best: one-sided paired test against the best parent; p adj: intersection-union p against every "
        f"parent, {report.correction}-adjusted across the candidates; label at alpha {report.alpha}"
    )
    for problem in report.problems:
        typer.echo(f"note: {problem}", err=True)


@app.command()
@user_errors
def kinship(
    models: Annotated[list[str], typer.Argument(help="Two or more model directories (safetensors) or hub ids.")],
    base: Annotated[str | None, typer.Option(help="Their shared base: compare task vectors (model - base).")] = None,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Also print per-layer figures.")] = False,
    as_json: JsonOption = False,
):
    """Print how related models are: Pearson, cosine and Euclidean distance of their task vectors."""
    from mergescope.analysis.kinship import kinship as compute_kinship

    report = compute_kinship(models, base)
    typer.echo(json.dumps(report.to_json(per_layer), indent=1) if as_json else report.to_text(per_layer))


@app.command()
@user_errors
def serve(
    target: Annotated[
        str, typer.Argument(help="A model directory, a hub id, or a subject id of --run (candidate or parent).")
    ],
    run: Annotated[Path | None, typer.Option(help="The run whose candidate id TARGET names.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the OpenAI-compatible endpoint.")] = 8000,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="Serve in this dtype (default: the one --run was served in, else float32)."),
    ] = None,
):
    """Serve one candidate or parent on an OpenAI-compatible endpoint through vLLM's server."""
    from mergescope.serving.server import serve as run_server

    raise typer.Exit(run_server(target, run, host, port, dtype))


def main() -> None:
    """The console entry point (`mergescope`, `python -m mergescope`)."""
    try:
        app(prog_name="mergescope")
    finally:
        # At exit CPython's last garbage collections walk every object torch, transformers and lm-eval made:
        # ~1.4 s per command. Nothing in them needs collecting (the store and files are closed by now), so
        # freezing them makes exit take 0.2 s. Only here, never in-process (tests), where it would keep garbage.
        # Not with triton loaded (torch's compiler stack, vLLM): its nanobind bindings print every object a
        # freeze keeps alive at exit as a "leak".
        if "triton" not in sys.modules:
            gc.freeze()
