"""Instruct evaluation settings (config.EvalSettings: --num-fewshot, --apply-chat-template ...) and the served dtype.

The reference for the settings is lm-eval's own CLI (`python -m lm_eval`) in a subprocess, on the very model
directory the sweep merged: scores and per-item prompts must be equal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import fake_runs
from mergescope.errors import ConfigError
from mergescope.merging.spec import EvalSettings, eval_settings
from mergescope.recipes.sweep import SweepSettings, sweep
from mergescope.runs.directory import read_run_meta, write_run_meta
from mergescope.runs.store import ResultsStore
from mergescope.serving.options import EngineOptions, HFOptions
from mergescope.zoo.tokenizer import CHAT_TEMPLATE

# The zoo's template with a visible user marker, so that a prompt shows whether a template was applied (the
# zoo's own renders a chat of few-shot turns exactly as the plain few-shot prompt).
MARKED_TEMPLATE = CHAT_TEMPLATE.replace("{{ message['content'] }}", "{{ 'User: ' + message['content'] }}")
SETTINGS = dict(num_fewshot=2, apply_chat_template=True, system_instruction="Answer with a number.")
LIMIT = 10


@pytest.fixture(scope="module")
def chat_parents(zoo, tmp_path_factory) -> list[Path]:
    """Copies of the zoo's arith and facts models whose tokenizers carry the marked chat template."""
    folder = tmp_path_factory.mktemp("chat-parents")
    copies = []
    for name in ("arith", "facts"):
        copy = folder / name
        shutil.copytree(zoo.model_path(name), copy)
        assert (copy / "chat_template.jinja").is_file()  # the zoo's own template, replaced here
        (copy / "chat_template.jinja").write_text(MARKED_TEMPLATE)
        copies.append(copy)
    return copies


@pytest.fixture(scope="module")
def chat_run(chat_parents, zoo, tmp_path_factory) -> tuple[Path, SweepSettings]:
    """A one-candidate sweep (linear 0.5) of the marked parents on 10 arithmetic items, 2-shot, chat-templated."""
    folder = tmp_path_factory.mktemp("chat-run")
    spec = folder / "spec.yaml"
    spec.write_text("name: one_linear\nmethods:\n  - method: linear\n    per_parent: {weight: 0.5}\n")
    settings = SweepSettings(
        parents=[str(p) for p in chat_parents],
        sweep=spec,
        tasks=["zoo_arith"],
        task_paths=[zoo.task_yaml_dir()],
        out=folder / "run",
        backend="hf",
        limit=LIMIT,
        progress=False,
        evaluation=EvalSettings(**SETTINGS),
    )
    sweep(settings)
    return folder / "run", settings


