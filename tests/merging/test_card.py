"""Model cards: every merged directory carries one naming its parents, method, parameters, seed and YAML."""

from __future__ import annotations

import json

import yaml

from mergescope.merging.candidates import expand, validate_with_mergekit
from mergescope.merging.card import RunScores, ScoreRow, card_parents, model_card
from mergescope.merging.merge import write_merge
from mergescope.merging.spec import SWEEPS_DIR, load_sweep
from mergescope.models.parents import resolve_parents
from mergescope.runs.records import Candidate


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_a_merged_directory_carries_a_card_and_the_donors_chat_template(zoo, tmp_path):
    from transformers import AutoTokenizer

    arith, facts = zoo.model_path("arith"), zoo.model_path("facts")
    candidate = expand(load_sweep(SWEEPS_DIR / "lu2024_slerp.yaml"), resolve_parents([arith, facts]))[0]
    card = (write_merge(candidate, tmp_path / "merged") / "README.md").read_text()
    assert front_matter(card) == {"library_name": "transformers", "tags": ["merge", "mergekit", "mergescope"]}
    for fact in (
        f"| base_model | `{arith}` | local directory, no revision |",
        f"| model | `{facts}` |",
        "- method: `slerp`",
        f"- parameters: `{json.dumps(candidate.mergekit_config['parameters'], sort_keys=True)}`",
        "- seed: none",
        "chat template: included",
        "mergekit-yaml mergekit_config.yml OUT`",
        yaml.safe_dump(candidate.mergekit_config, sort_keys=False),
        "Not in this card yet",
    ):
        assert fact in card, fact
    chat = [{"role": "user", "content": "Q: What is 2 plus 3?\nA:"}]
    merged, donor = (AutoTokenizer.from_pretrained(d) for d in (tmp_path / "merged", arith))
    assert merged.chat_template and merged.apply_chat_template(chat, tokenize=False) == donor.apply_chat_template(
        chat, tokenize=False
    )


def test_hub_snapshots_and_pinned_ids_give_revisions_and_hub_metadata_and_scores_give_a_table():
    snapshot = "/cache/hub/models--org--instruct/snapshots/0123abcd"  # how hub.py hands mergekit a hub id
    config = {
        "merge_method": "task_arithmetic",
        "base_model": snapshot,
        "dtype": "bfloat16",
        "models": [
            {"model": "org/cpt@v2", "parameters": {"weight": 0.5}},
            {"model": "org/other", "parameters": {"weight": 0.5}},
        ],
    }
    candidate = Candidate(
        id="c0ffee",
        method="task_arithmetic",
        label="task arithmetic",
        mergekit_config=config,
        parameters={"weight": 0.5},
        seed=7,
    )
    merge_config = validate_with_mergekit(candidate)
    assert [(p.hub_id, p.revision, p.role) for p in card_parents(merge_config)] == [
        ("org/instruct", "0123abcd", "base_model"),
        ("org/cpt", "v2", "model"),
        ("org/other", None, "model"),
    ]
    scores = RunScores(
        run="lu",
        limit=20,
        reference_labels=("instruct", "cpt"),
        rows=(
            ScoreRow(
                task="gsm8k", metric="exact_match,strict", value=0.45, stderr=0.0125, n_items=20, references=(0.4, None)
            ),
        ),
    )
    card = model_card(candidate, merge_config, chat_template=False, scores=scores)
    assert front_matter(card)["base_model"] == ["org/instruct", "org/cpt", "org/other"]
    assert front_matter(card)["base_model_relation"] == "merge"
    for fact in (
        "| base_model | `org/instruct` | 0123abcd |",
        "| model | `org/cpt` | v2 |",
        "| model | `org/other` | not pinned |",
        "- seed: 7",
        "--random-seed 7`",
        "- dtype: bfloat16",
        "chat template: none",
        "## Scores in run `lu`",
        "the first 20 items of each task",
        "| task | metric | this merge | instruct | cpt |",
        "| gsm8k | exact_match,strict | 0.450 ± 0.013 | 0.400 |  |",
    ):
        assert fact in card, fact
