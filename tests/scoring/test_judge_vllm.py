"""A real judge: SmolLM2-135M-Instruct on vLLM's own OpenAI server (`mergescope serve`) grades answers on the shipped
chat_quality rubric in structured replies (the rubric's JSON schema). Asked for free text, this judge left 35 of
its first 50 grades unreadable (a ```json fence cut at the token limit); constrained, nearly all are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers.vllm_server import serving
from mergescope.cli.app import app
from mergescope.runs.records import Answer, EvalSubject, Evaluation
from mergescope.runs.store import ResultsStore
from mergescope.scoring import judge_store
from mergescope.scoring.rubric import Rubric, find_rubric, load_rubric

# Two subjects' answers to four chat_quality questions: one close to the reference, one plainly wrong.
ANSWERS = {
    "parent-arith": {
        "train-meet": "By 10:00 the first train covered 80 km; 220 km remain at 180 km/h, so they meet about 11:13.",
        "compound-interest": "1000 * 1.05^10 = 1628.89 euros; 128.89 euros of it is interest on interest.",
        "seasons": "The tilt of Earth's axis (23.4 degrees) changes how directly sunlight falls, not the distance.",
        "moon-distance": "About 384,400 km; its light reaches us in about 1.3 seconds.",
    },
    "parent-facts": {
        "train-meet": "They meet at noon, because both trains are fast.",
        "compound-interest": "1500 euros, and there is no interest on interest.",
        "seasons": "Earth is closer to the Sun in summer and farther in winter.",
        "moon-distance": "The Moon is 1,000 km away and its light takes an hour.",
    },
}

pytestmark = pytest.mark.real  # SmolLM2-135M-Instruct: make test-real


@pytest.fixture(scope="module")
def served_smollm2(smollm2):
    """SmolLM2-135M-Instruct on `mergescope serve`: (URL, served model name)."""
    pytest.importorskip("vllm")
    with serving(str(smollm2)) as url:
        yield url, Path(smollm2).name


@pytest.mark.vllm
@pytest.mark.slow
def test_smollm2_on_vllms_server_grades_chat_quality_in_structured_replies(served_smollm2, tmp_path):
    url, name = served_smollm2
    rubric = four_question_chat_quality(tmp_path)
    run_dir = answered_run(tmp_path / "run", rubric)
    outcome = CliRunner().invoke(
        app,
        [
            "judge",
            str(run_dir),
            "--judge-url",
            url,
            "--judge-model",
            name,
            "--rubric",
            str(rubric.source),
            "--no-pairwise",
            "--json",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    (replies,) = json.loads(outcome.output)["replies"]
    assert replies["reply_format"] == "structured" and replies["replies"] == 8
    # free text: 35 of 50 unreadable (70 %); the goal is at most 10 %, this asks for at most 1 of 8
    assert replies["unreadable"] <= 1, outcome.output
    store = ResultsStore(run_dir / "results.sqlite")
    raw = {row["raw_reply"] for row in store.query("SELECT DISTINCT raw_reply FROM judgments")}
    assert all(reply.lstrip().startswith("{") for reply in raw)  # every reply is the schema's JSON object


def four_question_chat_quality(folder: Path) -> Rubric:
    """The shipped chat_quality rubric (criteria, templates, prompts) on the four questions ANSWERS answers."""
    spec = yaml.safe_load(Path(find_rubric("chat_quality").source).read_text())
    spec["questions"] = [q for q in spec["questions"] if q["id"] in ANSWERS["parent-arith"]]
    path = folder / "chat_quality.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_rubric(path)


def answered_run(run_dir: Path, rubric: Rubric) -> Path:
    """A finished run of two parents whose ANSWERS are stored, so that judging it loads no model."""
    run_dir.mkdir(parents=True)
    store = ResultsStore(run_dir / "results.sqlite")
    subjects = [EvalSubject(id=name, kind="parent", label=name, path=Path(f"/models/{name}")) for name in ANSWERS]
    store.plan(subjects)
    for subject in subjects:
        store.record(subject, Evaluation((), (), 0.0))
    judge_store.ensure_tables(store)
    judge_store.write_answers(
        store,
        [
            Answer(
                subject_id=subject,
                rubric=rubric.name,
                question_id=qid,
                prompt=rubric.question(qid).question,
                answer=text,
                sampling="{}",
            )
            for subject, texts in ANSWERS.items()
            for qid, text in texts.items()
        ],
    )
    store.close()
    return run_dir
