"""Candidates -> merged weights, through mergekit's own planner and merge kernels (never a home-made merge).

The fast path (`Merger`) plans each candidate with mergekit's `MergePlanner` (so gradients, filters, slices and
per-input parameters resolve per tensor exactly as `mergekit-yaml` resolves them) and runs mergekit's `Executor`
on that plan with every tensor load answered from parent tensors read once per sweep (`ParentTensors`). The
schedule is the one `mergekit-yaml` builds, so seeded DARE/DELLA draw their masks in the same order and match it
bit for bit. Configs that need more than weights (a tokenizer merge, LoRA inputs) go through `run_merge` whole.

A merged directory appears under its final name only once it is complete: it is written into a temporary
sibling that is renamed at the end, so an interrupted merge is never mistaken for a finished one.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from safetensors import SafetensorError

from mergescope.candidates import from_mergekit_yaml, validate_with_mergekit
from mergescope.errors import MergescopeError
from mergescope.faults import kill_point
from mergescope.records import Candidate
from mergescope.run_dir import PARTIAL_SUFFIX, find_candidate

if TYPE_CHECKING:
    import torch
    from mergekit.config import MergeConfiguration

# Write failures (disk full, file too large, read-only, I/O): a merge that hits one is never kept.
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}
StateDict = dict[str, "torch.Tensor"]


def merged_dir(merges_root: Path, candidate: Candidate) -> Path:
    """Where the candidate's finished model directory lives."""
    return merges_root / candidate.id


def is_merged(merges_root: Path, candidate: Candidate) -> bool:
    """Whether a finished merge of this candidate exists (a cache hit)."""
    return (merged_dir(merges_root, candidate) / "config.json").is_file()


def merge_to_disk(candidate: Candidate, merges_root: Path, *, merger: Merger | None = None) -> Path:
    """The finished model directory of `candidate` under `merges_root`, merged now unless cached."""
    target = merged_dir(merges_root, candidate)
    if is_merged(merges_root, candidate):
        return target
    return (merger or Merger()).write(candidate, target)


class ParentTensors:
    """Every tensor of each input model, read from its safetensors files once and shared by all candidates."""

    def __init__(self) -> None:
        self._models: dict[str, StateDict] = {}

    def of(self, model_path: str) -> StateDict:
        """The tensors of the model directory at `model_path` (read on first use)."""
        if model_path not in self._models:
            from safetensors.torch import load_file

            from mergescope.parents import weight_files

            tensors: StateDict = {}
            for file in weight_files(Path(model_path)):
                tensors.update(load_file(str(file)))
            self._models[model_path] = tensors
        return self._models[model_path]

    def __len__(self) -> int:
        return len(self._models)


class Merger:
    """Merges candidates in this process, reusing parent tensors; create one per sweep.

    Results are cached by candidate id (the last `cache_size` merges). Returned tensors may share storage
    with the parents' tensors or with each other: treat them as read-only.
    """

    def __init__(self, cache_size: int = 2) -> None:
        self.parents = ParentTensors()
        self.cache_size = cache_size
        self._merged: OrderedDict[str, StateDict] = OrderedDict()

    def merge(self, candidate: Candidate) -> StateDict:
        """The merged weights of `candidate` (in memory, no model directory written)."""
        if candidate.id in self._merged:
            self._merged.move_to_end(candidate.id)
            return self._merged[candidate.id]
        config = validate_with_mergekit(candidate)
        state = _merge_whole(config, candidate.seed) if needs_full_merge(config) else self._merge_fast(config, candidate.seed)
        self._merged[candidate.id] = state
        while len(self._merged) > self.cache_size:
            self._merged.popitem(last=False)
        return state

    def write(self, candidate: Candidate, target: Path) -> Path:
        """`target`, a loadable model directory of the merged candidate (safetensors, config, tokenizer), written atomically."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}{PARTIAL_SUFFIX}-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        config = validate_with_mergekit(candidate)
        try:
            if needs_full_merge(config):
                _run_merge(config, partial, candidate.seed)
            else:
                _write_model_dir(self.merge(candidate), config, partial, yaml.safe_dump(candidate.mergekit_config, sort_keys=False))
            kill_point("merge.before_rename")
            if target.exists():
                shutil.rmtree(target)
            os.replace(partial, target)
            kill_point("merge.renamed")
        except (OSError, SafetensorError) as error:  # safetensors reports a failed write as SafetensorError
            reason = getattr(error, "strerror", None) or " ".join(str(error).split())
            raise MergescopeError(f"merging {candidate.label} failed writing {partial}: {reason}",
                                  hint="free disk space or choose another output directory") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def _merge_fast(self, config: MergeConfiguration, seed: int | None) -> StateDict:
        from mergekit.common import dtype_from_name
        from mergekit.graph import Executor, TaskUniverse
        from mergekit.io.tasks import LoadTensor

        _quiet_mergekit_logs()
        saves = planned_saves(config, seed)
        universe = TaskUniverse([save.tensor_task for save in saves])
        loaded = {}
        for task in universe.tasks:
            if isinstance(task, LoadTensor) and (tensor := self._load(task)) is not None:
                loaded[universe.get_handle(task)] = tensor
        executor = Executor([universe.get_handle(save.tensor_task) for save in saves], cached_values=loaded)
        if seed is not None:  # as run_merge does, right before the graph runs, so masks match mergekit-yaml's
            from transformers.trainer_utils import set_seed

            set_seed(seed)
        merged = dict(executor.run(quiet=True))
        return {save.tensor_name: merged[save.tensor_task].to(dtype_from_name(save.dtype)) if save.dtype
                else merged[save.tensor_task] for save in saves if merged[save.tensor_task] is not None}

    def _load(self, task) -> torch.Tensor | None:
        """What mergekit's LoadTensor task would load, from the cached parent tensors (None: let it load)."""
        from mergekit.common import dtype_from_name

        tensors = self.parents.of(task.model.model.path)
        names = [task.tensor, *(task.aliases or ()), *(task.tied_names or ())]
        name = next((n for n in names if n in tensors), None)
        if name is None:
            return None
        tensor = tensors[name]
        return tensor.to(dtype=dtype_from_name(task.dtype)) if task.dtype else tensor


