"""Candidates -> merged model directories, through mergekit's own Python API (never a home-made merge).

A merged directory appears under its final name only once it is complete: mergekit writes into a
temporary sibling that is renamed at the end, so an interrupted merge is never mistaken for a finished one.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from mergescope.errors import MergescopeError
from mergescope.records import Candidate

PARTIAL_SUFFIX = ".partial"


def merged_dir(merges_root: Path, candidate: Candidate) -> Path:
    """Where the candidate's finished model directory lives."""
    return merges_root / candidate.id


def is_merged(merges_root: Path, candidate: Candidate) -> bool:
    """Whether a finished merge of this candidate exists (a cache hit)."""
    return (merged_dir(merges_root, candidate) / "config.json").is_file()


def merge_to_disk(candidate: Candidate, merges_root: Path, *, quiet: bool = True) -> Path:
    """The finished model directory of `candidate`, merged now by mergekit's `run_merge` unless cached."""
    target = merged_dir(merges_root, candidate)
    if is_merged(merges_root, candidate):
        return target
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    merges_root.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}{PARTIAL_SUFFIX}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    options = MergeOptions(random_seed=candidate.seed, quiet=quiet, write_model_card=True, copy_tokenizer=True)
    try:
        _quiet_mergekit_logs()
        run_merge(MergeConfiguration.model_validate(candidate.mergekit_config), str(partial), options)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise MergescopeError(f"merging {candidate.label} failed writing {partial}: {error.strerror or error}",
                              hint="free disk space or choose another --out") from None
    except Exception:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, target)
    return target


def remove_partial_merges(merges_root: Path) -> int:
    """Delete temporary directories left by interrupted merges; returns how many were removed."""
    if not merges_root.is_dir():
        return 0
    leftovers = [p for p in merges_root.iterdir() if PARTIAL_SUFFIX in p.name]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return len(leftovers)


def _quiet_mergekit_logs() -> None:
    logging.getLogger("mergekit").setLevel(logging.WARNING)
