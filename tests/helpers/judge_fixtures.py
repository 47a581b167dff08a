"""Judge fixtures shared by the scoring and serving tests (a pytest plugin: tests/conftest.py loads it)."""

from __future__ import annotations

import pytest
import yaml

from helpers import judge_server as js
from mergescope.scoring.rubric import load_rubric


@pytest.fixture()
def server():
    """The scripted stand-in judge, served over HTTP for one test."""
    with js.JudgeServer() as running:
        yield running


@pytest.fixture()
def rubric(tmp_path):
    """Two zoo questions with references, two criteria on 1-5."""
    levels = {level: f"level {level}" for level in range(1, 6)}
    spec = {
        "name": "mini",
        "version": 1,
        "criteria": [
            {"name": "correctness", "description": "matches the reference", "levels": levels},
            {"name": "conciseness", "description": "just the value", "levels": levels},
        ],
        "generation": {"prompt_format": "Q: {{ question }}\nA:", "max_tokens": 8, "stop": ["\n"]},
        "questions": [
            {"id": "add", "question": "What is 31 plus 12?", "reference": "43"},
            {"id": "sub", "question": "What is 73 minus 25?", "reference": "48"},
        ],
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_rubric(path)
