"""Candidates -> merged weights, through mergekit's own planner, merge kernels and tensor writer, in bounded memory.

Each candidate is planned with mergekit's `MergePlanner` (so gradients, filters, slices and per-input parameters
resolve per tensor exactly as `mergekit-yaml` resolves them) and run by mergekit's `Executor` in the schedule
`mergekit-yaml` builds, so seeded DARE/DELLA draw their masks in the same order and match it bit for bit. Configs
that need more than weights (a tokenizer merge, LoRA inputs) go through `run_merge` whole.

Memory: parent tensors are read lazily by mergekit's own loader (safetensors' memory-mapped `safe_open`), one
output tensor's inputs at a time; after each output tensor the loaders' open shards are closed, so no mapped
parent pages outlive the tensors that use them. On disk (`write_merge`) merged tensors go to mergekit's
`TensorWriter`, which holds at most one output shard (`OUT_SHARD_BYTES`) before writing it. Nothing is kept
between candidates: a sweep's merge stage needs the same memory for 2 candidates as for 100. In memory
(`merge_in_memory`) the result is one merged model's tensors, by definition; nothing caches it.

A merged directory appears under its final name only once it is complete: it is written into a temporary
sibling that is renamed at the end, so an interrupted merge is never mistaken for a finished one.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from safetensors import SafetensorError

from mergescope.faults import kill_point
from mergescope.merging.candidates import from_mergekit_yaml, validate_with_mergekit
from mergescope.merging.card import RunScores, write_card
from mergescope.runs.directory import find_candidate, partial_directory
from mergescope.runs.records import Candidate

if TYPE_CHECKING:
    import torch
    from mergekit.config import MergeConfiguration

# Write failures (disk full, file too large, read-only, I/O): a merge that hits one is never kept.
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}
# The output shard mergekit's writer fills before writing it: the largest block of merged weights held in memory.
# mergekit-yaml's default is 5 GB; 1 GB bounds a merge of 8B models to ~1 GB of output buffer.
OUT_SHARD_BYTES = 10**9
StateDict = dict[str, "torch.Tensor"]


def merged_dir(merges_root: Path, candidate: Candidate) -> Path:
    """Where the candidate's finished model directory lives."""
    return merges_root / candidate.id


def is_merged(merges_root: Path, candidate: Candidate) -> bool:
    """Whether a finished merge of this candidate exists (a cache hit)."""
    return (merged_dir(merges_root, candidate) / "config.json").is_file()


def merge_to_disk(candidate: Candidate, merges_root: Path) -> Path:
    """The finished model directory of `candidate` under `merges_root`, merged now unless cached."""
    target = merged_dir(merges_root, candidate)
    if is_merged(merges_root, candidate):
        return target
    return write_merge(candidate, target)


def merge_in_memory(candidate: Candidate) -> StateDict:
    """The merged weights of `candidate` (in memory, no model directory written); tensors may share storage."""
    from mergekit.common import dtype_from_name

    config = validate_with_mergekit(candidate)
    if needs_full_merge(config):
        return _merge_whole(config, candidate.seed)
    saves = planned_saves(config, candidate.seed)
    merged = dict(_execute([save.tensor_task for save in saves], candidate.seed))
    return {
        save.tensor_name: merged[save.tensor_task].to(dtype_from_name(save.dtype))
        if save.dtype
        else merged[save.tensor_task]
        for save in saves
        if merged[save.tensor_task] is not None
    }


def write_merge(candidate: Candidate, target: Path, scores: RunScores | None = None) -> Path:
    """`target`, a loadable model directory of the merged candidate (safetensors shards, config, tokenizer,
    mergekit config, model card, with `scores` on it when given), written atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    config = validate_with_mergekit(candidate)
    # safetensors reports a failed write as SafetensorError
    with partial_directory(target, f"merging {candidate.label}", (OSError, SafetensorError)) as partial:
        if needs_full_merge(config):
            _run_merge(config, partial, candidate.seed)
        else:
            _write_model_dir(config, candidate.seed, partial)
        (partial / "mergekit_config.yml").write_text(yaml.safe_dump(candidate.mergekit_config, sort_keys=False))
        write_card(partial, candidate, config, scores)
        kill_point("merge.before_rename")
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
        kill_point("merge.renamed")
    return target


def _execute(targets: list, seed: int | None) -> Iterator[tuple]:
    """(task, value) of each target, run by mergekit's Executor; parent shards are closed after each target."""
    from mergekit.graph import Executor
    from mergekit.io.tasks import LoaderCache

    _quiet_mergekit_logs()
    executor = Executor(targets)
    if seed is not None:  # as run_merge does before the graph runs, so masks match mergekit-yaml's
        from transformers.trainer_utils import set_seed

        set_seed(seed)
    try:
        for task, value in executor.run(quiet=True):
            # A loader keeps its current shard mapped (and every page read from it resident) until told to let go.
            LoaderCache().flush_all()
            yield task, value
    finally:
        LoaderCache().flush_all()


