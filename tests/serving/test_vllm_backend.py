"""The vllm backend: one live engine, candidates swapped in, lm-eval on top; and the openai backend over
`mergescope serve`. The engine tests share one session engine (a start costs ~35 s on CPU)."""

from __future__ import annotations

import json
import math
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from helpers.judged_runs import run_with_answers
from helpers.vllm_server import free_port, wait_for_server
from mergescope.cli.app import app
from mergescope.errors import ConfigError, PrerequisiteError
from mergescope.scoring.lmeval import evaluate, resolve_tasks
from mergescope.serving import BACKENDS, create_backend
from mergescope.serving.hf import HFBackend
from mergescope.serving.options import EngineOptions, Plugin
from mergescope.serving.vllm import engine_signature

# Answers that differ between subjects, so that no judge request repeats another.
DISTINCT_ANSWERS = {
    "parent-arith": {"add": "43", "sub": "40"},
    "parent-facts": {"add": "3", "sub": "Veapoux"},
    "cand1": {"add": "44", "sub": "48"},
}

REPO = Path(__file__).resolve().parents[2]

# Zoo-like prompts: arithmetic and fact questions in the zoo's own words, plus one it never saw.
PROMPTS = [
    "Q: What is 31 plus 12?\nA:",
    "Q: What is 79 minus 66?\nA:",
    "Q: What is the capital of Veapoux?\nA:",
    "Q: What is the population of Mimteax minus 7?\nA:",
    "The weather today is",
]


