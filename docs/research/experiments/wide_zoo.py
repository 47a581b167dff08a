"""Build the zoo's base and its two skill parents (`arith`, `facts`) at another width, for retention.py.

Everything but the width is the zoo's recipe (mergescope.zoo.build: data, stages, seed, dev-split checkpoints);
the heads stay 32 wide and the MLP twice the hidden size. Quality bars are printed, not enforced, so a width
whose parents miss them still yields a row. Then:

    PYTHONPATH=. python docs/research/experiments/wide_zoo.py OUT_ZOO HIDDEN
    PYTHONPATH=. python docs/research/experiments/retention.py OUT_ZOO OUT_ROWS zoo
"""

from __future__ import annotations

import sys
from pathlib import Path

from mergescope.zoo import build
from mergescope.zoo.quality import ZooQualityError

MODELS = ("base", "arith", "facts")


def main(out: Path, hidden: int) -> None:
    bars, build.BARS = build.BARS, ()
    manifest = build.build_zoo(out, models=MODELS, width=hidden)
    scores = {model.name: model.scores for model in manifest.models}
    for model in manifest.models:
        print(model.name, model.scores, "task vector / base:", model.task_vector_norm)
    for bar in bars:
        if bar.model in scores:
            try:
                bar.check(scores[bar.model][bar.items])
            except ZooQualityError as miss:
                print("missed:", miss)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
