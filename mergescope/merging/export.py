"""`mergescope export`: one candidate of a run as a standalone model directory, its card carrying the run's scores.

The directory holds the safetensors shards, config, tokenizer (with the donor's chat template, where it has one),
mergekit config and model card (card.py), and loads in transformers and vLLM like any model directory. It is
copied from the run's merges/ when the sweep merged the candidate there, else merged anew; the run itself is
only read. Optionally the directory is uploaded to the Hugging Face Hub (`HfApi().upload_folder`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from mergescope.errors import ConfigError, MergescopeError
from mergescope.merging.candidates import validate_with_mergekit
from mergescope.merging.card import RunScores, ScoreRow, has_chat_template, write_card
from mergescope.merging.merge import is_merged, merged_dir, write_merge
from mergescope.runs.directory import find_candidate, merges_dir, partial_directory, read_run_meta
from mergescope.runs.records import Candidate
from mergescope.runs.store import STORE_NAME, ResultsStore


@dataclass(frozen=True)
class ExportResult:
    """Where a candidate was exported, and where it was pushed."""

    candidate_id: str
    label: str
    out: Path
    chat_template: bool
    scored_rows: int  # (task, metric) rows of the run's scores on the card
    hub_url: str | None = None


def export_candidate(candidate_id: str, run_dir: Path, out: Path, push_to_hub: str | None = None) -> ExportResult:
    """Write candidate `candidate_id` (an id or a unique prefix) of `run_dir` into the new directory `out`."""
    run_dir, out = Path(run_dir), Path(out)
    _check_inputs(run_dir, out, push_to_hub)
    candidate = find_candidate(run_dir, candidate_id)
    scores = run_scores(run_dir, candidate)
    _write_model(candidate, merged_dir(merges_dir(run_dir), candidate), out, scores)
    result = ExportResult(candidate.id, candidate.label, out, has_chat_template(out), len(scores.rows))
    if push_to_hub:
        result = replace(result, hub_url=upload(out, push_to_hub, candidate))
    return result


def _check_inputs(run_dir: Path, out: Path, push_to_hub: str | None) -> None:
    """ConfigError for a missing run, an occupied output directory or an unusable Hub repo, before any work."""
    if not (run_dir / STORE_NAME).is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {STORE_NAME}, so it is not a mergescope run"
        raise ConfigError(f"run directory {run_dir} {what}", hint="give --run the --out directory of a sweep")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty", hint="export into a new or empty directory")
    if push_to_hub:
        _check_hub(push_to_hub)


def _check_hub(repo: str) -> None:
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise ConfigError(f"--push-to-hub {repo!r} is not a Hub repo id", hint="write it as org/name") from None
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(
            f"--push-to-hub {repo} needs the network, but HF_HUB_OFFLINE is set",
            hint=f"unset HF_HUB_OFFLINE, or export without --push-to-hub and upload later with `hf upload {repo} OUT`",
        )


def run_scores(run_dir: Path, candidate: Candidate) -> RunScores:
    """The candidate's scores in the run's store, each beside the run's parents' and base's on the same metric."""
    store = ResultsStore.of_run(run_dir)
    try:
        table = store.score_table()
    finally:
        store.close()
    references = list(dict.fromkeys((row.subject_id, row.label) for row in table if row.kind != "candidate"))
    value = {(row.subject_id, row.task, row.metric): row.value for row in table}
    rows = tuple(
        ScoreRow(
            task=row.task,
            metric=row.metric,
            value=row.value,
            stderr=row.stderr,
            n_items=row.n_items,
            references=tuple(value.get((subject, row.task, row.metric)) for subject, _ in references),
        )
        for row in table
        if row.subject_id == candidate.id
    )
    meta = read_run_meta(run_dir)
    return RunScores(
        run=run_dir.resolve().name,
        limit=meta.limit if meta else None,
        reference_labels=tuple(label for _, label in references),
        rows=rows,
    )


def _write_model(candidate: Candidate, merged: Path, out: Path, scores: RunScores) -> None:
    """`out`: the run's merge of `candidate` copied (or merged anew) with a scored card, renamed into place whole."""
    with partial_directory(out, f"exporting {candidate.label}") as partial:
        if is_merged(merged.parent, candidate):
            shutil.copytree(merged, partial)
            write_card(partial, candidate, validate_with_mergekit(candidate), scores)
        else:
            write_merge(candidate, partial, scores)
        os.replace(partial, out)  # an empty `out` is replaced, as rename(2) allows


def upload(directory: Path, repo: str, candidate: Candidate) -> str:
    """The URL of Hub repo `repo` after uploading `directory` to it (created if missing, as a private repo)."""
    import httpx
    from huggingface_hub import HfApi

    api = HfApi()  # the token comes from huggingface_hub's usual places (HF_TOKEN, `hf auth login`); never logged
    try:
        url = api.create_repo(repo, private=True, exist_ok=True)
        api.upload_folder(folder_path=str(directory), repo_id=repo, commit_message=f"mergescope: {candidate.label}")
    except (OSError, ValueError, httpx.HTTPError) as error:  # huggingface_hub's HTTP and offline errors are OSErrors
        reason = " ".join(str(error).split())[:300]
        raise MergescopeError(
            f"exported to {directory}, but pushing it to the Hub as {repo} failed: {reason}",
            hint=f"the export is complete: retry with `hf upload {repo} {directory}` "
            "(after `hf auth login` if the Hub asked for a token)",
        ) from None
    return str(url)