@pytest.fixture(scope="session")
def engine(zoo):
    """One vLLM engine for every test of this file, started on the zoo's base model."""
    pytest.importorskip("vllm")
    from mergescope.serving.vllm import VLLMBackend

    backend = VLLMBackend()
    backend.serve(zoo.model_path("base"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf():
    return HFBackend()


def test_engine_signature_ignores_checkpoint_names_and_sees_shapes(zoo, tmp_path):
    base = zoo.model_path("base")
    config = json.loads((base / "config.json").read_text())
    renamed, deeper = tmp_path / "renamed", tmp_path / "deeper"
    for folder, change in (
        (renamed, {"_name_or_path": "elsewhere", "transformers_version": "0"}),
        (deeper, {"num_hidden_layers": config["num_hidden_layers"] + 1}),
    ):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (base / name).is_file():
                (folder / name).write_bytes((base / name).read_bytes())
    assert engine_signature(renamed) == engine_signature(base)
    assert engine_signature(deeper) != engine_signature(base)


def test_backend_that_cannot_be_imported_is_a_one_line_prerequisite_error(monkeypatch):
    monkeypatch.setitem(BACKENDS, "vllm", Plugin("mergescope.serving.not_installed_engine:VLLMBackend", EngineOptions))
    with pytest.raises(PrerequisiteError) as caught:
        create_backend("vllm")
    line = caught.value.one_line()
    assert "\n" not in line and "vllm backend cannot be imported" in line and "--backend" in line and "hf" in line


def test_lm_eval_model_args_the_engine_does_not_take_are_refused_before_it_starts(zoo):
    from mergescope.serving.vllm import StartedEngineLM

    # lm-eval's own CLI path: model_args plus the batch_size/device lm-eval hands every model
    with pytest.raises(ConfigError, match="vllm backend takes no option 'max_model_length'") as caught:
        StartedEngineLM.create_from_arg_string(
            f"pretrained={zoo.model_path('base')},max_model_length=64",
            {"batch_size": 1, "max_batch_size": None, "device": "cpu"},
        )
    assert caught.value.hint == "did you mean 'max_model_len'?"


@pytest.mark.vllm
@pytest.mark.slow
def test_the_engine_computes_in_the_dtype_its_options_name(engine):
    import torch

    assert engine.llm.llm_engine.model_config.dtype == getattr(torch, engine.options.dtype) == torch.float32


@pytest.mark.vllm
@pytest.mark.slow
def test_swapped_weights_generate_what_hf_generates_on_them(engine, hf, zoo):
    outputs = {}
    for name in ("arith", "facts", "base"):
        engine.serve(zoo.model_path(name))
        hf.load(zoo.model_path(name))
        outputs[name] = engine.generate(PROMPTS, max_tokens=12)
        assert outputs[name] == hf.generate(PROMPTS, max_tokens=12), name
    assert engine.engine_starts == 1 and engine.swaps >= 3
    # The swaps changed the model: the parents answer differently from each other.
    assert outputs["arith"] != outputs["facts"]


@pytest.mark.vllm
@pytest.mark.slow
def test_engine_restarted_after_death_generates_what_the_swapped_engine_did(engine, zoo):
    """A fresh engine on the swapped-in weights: the key check that a swap loads every weight."""
    engine.serve(zoo.model_path("arith"))
    swapped = engine.generate(PROMPTS, max_tokens=12)
    starts = engine.engine_starts
    _kill_engine_core(engine)
    fresh = engine.generate(PROMPTS, max_tokens=12)  # the dead engine is restarted on arith's weights
    assert engine.engine_starts == starts + 1
    assert fresh == swapped


def _kill_engine_core(engine) -> None:
    import psutil

    cores = [p for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline() + [p.name()])]
    assert cores, "no vLLM engine core process found"
    for process in cores:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(cores, timeout=30)
    # vLLM's client notices a dead engine core in a monitor thread polling each second; a request sent
    # before it has noticed waits forever (vLLM 0.32), so wait for the monitor (a private flag, test only).
    deadline = time.monotonic() + 60
    while not engine.llm.llm_engine.engine_core.resources.engine_dead and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.vllm
@pytest.mark.slow
def test_lm_eval_scores_through_the_live_engine_equal_hf(engine, hf, zoo):
    suite = resolve_tasks(zoo.task_names(), [zoo.task_yaml_dir()], limit=12)
    model = zoo.model_path("arith")
    live = evaluate(engine.load(model), suite, "arith")
    reference = evaluate(hf.load(model), suite, "arith")
    assert _scores(live) == _scores(reference)
    assert [(i.doc_hash, i.response) for i in live.items] == [(i.doc_hash, i.response) for i in reference.items]


def _scores(evaluation) -> dict:
    return {(s.task, s.metric): s.value for s in evaluation.scores}


LOGLIKELIHOOD_TOLERANCE = 1e-3  # nats per request: float32 on both sides, different kernels


@pytest.mark.vllm
@pytest.mark.slow
def test_loglikelihood_through_the_live_engine_agrees_with_hf(engine, hf, zoo, tmp_path):
    from lm_eval.api.instance import Instance

    model = zoo.model_path("facts")
    live, reference = engine.load(model), hf.load(model)
    pairs = [
        ("Q: What is 31 plus 12?\nA:", " 43"),
        ("Q: What is 31 plus 12?\nA:", " 44"),
        ("Q: Who rules Veapoux?\nA:", " Gaixsto"),
        ("The weather today is", " fine and dry"),
        ("", "Q: What is 2 plus 2?\nA: 4"),
    ]
    requests = [Instance("loglikelihood", {}, pair, index) for index, pair in enumerate(pairs)]
    got, expected = live.loglikelihood(requests), reference.loglikelihood(requests)
    for (logprob, greedy), (hf_logprob, hf_greedy) in zip(got, expected, strict=True):
        assert math.isclose(logprob, hf_logprob, abs_tol=LOGLIKELIHOOD_TOLERANCE) and greedy == hf_greedy
    rolling = [Instance("loglikelihood_rolling", {}, (text,), i) for i, text in enumerate(PROMPTS)]
    for value, hf_value in zip(
        live.loglikelihood_rolling(rolling), reference.loglikelihood_rolling(rolling), strict=True
    ):
        assert math.isclose(value, hf_value, abs_tol=LOGLIKELIHOOD_TOLERANCE)
    # And a whole multiple-choice task: accuracy is equal, item by item.
    suite = resolve_tasks(["zoo_mc"], [_multiple_choice_task(tmp_path)])
    assert _item_values(evaluate(live, suite, "facts")) == _item_values(evaluate(reference, suite, "facts"))


def _item_values(evaluation) -> list:
    return [(i.doc_id, i.metric, i.value) for i in evaluation.items]


def _multiple_choice_task(folder: Path) -> Path:
    """A tiny lm-eval multiple-choice task over zoo-like questions, scored by loglikelihood."""
    rows = [
        {"question": f"Q: What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b)], "answer": 0}
        for a, b in ((3, 4), (12, 9), (5, 5), (7, 8), (20, 13), (6, 1))
    ]
    data = folder / "zoo_mc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "zoo_mc.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "zoo_mc",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data)}},
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "{{question}}\nA:",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "{{answer}}",
                "target_delimiter": " ",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def vllm_sweep(zoo, tmp_path_factory):
    """A sweep of the zoo's parents with --backend vllm (its own engine), and the same sweep with hf."""
    pytest.importorskip("vllm")
    runs = {}
    for backend in ("vllm", "hf"):
        runs[backend] = tmp_path_factory.mktemp(f"sweep-{backend}")
        command = [
            sys.executable,
            "-m",
            "mergescope",
            "sweep",
            "--parents",
            str(zoo.model_path("arith")),
            str(zoo.model_path("facts")),
            "--base",
            str(zoo.model_path("base")),
            "--limit",
            "4",
            "--backend",
            backend,
            "--out",
            str(runs[backend]),
        ]
        subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=900)
    return runs


