"""The `mergescope` command line: each command parses options and calls one library function."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

app = typer.Typer(help="Sweep LLM merges, score them, and find what emerges.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
zoo_app = typer.Typer(help="The tiny trained model zoo used by tests and the demo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RunArgument = Annotated[Path, typer.Argument(help="A run directory (the --out of a sweep).")]


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
):
    """Train the zoo's tokenizer, base, parents and stranger on CPU; write DIR/zoo.json."""
    from mergescope.zoo import build_zoo

    manifest = build_zoo(directory, seed=seed)
    typer.echo(f"zoo written to {directory}/zoo.json in {manifest.build_seconds:.0f}s")


@app.command()
@user_errors
def sweep(
    parents: Annotated[Optional[list[str]], typer.Option("--parents", help="Parent model directories.")] = None,
    extra_parents: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None,
    base: Annotated[Optional[str], typer.Option(help="The shared base model the parents were tuned from.")] = None,
    spec: Annotated[Optional[Path], typer.Option("--sweep", help="Sweep spec YAML (default: sweeps/default.yaml).")] = None,
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help="lm-eval task names.")] = None,
    task_path: Annotated[Optional[list[Path]], typer.Option(help="Folders of extra lm-eval task YAMLs.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/SPEC_A_B).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Serving backend: hf, vllm, openai.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N items of each task.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickled (.bin) checkpoints.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from config.json auto_map.")] = False,
):
    """Merge every candidate of a sweep, score it and its parents; rerunning resumes."""
    from mergescope.sweep import SweepSettings
    from mergescope.sweep import sweep as run_sweep

    # `--parents A B` is accepted as the issue writes it: extra positional words are more parents.
    settings = SweepSettings(
        parents=[*(parents or []), *(extra_parents or [])], base=base, sweep=spec, tasks=list(tasks or []),
        task_paths=list(task_path or []), out=out, backend=backend, limit=limit,
        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
    )
    result = run_sweep(settings)
    typer.echo(f"run {result.run_dir}: {result.n_evaluated} evaluated, {result.n_skipped} already done "
               f"({result.seconds:.0f}s). Next: mergescope report {result.run_dir}")


@app.command()
@user_errors
def report(run: RunArgument, out: Annotated[Optional[Path], typer.Option(help="Report folder.")] = None):
    """Write the self-contained HTML report of a run; print its path."""
    from mergescope.report import write_report

    typer.echo(str(write_report(run, out)))


@app.command()
@user_errors
def results(run: RunArgument, as_json: JsonOption = False):
    """Print a run's candidate/score table."""
    from mergescope.store import ResultsStore

    store = ResultsStore.of_run(run)
    rows = store.score_table()
    store.close()
    if as_json:
        keys = ("id", "kind", "label", "method", "parameters", "seed", "task", "metric", "value", "stderr")
        typer.echo(json.dumps([{("candidate_id" if k == "id" else k): row[k] for k in keys} for row in rows], indent=1))
        return
    for row in rows:
        stderr = f" ± {row['stderr']:.3f}" if row["stderr"] is not None else ""
        typer.echo(f"{row['kind']:<9} {row['label']:<28} {row['task']:<16} {row['metric']:<12} {row['value']:.3f}{stderr}")


@app.command()
@user_errors
def demo(zoo_dir: Annotated[Path, typer.Option(help="Where the zoo is built.")] = Path(".cache/zoo")):
    """Build the zoo (once), sweep its two parents with the default spec, write the report."""
    from mergescope.demo import run_demo

    report_path = run_demo(zoo_dir)
    typer.echo(f"report: {report_path.resolve()}")


def main() -> None:  # pragma: no cover - console entry point for `python -m mergescope`
    app(prog_name="mergescope")
    sys.exit(0)
