"""`mergescope export`: a run's candidate as a standalone model directory that generates like the run's merge."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from mergescope.cli.app import app

PROMPTS = ["Q: What is 31 plus 12?\nA:", "Q: What is the capital of Veapoux?\nA:"]


def export(*arguments: str):
    return CliRunner().invoke(app, ["export", *map(str, arguments)])


def greedy_tokens(model_dir) -> list[list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        return [
            model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=12, do_sample=False)[0].tolist()
            for prompt in PROMPTS
        ]


def stored_scores(run_dir, subject_id: str) -> dict[tuple[str, str], float]:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        rows = db.execute("SELECT task, metric, value FROM scores WHERE subject_id = ?", (subject_id,)).fetchall()
    return {(task, metric): value for task, metric, value in rows}


@pytest.fixture(scope="module")
def run_and_candidate(default_run):
    run_dir = default_run[1].run_dir
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        (candidate_id,) = db.execute("SELECT id FROM subjects WHERE kind = 'candidate' ORDER BY position").fetchone()
    return run_dir, candidate_id


def test_an_exported_candidate_generates_like_the_runs_merge_and_its_card_carries_the_runs_scores(
    run_and_candidate, tmp_path
):
    run_dir, candidate_id = run_and_candidate
    result = export(candidate_id[:6], tmp_path / "out", "--run", run_dir)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "mergekit_config.yml",
        "README.md",
    } <= {path.name for path in out.iterdir()}
    assert greedy_tokens(out) == greedy_tokens(run_dir / "merges" / candidate_id)
    card = (out / "README.md").read_text()
    scores = stored_scores(run_dir, candidate_id)
    assert scores and f"## Scores in run `{run_dir.name}`" in card
    for (task, metric), value in scores.items():
        assert f"| {task} | {metric} | {value:.3f}" in card, (task, metric)
    assert (run_dir / "merges" / candidate_id / "README.md").read_text().count("Not in this card yet") == 1


@pytest.mark.slow
def test_a_candidate_the_run_did_not_keep_is_merged_anew_into_the_export(run_and_candidate, tmp_path):
    run_dir, candidate_id = run_and_candidate
    bare = tmp_path / "bare-run"  # the run's store without its merges/
    bare.mkdir()
    shutil.copy(run_dir / "results.sqlite", bare / "results.sqlite")
    result = export(candidate_id, tmp_path / "out", "--run", bare, "--json")
    assert result.exit_code == 0, result.output
    assert not (bare / "merges").exists()  # the run is only read
    assert greedy_tokens(tmp_path / "out") == greedy_tokens(run_dir / "merges" / candidate_id)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Scores in run `bare-run`" in card and "Not in this card yet" not in card


def test_bad_export_input_is_one_line_exit_2_before_any_work(run_and_candidate, tmp_path, monkeypatch):
    run_dir, candidate_id = run_and_candidate
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    typo = candidate_id[:-1] + ("0" if candidate_id[-1] != "0" else "1")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    cases = [
        ((typo, tmp_path / "a", "--run", run_dir), f"did you mean '{candidate_id}'"),
        ((candidate_id, occupied, "--run", run_dir), "exists and is not empty"),
        ((candidate_id, tmp_path / "b", "--run", tmp_path / "no-such-run"), "does not exist"),
        ((candidate_id, tmp_path / "c", "--run", run_dir, "--push-to-hub", "not a repo"), "is not a Hub repo id"),
        ((candidate_id, tmp_path / "d", "--run", run_dir, "--push-to-hub", "org/name"), "HF_HUB_OFFLINE is set"),
    ]
    for arguments, expected in cases:
        result = export(*arguments)
        assert result.exit_code == 2, result.output
        assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert (occupied / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / name).exists() for name in "abcd")
