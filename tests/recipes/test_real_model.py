"""The sweep recipe on the real pretrained model (SmolLM2-135M-Instruct) and a parent trained from it for a few
steps (the quick recipe): by hub id from the local hub cache as by directory, and on a live vLLM engine with its
chat template, merged and stored in the parents' bf16. Slow: the model is ~270 MB in bf16."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.packaged import cached_quick_parents
from helpers.weights import stored_dtypes
from mergescope.models import packaged
from mergescope.zoo.real import CPT, INSTRUCT

REPO = Path(__file__).resolve().parents[2]
REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TWO_SLERPS = "name: two_slerps\nmethods:\n  - method: slerp\n    parameters:\n      t: {grid: [0.3, 0.7]}\n"

pytestmark = pytest.mark.real  # SmolLM2-135M-Instruct: make test-real


@pytest.fixture(scope="module")
def quick_parents() -> Path:
    return cached_quick_parents()


@pytest.fixture
def two_slerps(tmp_path) -> Path:
    spec = tmp_path / "two_slerps.yaml"
    spec.write_text(TWO_SLERPS)
    return spec


def scores_in_sweep_order(run: Path) -> tuple[list[tuple], list[tuple]]:
    """Every score of a run in sweep order, and every item's outcome with the model's reply (for a multiple-choice
    task, the log-likelihood of the chosen answer), without the subjects' ids (which name the parents)."""
    from mergescope.runs.store import ResultsStore

    store = ResultsStore.of_run(run)
    try:
        scores = [(r.kind, r.method, r.parameters, r.task, r.metric, r.value) for r in store.score_table()]
        items = store.query("SELECT task, doc_id, metric, value, response FROM items ORDER BY rowid")
        return scores, [tuple(row) for row in items]
    finally:
        store.close()


@pytest.mark.slow
def test_a_sweep_of_the_hub_id_scores_what_the_sweep_of_the_directory_scores(
    quick_parents, two_slerps, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    from mergescope.recipes.sweep import SweepSettings, sweep

    packaged.materialise("smollm2", hub_cache=tmp_path / "hub-cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    runs = {}
    for form, instruct in (("hub", REPO_ID), ("directory", str(quick_parents / INSTRUCT))):
        runs[form] = tmp_path / form
        settings = SweepSettings(
            parents=[instruct, str(quick_parents / CPT)],
            sweep=two_slerps,
            tasks=["chat_general_mc"],
            limit=4,
            backend="hf",
            out=runs[form],
            progress=False,
        )
        assert sweep(settings).n_evaluated == 4  # two parents, two candidates
    hub_scores, hub_items = scores_in_sweep_order(runs["hub"])
    assert len(hub_scores) == 4 * 2 and len(hub_items) == 4 * 2 * 4  # subjects x (acc, acc_norm) [x items]
    assert (hub_scores, hub_items) == scores_in_sweep_order(runs["directory"])


@pytest.mark.vllm
@pytest.mark.slow
def test_a_vllm_sweep_of_the_real_pair_answers_in_chat_and_stores_bf16_candidates(quick_parents, two_slerps, tmp_path):
    pytest.importorskip("vllm")
    from mergescope.runs.directory import merges_dir, read_run_meta
    from mergescope.runs.store import ResultsStore

    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "mergescope", "sweep",
        "--parents", str(quick_parents / INSTRUCT), str(quick_parents / CPT),
        "--sweep", str(two_slerps), "--tasks", "chat_general", "--limit", "6", "--apply-chat-template",
        "--backend", "vllm", "--out", str(run),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    meta = read_run_meta(run)
    assert (meta.served_dtype(), meta.dtype_source) == ("bfloat16", "parents")
    merged = [folder for folder in merges_dir(run).iterdir() if folder.is_dir()]
    assert len(merged) == 2 and all(stored_dtypes(folder) == {"BF16"} for folder in merged)
    store = ResultsStore.of_run(run)
    try:
        replies = store.query("SELECT subject_id, doc_id, prompt, response FROM items WHERE task = 'chat_general'")
    finally:
        store.close()
    assert len(replies) == 4 * 6
    # prompted through the model's ChatML template, not the zoo's "Q: ... A:" completion
    assert all(row["prompt"].startswith("<|im_start|>") and "<|im_start|>assistant" in row["prompt"] for row in replies)
    france = {row["subject_id"]: row for row in replies if row["doc_id"] == 0}
    assert "What is the capital of France?" in france["parent-instruct"]["prompt"]
    assert "Paris" in france["parent-instruct"]["response"]


@pytest.mark.slow
def test_a_study_of_the_real_pairs_scores_them_in_chat_with_their_own_spec(quick_parents, tmp_path):
    """`--zoo DIR` of real parents: three pairs, each swept with its real_study spec in chat on real_domain (the
    read lands' questions) and chat_general, merged and served in bf16, into one study report."""
    from mergescope.recipes.study import StudySettings, study, zoo_pairs
    from mergescope.recipes.sweep import SweepSettings
    from mergescope.runs.directory import read_run_meta

    pairs = tuple(zoo_pairs(quick_parents, "smollm2"))
    options = SweepSettings(parents=[], limit=1, progress=False)
    result = study(StudySettings(pairs, out=tmp_path / "study", options=options))
    assert [outcome.status for outcome in result.pairs] == ["swept"] * 3 and result.report.is_file()
    # two parents and four candidates each;
    # (spec, models evaluated): the pair with a base scores it too, and adds task arithmetic and TIES
    expected = [("real_study", 6), ("real_study", 6), ("real_study_base", 9)]
    for outcome, (spec, n_evaluated) in zip(result.pairs, expected, strict=True):
        meta = read_run_meta(outcome.run_dir)
        assert (meta.spec["name"], outcome.n_evaluated) == (spec, n_evaluated)
        assert meta.evaluation.apply_chat_template is True
        assert meta.tasks == ("real_domain", "chat_general") and meta.served_dtype() == "bfloat16"
    assert [figures.pair.key for figures in result.data.pairs] == [pair.key for pair in pairs]
    assert all(-1 <= figures.cosine <= 1 for figures in result.data.pairs)  # kinship of every pair measured
