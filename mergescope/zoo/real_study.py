"""The real model's parents (real.py) as a kinship study's pairs, with tasks about the lands they read.

The shipped `chat_domain` task asks about every land of the zoo's domain; the parents read the first few. The
task written here, `real_domain` (and `real_domain_mc`), asks the same questions about those lands only, so a
parent that knows every fact it read can score 1. Its YAML includes the shipped one by absolute path and names
the lands in `dataset_kwargs` (passed to chat_tasks.load_domain); it is rewritten whenever pairs are asked for,
so the path follows the installed package.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mergescope.errors import ConfigError
from mergescope.merging.spec import SWEEPS_DIR, EvalSettings
from mergescope.runs.records import StudyPair
from mergescope.scoring.lmeval import SHIPPED_TASKS
from mergescope.scoring.tasks.chat_tasks import DOMAIN_SEED
from mergescope.zoo.real import CPT, CPT_SFT, INSTRUCT, load_parents

TASKS_FOLDER = "tasks"
DOMAIN_TASK = "real_domain"
TASKS = (DOMAIN_TASK, "chat_general")  # what the study scores each pair on: the read facts, and forgetting
STUDY_SWEEP = SWEEPS_DIR / "real_study.yaml"  # SLERP and linear: no base needed
BASED_SWEEP = SWEEPS_DIR / "real_study_base.yaml"  # and task arithmetic and TIES, for the pair with a base
CHAT = EvalSettings(apply_chat_template=True)
# (name, parents, base, kind): the seed paper's pair first
PAIRS = (
    ("instruct_cpt_sft", (INSTRUCT, CPT_SFT), None, "instruct + its CPT-then-SFT child"),
    ("instruct_cpt", (INSTRUCT, CPT), None, "instruct + its CPT child"),
    ("cpt_cpt_sft", (CPT, CPT_SFT), INSTRUCT, "CPT + its SFT child"),
)


def real_study_pairs(root: Path, group: str | None = None) -> list[StudyPair]:
    """The study pairs of the parents built in `root`, in `group` (default: root's name), scored in chat on
    TASKS with the real_study spec; ConfigError when root holds no finished set or one of another world."""
    try:
        parents = load_parents(root)
    except (FileNotFoundError, ValueError):
        raise ConfigError(
            f"{root} holds no finished set of parents", hint=f"build it: mergescope models parents {root}"
        ) from None
    if parents.seed != DOMAIN_SEED:
        raise ConfigError(
            f"{root}: parents of seed {parents.seed} read other lands than chat_domain asks about (seed {DOMAIN_SEED})",
            hint=f"build them with --seed {DOMAIN_SEED} for a study",
        )
    tasks = write_tasks(root / TASKS_FOLDER, parents.lands)
    return [
        StudyPair(
            name=name,
            parents=(root / first, root / second),
            base=root / base if base else None,
            tasks=TASKS,
            task_paths=(tasks,),
            group=root.name if group is None else group,
            kind=kind,
            sweep=BASED_SWEEP if base else STUDY_SWEEP,
            evaluation=CHAT,
        )
        for name, (first, second), base, kind in PAIRS
    ]


def write_tasks(folder: Path, lands: list[str]) -> Path:
    """`real_domain` and `real_domain_mc` in `folder`: chat_domain(_mc)'s questions about `lands` only."""
    folder.mkdir(parents=True, exist_ok=True)
    for shipped, name in (("chat_domain", DOMAIN_TASK), ("chat_domain_mc", f"{DOMAIN_TASK}_mc")):
        config = {"include": str(SHIPPED_TASKS / f"{shipped}.yaml"), "task": name, "dataset_kwargs": {"lands": lands}}
        text = f"# {shipped}'s questions about the lands these parents read (mergescope/zoo/real_study.py)\n"
        partial = folder / f".{name}.yaml.partial"
        partial.write_text(text + yaml.safe_dump(config, sort_keys=False))
        partial.replace(folder / f"{name}.yaml")
    return folder