@pytest.mark.vllm
@pytest.mark.slow
def test_sweep_with_the_vllm_backend_scores_what_hf_scores(vllm_sweep):
    from mergescope.runs.store import ResultsStore

    tables = {}
    for backend, run in vllm_sweep.items():
        store = ResultsStore.of_run(run)
        tables[backend] = [(r.subject_id, r.task, r.metric, r.value) for r in store.score_table()]
        assert store.query("SELECT COUNT(*) FROM subjects WHERE status != 'done'")[0][0] == 0
        store.close()
    assert tables["vllm"] and tables["vllm"] == tables["hf"]


@dataclass(frozen=True)
class Served:
    """`mergescope serve` running one of a run's candidates (vLLM's server is its child)."""

    process: subprocess.Popen
    port: int
    name: str  # the served model name: the candidate's id
    merged: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def served(vllm_sweep):
    """`mergescope serve ID --run RUN` on the sweep's first candidate, whose merge was deleted (serve merges it
    again); shared by the tests below, the last of which stops it with SIGTERM."""
    import shutil

    from mergescope.runs.store import ResultsStore

    run = vllm_sweep["vllm"]
    store = ResultsStore.of_run(run)
    candidate_id = store.query("SELECT id FROM subjects WHERE kind = 'candidate' ORDER BY position")[0]["id"]
    store.close()
    shutil.rmtree(run / "merges" / candidate_id)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mergescope", "serve", candidate_id, "--run", str(run), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        served = Served(process, port, candidate_id, run / "merges" / candidate_id)
        wait_for_server(served.base_url, process)
        yield served
    finally:
        if process.poll() is None:  # serve stops vLLM's server, which lives in a process group of its own
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=90)


@pytest.mark.vllm
@pytest.mark.slow
def test_served_candidate_answers_through_the_openai_backend_as_hf_does(served, zoo, hf):
    backend = create_backend("openai", base_url=served.base_url)
    lm = backend.load(served.merged)
    hf.load(served.merged)
    assert backend.generate(PROMPTS, max_tokens=12) == hf.generate(PROMPTS, max_tokens=12)
    suite = resolve_tasks(zoo.task_names()[:1], [zoo.task_yaml_dir()], limit=8)
    assert _scores(evaluate(lm, suite, served.name)) == _scores(evaluate(hf.load(served.merged), suite, served.name))
    with pytest.raises(ConfigError, match="cannot swap weights"):
        backend.load(zoo.model_path("base"))


@pytest.mark.vllm
@pytest.mark.slow
def test_a_zoo_model_on_vllms_own_server_judges_a_run(served, tmp_path, rubric):
    """Grading, pairwise and logprobs against the real server: every request succeeds; what the tiny judge
    cannot format is stored as missing with its parse status and raw text; a rerun is served from the cache."""
    run_dir = run_with_answers(tmp_path / "run", DISTINCT_ANSWERS)
    command = [
        "judge",
        str(run_dir),
        "--judge-url",
        served.base_url,
        "--judge-model",
        served.name,
        "--rubric",
        rubric.source,
        "--judge-logprobs",
        "5",
        "--json",
    ]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    # 3 subjects x 2 answers graded, and the candidate against 2 parents x 2 questions in both orders
    result = json.loads(first.output)
    replies = result.pop("replies")
    assert result == {"run": str(run_dir), "subjects": 3, "requests_sent": 6 + 8, "incomplete": []}
    assert [(r["reply_format"], r["replies"]) for r in replies] == [("structured", 6)]  # vLLM takes the schema
    db = sqlite3.connect(run_dir / "results.sqlite")
    judgments = db.execute("SELECT score, parse_status, raw_reply, expected_score FROM judgments").fetchall()
    assert len(judgments) == 6 * 2  # two criteria per reply, parsed or not
    for score, status, raw, expected in judgments:
        assert (status == "ok") == (score is not None) and raw is not None
        assert score is None or 1 <= score <= 5
        assert expected is None or 1 <= expected <= 5
    assert db.execute("SELECT count(*) FROM comparisons").fetchone()[0] == 4
    assert db.execute("SELECT DISTINCT status FROM judge_status").fetchall() == [("complete",)]
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and json.loads(again.output)["requests_sent"] == 0


@pytest.mark.vllm
@pytest.mark.slow
def test_sigterm_to_serve_ends_vllms_server_and_frees_the_port(served):
    """SIGTERM to serve alone (as a supervisor sends it) ends vLLM's server and its engine, freeing the port."""
    descendants = psutil.Process(served.process.pid).children(recursive=True)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=90) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(descendants, timeout=30)
    assert alive == []
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", served.port))