def needs_full_merge(config: MergeConfiguration) -> bool:
    """Whether the config needs more of `run_merge` than merged weights (a merged tokenizer, LoRA inputs)."""
    return bool(
        config.tokenizer_source
        or config.tokenizer
        or config.chat_template
        or any(model.lora for model in config.referenced_models())
    )


def planned_saves(config: MergeConfiguration, seed: int | None = None) -> list:
    """The SaveTensor tasks of mergekit's own plan for `config`: every output tensor as mergekit-yaml merges it."""
    from mergekit.io.tasks import SaveTensor

    # plan_in_memory() fails pydantic validation in mergekit 0.1.5, so take the tasks of the disk plan (planning
    # writes nothing) and never execute its writer.
    return [task for task in _planner(config, seed).plan_to_disk(out_path="") if isinstance(task, SaveTensor)]


def _planner(config: MergeConfiguration, seed: int | None):
    """mergekit's MergePlanner for `config`, with mergekit's loaders set up as run_merge sets them."""
    from mergekit.io.tasks import LoaderCache
    from mergekit.plan import MergePlanner

    options = _options(seed)
    LoaderCache().setup(options=options)
    architecture = _architecture(config)
    return MergePlanner(config, architecture, options=options, out_model_config=_out_config(config, architecture))


def _options(seed: int | None):
    from mergekit.options import MergeOptions

    return MergeOptions(
        random_seed=seed, quiet=True, write_model_card=True, copy_tokenizer=True, out_shard_size=OUT_SHARD_BYTES
    )


def _architecture(config: MergeConfiguration):
    from mergekit.architecture import get_architecture_info

    return get_architecture_info(config, _options(None))


def _out_config(config: MergeConfiguration, architecture=None):
    # mergekit's own output config (layer counts of slices, dtype); private but pinned by mergekit==0.1.5.
    from mergekit.merge import _model_out_config

    return _model_out_config(config, architecture or _architecture(config), trust_remote_code=False)


def _write_model_dir(config: MergeConfiguration, seed: int | None, directory: Path) -> None:
    """Write weights (shard by shard, through mergekit's writer), config and tokenizer, as `mergekit-yaml` does."""
    from mergekit.merge import _copy_tokenizer

    directory.mkdir(parents=True)
    kill_point("merge.partial_created")
    for _ in _execute(_planner(config, seed).plan_to_disk(out_path=str(directory)), seed):
        pass
    kill_point("merge.weights_written")
    _out_config(config).save_pretrained(str(directory))
    try:
        _copy_tokenizer(config, str(directory), _options(None))
    except (OSError, ValueError) as error:  # run_merge also keeps a merge whose donor has no usable tokenizer
        if getattr(error, "errno", None) in WRITE_ERRNOS:
            raise
        logging.getLogger(__name__).warning("no tokenizer copied into %s: %s", directory, error)


def _merge_whole(config: MergeConfiguration, seed: int | None) -> StateDict:
    """Merged weights through `run_merge` into a temporary directory (the slow, complete path)."""
    import tempfile

    from safetensors.torch import load_file

    from mergescope.models.parents import weight_files

    with tempfile.TemporaryDirectory(prefix="mergescope-") as scratch:
        _run_merge(config, Path(scratch) / "model", seed)
        state: StateDict = {}
        for file in weight_files(Path(scratch) / "model"):
            state.update(load_file(str(file)))
        return state


def _run_merge(config: MergeConfiguration, directory: Path, seed: int | None) -> None:
    from mergekit.merge import run_merge

    _quiet_mergekit_logs()
    run_merge(config.model_copy(deep=True), str(directory), _options(seed))


def _quiet_mergekit_logs() -> None:
    logging.getLogger("mergekit").setLevel(logging.WARNING)


def merge_file(source: str, out_dir: Path, run: Path | None = None) -> Path:
    """`out_dir`, the loadable model directory of a mergekit YAML (or of candidate `source` of `run`)."""
    candidate = find_candidate(run, source) if run else from_mergekit_yaml(Path(source))
    return write_merge(candidate, Path(out_dir))
