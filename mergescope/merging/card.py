"""Model cards: the README.md each merged directory carries, completed with the run's scores on export.

A card is written with every merge (merge.write_merge): the parents (the path or hub id mergekit read, and the
revision where the reference pins one), method, parameters, seed and the mergekit YAML. Scores come later and
keep changing while a run grows (a resumed sweep adds tasks, `mergescope judge` adds judge scores), and the
run's store is their source of truth; so the card in a run's merges/ says where the scores are, and
`mergescope export` writes the card again with the scores the store holds at that moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from mergescope.runs.records import Candidate

if TYPE_CHECKING:
    from mergekit.config import MergeConfiguration

CARD_NAME = "README.md"
TAGS = ("merge", "mergekit", "mergescope")


@dataclass(frozen=True, kw_only=True)
class CardParent:
    """One model a merge read, as its mergekit config names it."""

    reference: str  # the local directory (a hub id's snapshot folder) or hub id mergekit read
    hub_id: str | None  # org/name, for a hub id or a snapshot folder of the hub cache
    revision: str | None  # the commit merged (a snapshot folder's name) or the revision a reference pins
    role: Literal["base_model", "model"]  # mergekit's base_model, or one of its models


@dataclass(frozen=True, kw_only=True)
class ScoreRow:
    """One (task, metric) of the card's score table: the merge's value and each reference model's."""

    task: str
    metric: str
    value: float | None
    stderr: float | None
    n_items: int | None
    references: tuple[float | None, ...]  # in the order of RunScores.reference_labels


@dataclass(frozen=True)
class RunScores:
    """What a run's store holds about one candidate, beside its parents and base."""

    run: str
    limit: int | None  # items per task the run evaluated (None: every item)
    reference_labels: tuple[str, ...]
    rows: tuple[ScoreRow, ...]


def card_parents(config: MergeConfiguration) -> list[CardParent]:
    """The models `config` reads, its base_model first."""
    base = config.base_model
    # referenced_models() is a set: sort, so that a card is byte-identical whichever process writes it
    models = sorted(config.referenced_models(), key=lambda model: (model != base, str(model)))
    parents = []
    for model in models:
        hub_id, revision = _hub_identity(model.model.path, model.model.revision)
        parents.append(
            CardParent(
                reference=model.model.path,
                hub_id=hub_id,
                revision=revision,
                role="base_model" if model == base else "model",
            )
        )
    return parents


def _hub_identity(reference: str, revision: str | None) -> tuple[str | None, str | None]:
    """(org/name, revision) of a model reference: a snapshot folder of the hub cache
    (`models--ORG--NAME/snapshots/SHA`, as hub.py resolves ids), a hub id, or (None, None) for a local directory."""
    from mergescope.models.hub import is_hub_id

    path = Path(reference)
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return "/".join(path.parent.parent.name.split("--", 2)[1:]), path.name
    return (reference, revision) if is_hub_id(reference) else (None, None)


def has_chat_template(directory: Path) -> bool:
    """Whether the tokenizer in `directory` carries a chat template (a file of its own or in tokenizer_config.json)."""
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return True
    tokenizer_config = directory / "tokenizer_config.json"
    return tokenizer_config.is_file() and bool(json.loads(tokenizer_config.read_text()).get("chat_template"))


def write_card(
    directory: Path, candidate: Candidate, config: MergeConfiguration, scores: RunScores | None = None
) -> Path:
    """Write the model card of the merged `candidate` into `directory` (its model directory); returns its path."""
    path = Path(directory) / CARD_NAME
    path.write_text(model_card(candidate, config, has_chat_template(Path(directory)), scores))
    return path


def model_card(candidate: Candidate, config: MergeConfiguration, chat_template: bool, scores: RunScores | None) -> str:
    """The card's Markdown, with Hugging Face metadata in its front matter."""
    parents = card_parents(config)
    sections = [
        _front_matter(parents),
        f"# {candidate.label}\n",
        f"A merge made with [mergekit](https://github.com/arcee-ai/mergekit) by mergescope "
        f"(candidate `{candidate.id}`).\n",
        _parents_section(parents),
        _merge_section(candidate, config, chat_template),
        _scores_section(scores),
        _config_section(candidate),
    ]
    return "\n".join(sections)


def _front_matter(parents: list[CardParent]) -> str:
    metadata: dict = {"library_name": "transformers", "tags": list(TAGS)}
    hub_ids = [parent.hub_id for parent in parents if parent.hub_id]
    if hub_ids:  # the Hub reads base_model as repo ids only: local directories stay out of it
        metadata |= {"base_model": hub_ids, "base_model_relation": "merge"}
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n"


def _parents_section(parents: list[CardParent]) -> str:
    lines = ["## Parents\n", "| role | model | revision |", "|---|---|---|"]
    for parent in parents:
        revision = parent.revision or ("not pinned" if parent.hub_id else "local directory, no revision")
        lines.append(f"| {parent.role} | `{parent.hub_id or parent.reference}` | {revision} |")
    return "\n".join(lines) + "\n"


def _merge_section(candidate: Candidate, config: MergeConfiguration, chat_template: bool) -> str:
    seed = str(candidate.seed) if candidate.seed is not None else "none (the method draws no random numbers)"
    # The sweep's summary (t=0.3), else what mergekit received (a gradient); per-model ones are in the YAML below.
    given = candidate.parameters or candidate.mergekit_config.get("parameters")
    parameters = f"`{json.dumps(given, sort_keys=True)}`" if given else "per model, in the mergekit configuration"
    template = "included" if chat_template else "none (the tokenizer mergekit wrote has none)"
    return (
        f"## Merge\n\n- method: `{candidate.method}`\n- parameters: {parameters}\n- seed: {seed}\n"
        f"- dtype: {config.dtype or 'as stored'}\n- tokenizer: as mergekit wrote it; chat template: "
        f"{template}\n"
    )


def _scores_section(scores: RunScores | None) -> str:
    if scores is None:
        return (
            "## Scores\n\nNot in this card yet: the run's store holds them. `mergescope export ID --run RUN OUT` "
            "writes this model with a card that carries them.\n"
        )
    if not scores.rows:
        return f"## Scores in run `{scores.run}`\n\nThe run has stored no scores of this merge yet.\n"
    items = "every item" if scores.limit is None else f"the first {scores.limit} items of each task"
    lines = [
        f"## Scores in run `{scores.run}`\n",
        f"Evaluated on {items}; the parents and base in the same run for comparison (empty: not scored there).\n",
        "| task | metric | this merge | " + " | ".join(scores.reference_labels) + " |",
        "|---|---|---|" + "---|" * len(scores.reference_labels),
    ]
    for row in scores.rows:
        value = _number(row.value) + (f" ± {row.stderr:.3f}" if row.stderr is not None else "")
        lines.append(f"| {row.task} | {row.metric} | {value} | " + " | ".join(map(_number, row.references)) + " |")
    return "\n".join(lines) + "\n"


def _config_section(candidate: Candidate) -> str:
    seed = f" --random-seed {candidate.seed}" if candidate.seed is not None else ""
    config = yaml.safe_dump(candidate.mergekit_config, sort_keys=False)
    return (
        f"## mergekit configuration\n\nReproduce with `mergekit-yaml mergekit_config.yml OUT{seed}`:\n\n"
        f"```yaml\n{config}```\n"
    )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