def lm_eval_cli(model: Path, task_dir: Path, out: Path) -> tuple[float, dict[int, tuple[str, str, float]]]:
    """The `lm_eval` CLI's exact_match and {doc_id: (prompt, response, exact_match)} on `model` with SETTINGS."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the hf backend serves (HFOptions "auto")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model},dtype=float32",
            "--tasks",
            "zoo_arith",
            "--include_path",
            str(task_dir),
            "--apply_chat_template",
            "--num_fewshot",
            "2",
            "--system_instruction",
            SETTINGS["system_instruction"],
            "--limit",
            str(LIMIT),
            "--log_samples",
            "--output_path",
            str(out),
            "--device",
            device,
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in next(out.rglob("samples_zoo_arith_*.jsonl")).read_text().splitlines()]
    items = {
        s["doc_id"]: (s["arguments"]["gen_args_0"]["arg_0"], s["filtered_resps"][0], float(s["exact_match"]))
        for s in samples
    }
    return results["results"]["zoo_arith"]["exact_match,strip"], items


@pytest.mark.slow  # the lm_eval CLI indexes all of its built-in tasks first: ~45-75 s here
def test_chat_templated_few_shot_scores_and_prompts_equal_lm_eval_cli(chat_run, zoo, tmp_path):
    run_dir, _ = chat_run
    store = ResultsStore.of_run(run_dir)
    candidate = store.query("SELECT id FROM subjects WHERE kind = 'candidate'")[0]["id"]
    score = store.query(
        "SELECT value FROM scores WHERE subject_id = ? AND task = 'zoo_arith' AND metric = 'exact_match,strip'",
        candidate,
    )[0]["value"]
    items = {
        row["doc_id"]: (row["prompt"], row["response"], row["value"])
        for row in store.query(
            "SELECT doc_id, prompt, response, value FROM items WHERE subject_id = ? AND task = 'zoo_arith'", candidate
        )
    }
    store.close()
    cli_score, cli_items = lm_eval_cli(run_dir / "merges" / candidate, zoo.task_yaml_dir(), tmp_path / "cli")
    assert items == cli_items  # prompts, generated answers and their exact-match values, item by item
    assert score == pytest.approx(cli_score)
    assert len({response for _, response, _ in items.values()}) > 1  # the answers say something
    prompt = items[0][0]
    # the system turn, two user/assistant shots and the question, each user turn marked by the template
    assert prompt.startswith("Answer with a number.\n\nUser: Q: ") and prompt.count("User: Q: ") == 3, prompt
    meta = read_run_meta(run_dir)
    assert meta.evaluation == EvalSettings(**SETTINGS) and meta.evaluation.fewshot_as_multiturn


def test_a_resume_with_other_settings_or_dtype_is_refused(chat_run):
    run_dir, settings = chat_run
    other = EvalSettings(**{**SETTINGS, "num_fewshot": 3})
    with pytest.raises(
        ConfigError, match="was scored with --num-fewshot 2 --apply-chat-template.* not --num-fewshot 3"
    ):
        sweep(SweepSettings(**{**settings.__dict__, "evaluation": other}))
    with pytest.raises(ConfigError, match="was served in float32, not bfloat16"):
        sweep(SweepSettings(**{**settings.__dict__, "dtype": "bfloat16"}))
    # only the batch size may change: it decides how many requests are computed at once, not what they are
    again = sweep(SweepSettings(**{**settings.__dict__, "evaluation": EvalSettings(**SETTINGS, batch_size=7)}))
    assert again.n_evaluated == 0


def test_apply_chat_template_needs_a_template_in_every_model(chat_parents, zoo, tmp_path):
    plain = tmp_path / "facts-plain"
    shutil.copytree(chat_parents[1], plain)
    (plain / "chat_template.jinja").unlink()
    settings = SweepSettings(
        parents=[str(chat_parents[0]), str(plain)],
        tasks=["zoo_arith"],
        task_paths=[zoo.task_yaml_dir()],
        out=tmp_path / "run",
        backend="hf",
        evaluation=EvalSettings(apply_chat_template=True),
        progress=False,
    )
    with pytest.raises(ConfigError, match="facts-plain .* has no chat template"):
        sweep(settings)
    named = SweepSettings(
        **{
            **settings.__dict__,
            "parents": [str(p) for p in chat_parents],
            "evaluation": EvalSettings(apply_chat_template="tool_use"),
        }
    )
    with pytest.raises(ConfigError, match="no chat template named 'tool_use'"):
        sweep(named)
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_eval_settings_follow_lm_eval_cli_rules():
    assert EvalSettings(apply_chat_template=True).fewshot_as_multiturn  # lm-eval's CLI: on with a template
    assert not EvalSettings(apply_chat_template=True, fewshot_as_multiturn=False).fewshot_as_multiturn
    assert eval_settings(gen_kwargs="temperature=0,max_gen_toks=32,do_sample=False").gen_kwargs == {
        "temperature": 0,
        "max_gen_toks": 32,
        "do_sample": False,
    }
    with pytest.raises(ConfigError, match="--fewshot-as-multiturn needs --apply-chat-template"):
        eval_settings(fewshot_as_multiturn=True)
    with pytest.raises(ConfigError, match="--num-fewshot -1: .*greater than or equal to 0"):
        eval_settings(num_fewshot=-1)


def test_the_vllm_engine_renders_chats_as_lm_eval_hf_model(chat_parents):
    """LiveEngineLM (lm-eval's view of the live engine) applies the template as HFLM does, prefill included."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mergescope.serving.live_lm import LiveEngineLM

    tokenizer = AutoTokenizer.from_pretrained(chat_parents[0])
    engine_lm = LiveEngineLM(SimpleNamespace(tokenizer=tokenizer, options=EngineOptions()))  # no engine needed
    hf_lm = HFLM(pretrained=AutoModelForCausalLM.from_pretrained(chat_parents[0]), tokenizer=tokenizer, device="cpu")
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: 1 + 1 = ?\nA:"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Q: 2 + 2 = ?\nA:"},
    ]
    for turns, generation_prompt in ((chat, True), (chat[:3], False)):
        assert engine_lm.apply_chat_template(turns, generation_prompt) == hf_lm.apply_chat_template(
            turns, generation_prompt
        )
    assert engine_lm.apply_chat_template(chat).startswith("Be brief.\n\nUser: Q: 1 + 1")