def needs_full_merge(config: MergeConfiguration) -> bool:
    """Whether the config needs more of `run_merge` than merged weights (a merged tokenizer, LoRA inputs)."""
    return bool(config.tokenizer_source or config.tokenizer or config.chat_template
                or any(model.lora for model in config.referenced_models()))


def planned_saves(config: MergeConfiguration, seed: int | None = None) -> list:
    """The SaveTensor tasks of mergekit's own plan for `config`: every output tensor as mergekit-yaml merges it."""
    from mergekit.io.tasks import LoaderCache, SaveTensor
    from mergekit.plan import MergePlanner

    options = _options(seed)
    LoaderCache().setup(options=options)
    architecture = _architecture(config)
    planner = MergePlanner(config, architecture, options=options, out_model_config=_out_config(config, architecture))
    # plan_in_memory() fails pydantic validation in mergekit 0.1.5, so take the tasks of the disk plan (planning
    # writes nothing) and never execute its writer.
    return [task for task in planner.plan_to_disk(out_path="") if isinstance(task, SaveTensor)]


def _options(seed: int | None):
    from mergekit.options import MergeOptions

    return MergeOptions(random_seed=seed, quiet=True, write_model_card=True, copy_tokenizer=True)


def _architecture(config: MergeConfiguration):
    from mergekit.architecture import get_architecture_info

    return get_architecture_info(config, _options(None))


def _out_config(config: MergeConfiguration, architecture=None):
    # mergekit's own output config (layer counts of slices, dtype); private but pinned by mergekit==0.1.5.
    from mergekit.merge import _model_out_config

    return _model_out_config(config, architecture or _architecture(config), trust_remote_code=False)


def _write_model_dir(state: StateDict, config: MergeConfiguration, directory: Path, config_yaml: str) -> None:
    """Write weights, config, tokenizer and the mergekit config that made them, as `mergekit-yaml` does."""
    from mergekit.merge import _copy_tokenizer
    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    kill_point("merge.partial_created")
    save_file(_unshared(state), str(directory / "model.safetensors"), metadata={"format": "pt"})
    kill_point("merge.weights_written")
    _out_config(config).save_pretrained(str(directory))
    try:
        _copy_tokenizer(config, str(directory), _options(None))
    except (OSError, ValueError) as error:  # run_merge also keeps a merge whose donor has no usable tokenizer
        if getattr(error, "errno", None) in WRITE_ERRNOS:
            raise
        logging.getLogger(__name__).warning("no tokenizer copied into %s: %s", directory, error)
    (directory / "mergekit_config.yml").write_text(config_yaml)


def _unshared(state: StateDict) -> StateDict:
    """The state with tensors that share storage copied apart (safetensors refuses shared storage)."""
    seen: set[int] = set()
    result = {}
    for name, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        result[name] = tensor.clone().contiguous() if pointer in seen else tensor.contiguous()
        seen.add(pointer)
    return result


def _merge_whole(config: MergeConfiguration, seed: int | None) -> StateDict:
    """Merged weights through `run_merge` into a temporary directory (the slow, complete path)."""
    import tempfile

    from safetensors.torch import load_file

    from mergescope.parents import weight_files

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
    return Merger().write(candidate, Path(out_dir))
