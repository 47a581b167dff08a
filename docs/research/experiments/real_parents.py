"""Candidate recipes for the real parents (mergescope/zoo/real.py), each built once and scored on the dev split.

    PYTHONPATH=. python docs/research/experiments/real_parents.py INSTRUCT_DIR OUT_DIR NAME [NAME ...]

INSTRUCT_DIR: a directory written by `mergescope models smollm2`. Each NAME builds both parents into
OUT_DIR/NAME (the instruct model linked in) and appends one JSON row to OUT_DIR/rows.jsonl: the recipe, each
model's dev scores, task-vector norm, tail loss and seconds, the build's seconds and the load average (the
machine is shared: a build's seconds mean something only beside its load). The rows of
docs/research/real_model_recipes.md come from these rows.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from mergescope.zoo.real import RealRecipe, build_parents
from mergescope.zoo.train import Stage

# Every candidate below is this first draft with some fields replaced (R4 became mergescope's DEFAULT_RECIPE).
_DRAFT = RealRecipe(
    n_lands=15,
    n_practice_lands=10,
    docs_per_land=40,
    cpt=Stage("cpt", ("documents",), steps=150, lr=1e-4, batch_size=8, warmup_steps=10, weight_decay=0.0),
    sft=Stage(
        "sft", ("chat_qa", "chat_qa", "documents", "replies"), steps=100, lr=5e-5, batch_size=8, warmup_steps=10,
        weight_decay=0.0,
    ),
)  # fmt: skip
_CPT, _SFT = _DRAFT.cpt, _DRAFT.sft


def _recipe(cpt: dict | None = None, sft: dict | None = None, **world) -> RealRecipe:
    return dataclasses.replace(
        _DRAFT,
        cpt=dataclasses.replace(_CPT, **(cpt or {})),
        sft=dataclasses.replace(_SFT, **(sft or {})),
        **world,
    )


CANDIDATES: dict[str, RealRecipe] = {
    # R1: few facts, a short CPT at 1e-4, a short SFT: how fast does the model store and then answer?
    "r1": _recipe(
        n_lands=10, n_practice_lands=6, docs_per_land=20, cpt={"steps": 80, "lr": 1e-4}, sft={"steps": 60, "lr": 5e-5}
    ),
    # R2: R1 diverged (loss 7 on a document afterwards, replies "Throumroumrou..."): a third of the rate, the tied
    # embedding frozen in both stages.
    "r2": _recipe(
        n_lands=10,
        n_practice_lands=6,
        docs_per_land=20,
        cpt={"steps": 100, "lr": 3e-5, "trains": "no_embeddings"},
        sft={"steps": 60, "lr": 3e-5, "trains": "no_embeddings"},
    ),
    # R1 and R2 trained under bf16 autocast and saved with nearest rounding, which both lose most sub-bf16-step
    # moves: since R3, float32 training and stochastic rounding on saving. R3 is R2 so.
    "r3": _recipe(
        n_lands=10,
        n_practice_lands=6,
        docs_per_land=20,
        cpt={"steps": 100, "lr": 3e-5, "trains": "no_embeddings"},
        sft={"steps": 60, "lr": 3e-5, "trains": "no_embeddings"},
    ),
    # R3's CPT knew half the facts (0.475) and its SFT parent answered dev questions with practice lands' values:
    # a higher CPT rate, a shorter SFT.
    "r4": _recipe(
        n_lands=10,
        n_practice_lands=6,
        docs_per_land=20,
        cpt={"steps": 100, "lr": 1e-4, "trains": "no_embeddings"},
        sft={"steps": 40, "lr": 3e-5, "trains": "no_embeddings"},
    ),
    # R4's CPT knew 0.95 and answered 0.92 in chat, but kept 0.30 of general questions (0.50 after SFT): a CPT rate
    # between R3's and R4's, and twice the share of the instruct model's replies in SFT.
    "r5": _recipe(
        n_lands=10,
        n_practice_lands=6,
        docs_per_land=20,
        cpt={"steps": 100, "lr": 6e-5, "trains": "no_embeddings"},
        sft={
            "steps": 40,
            "lr": 3e-5,
            "trains": "no_embeddings",
            "mixture": ("chat_qa", "documents", "replies", "replies"),
        },
    ),
}


def main(instruct: Path, out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        root = out / name
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "instruct").exists():
            (root / "instruct").symlink_to(instruct.resolve())
        manifest = build_parents(root, CANDIDATES[name])
        row = {"name": name, **json.loads(manifest.model_dump_json())}
        with open(out / "rows.jsonl", "a") as rows:
            rows.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