def test_rubric_answers_are_asked_through_the_model_chat_template(chat_parents, zoo):
    from mergescope.serving.chat import answer_prompt_ids
    from mergescope.serving.hf import HFBackend

    question = "Q: What is 12 plus 30?\nA:"
    backend = HFBackend()
    backend.load(chat_parents[0])  # arith's weights, the marked template
    assert answer_prompt_ids(backend.tokenizer, [question]) == [backend.tokenizer("User: " + question).input_ids]
    templated = backend.generate([question], max_tokens=6)
    backend.load(zoo.model_path("arith"))  # the same weights; the zoo's template renders a user turn as written
    assert backend.generate(["User: " + question], max_tokens=6) == templated


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_hf_backend_computes_in_the_served_dtype(zoo, dtype):
    from mergescope.serving.hf import HFBackend

    backend = HFBackend(HFOptions(dtype=str(dtype).removeprefix("torch.")))
    lm = backend.load(zoo.model_path("arith"))
    assert {p.dtype for p in lm.model.parameters()} == {dtype}
    assert lm.model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")  # HFOptions.device "auto"
    logits = lm.model(torch.tensor([[1, 2, 3]], device=lm.model.device)).logits
    assert logits.dtype == dtype


def test_vllm_engine_settings_carry_dtype_and_batch_size(zoo):
    kwargs = EngineOptions(dtype="bfloat16", batch_size=8).engine_kwargs(zoo.model_path("arith"))
    assert kwargs["dtype"] == "bfloat16" and kwargs["max_num_seqs"] == 8
    with pytest.raises(ConfigError, match="vllm backend cannot serve dtype 'float8'"):
        EngineOptions(dtype="float8")


def test_judge_and_serve_use_the_dtype_the_run_was_served_in(tmp_path):
    from mergescope.scoring.judge_run import answer_options
    from mergescope.serving.server import served_dtype

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    store = ResultsStore(run_dir / "results.sqlite")
    write_run_meta(store, fake_runs.run_meta(["/a", "/b"], spec={"name": "x", "dtype": "bfloat16"}))
    store.close()
    meta = read_run_meta(run_dir)
    assert answer_options(meta, "hf", None) == HFOptions(dtype="bfloat16")
    assert answer_options(meta, "hf", "float16") == HFOptions(dtype="float16")  # --dtype overrides
    assert served_dtype(run_dir) == "bfloat16" and served_dtype(None) == "float32"


def test_tasks_may_be_given_comma_separated_as_lm_eval_takes_them(zoo, tmp_path):
    from mergescope.recipes.sweep import plan_sweep

    settings = SweepSettings(
        parents=[str(zoo.model_path("arith")), str(zoo.model_path("facts"))],
        tasks=["zoo_arith,zoo_facts", "zoo_domain"],
        out=tmp_path / "run",
        backend="hf",
        progress=False,
    )
    assert plan_sweep(settings).suite.names == ("zoo_arith", "zoo_facts", "zoo_domain")


def test_a_named_chat_template_is_the_one_rendered(zoo, tmp_path):
    """--chat-template NAME: lm-eval's evaluate renders with the default template whatever the name; ours do not."""
    from mergescope.models.parents import chat_templates
    from mergescope.serving import BACKENDS
    from mergescope.serving.hf import HFBackend
    from mergescope.serving.live_lm import LiveEngineLM

    model = tmp_path / "arith"
    shutil.copytree(zoo.model_path("arith"), model)
    (model / "additional_chat_templates").mkdir()
    (model / "additional_chat_templates" / "marked.jinja").write_text(MARKED_TEMPLATE)
    assert set(chat_templates(model)) == {"default", "marked"}
    user = [{"role": "user", "content": "Q: 1 + 1 = ?\nA:"}]
    named = HFBackend(HFOptions(chat_template="marked")).load(model)
    assert named.apply_chat_template(user) == "User: Q: 1 + 1 = ?\nA:"
    assert HFBackend().load(model).apply_chat_template(user) == "Q: 1 + 1 = ?\nA:"  # the default template
    engine_lm = LiveEngineLM(SimpleNamespace(tokenizer=named.tokenizer, options=EngineOptions(chat_template="marked")))
    assert engine_lm.apply_chat_template(user) == "User: Q: 1 + 1 = ?\nA:"
    with pytest.raises(ConfigError, match="openai backend takes no option 'chat_template'"):
        BACKENDS.options("openai", {"chat_template": "marked"})  # lm-eval's local-completions cannot pick one
