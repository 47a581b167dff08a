"""Expand a sweep spec over a parent set into merge candidates, each a plain mergekit config."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mergescope.errors import ConfigError, did_you_mean
from mergescope.merging.dtype import parents_dtype
from mergescope.merging.spec import MethodBlock, SweepSpec, as_sweep, load_sweep, load_yaml
from mergescope.models import hub
from mergescope.runs.records import Candidate, ParentSet

# Allowed values of parameters whose range mergekit does not check itself: (low, high, low_open).
PARAMETER_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "t": (0.0, 1.0, False),
    "density": (0.0, 1.0, True),
    "epsilon": (0.0, 1.0, False),
    "gamma": (0.0, 1.0, False),
    "select_topk": (0.0, 1.0, True),
}
# Keys under which a mergekit config names a model (models[], slices[].sources[], the top level, a tokenizer).
MODEL_KEYS = ("model", "base_model", "tokenizer_source", "source")


def merge_method(name: str, where: str = ""):
    """mergekit's registered method of this name, or a ConfigError (prefixed by `where`) suggesting close names."""
    from mergekit.merge_methods import registered_methods

    methods = {m.spec.name: m for m in registered_methods()}
    if name not in methods:
        location = f"{where}: " if where else ""
        raise ConfigError(f"{location}unknown merge method {name!r}", hint=did_you_mean(name, set(methods)))
    return methods[name]


def is_random(method) -> bool:
    """Whether the method samples (DARE, DELLA), so that its seed changes the result."""
    sparsification = getattr(method, "sparsification_method", None)
    return sparsification is not None and sparsification.value in {"random", "della_magprune"}


def expand(spec: SweepSpec, parents: ParentSet) -> list[Candidate]:
    """Every distinct candidate of the spec, in spec order; identical merges collapse to one id."""
    unique: dict[str, Candidate] = {}
    for index in range(len(spec.methods)):
        for candidate in block_candidates(spec, index, parents):
            unique.setdefault(candidate.id, candidate)
    for relative in spec.mergekit_configs:
        candidate = from_mergekit_yaml(_relative_to(spec, relative))
        unique.setdefault(candidate.id, candidate)
    return list(unique.values())


def block_candidates(spec: SweepSpec, index: int, parents: ParentSet) -> list[Candidate]:
    """The candidates of the spec's method block number `index`; errors name the spec file and the block."""
    where = f"{spec.source or spec.name}: methods.{index}"
    return list(_expand_block(spec.methods[index], parents, spec.dtype or parents_dtype(parents), where))


def _relative_to(spec: SweepSpec, path: str) -> Path:
    return (Path(spec.source).parent / path) if spec.source else Path(path)


def _expand_block(block: MethodBlock, parents: ParentSet, dtype: str, where: str) -> Iterator[Candidate]:
    method = merge_method(block.method, f"{where}.method")
    base_path = _base_model(block, method, parents, where)
    _check_inputs(method, parents, base_path, where)
    per_parent = _per_parent(block, len(parents.parents), where)
    _check_parameter_names(method, block.parameters, per_parent, where)
    axes = _sweep_axes(block, per_parent)
    seeds: list[int | None] = list(block.seeds or [0]) if is_random(method) else [None]
    for point in itertools.product(*[values for _, values in axes]):
        chosen = {key: value for (key, _), value in zip(axes, point, strict=True)}
        shared = {k: chosen.get(("shared", k), v) for k, v in block.parameters.items()}
        inputs = [
            {k: chosen.get((i, k), chosen.get(("each", k), v)) for k, v in p.items()} for i, p in enumerate(per_parent)
        ]
        _check_bounds(shared, inputs, where)
        config = _mergekit_config(block.method, parents, base_path, shared, inputs, dtype)
        for seed in seeds:
            yield _candidate(config, block, chosen, seed, parents, base_path)


def _base_model(block: MethodBlock, method, parents: ParentSet, where: str) -> Path | None:
    from mergekit.merge_methods.base import BasePolicy

    contract = method.spec.contract
    choice = block.base_model
    if choice == "auto":
        two_way = contract.min_inputs == 2 and contract.max_inputs == 2
        if contract.base == BasePolicy.REQUIRED:
            choice = "first_parent" if two_way else "base"
        elif contract.base == BasePolicy.OPTIONAL and parents.base:
            choice = "base"
        else:
            return None
    if choice == "base":
        if parents.base is None:
            raise ConfigError(
                f"{where}: method {block.method!r} needs a base model and none was given",
                hint="pass --base BASE (the model both parents were fine-tuned from)",
            )
        return parents.base.path
    return parents.parents[0 if choice == "first_parent" else 1].path


def _check_inputs(method, parents: ParentSet, base_path: Path | None, where: str) -> None:
    """mergekit's own input contract (how many inputs, base or not), checked before anything is merged."""
    inputs = [p.path for p in parents.parents]
    if base_path is not None and base_path not in inputs:
        inputs.append(base_path)
    try:
        method.validate_inputs(inputs, base_path)
    except ValueError as error:
        raise ConfigError(
            f"{where}: method {method.spec.name!r} cannot merge these models: {error}",
            hint="see base_model (auto, base, first_parent, second_parent) and the parents given",
        ) from None


def _check_parameter_names(method, shared: dict[str, Any], per_parent: list[dict[str, Any]], where: str) -> None:
    """Unknown names (mergekit would ignore a typo silently) and missing required parameters."""
    spec = method.spec
    known = {p.name for p in spec.parameters}
    for scope, mapping in [("parameters", shared), *[(f"per_parent.{i}", m) for i, m in enumerate(per_parent)]]:
        for key in mapping:
            if key not in known:
                raise ConfigError(
                    f"{where}.{scope}.{key}: {spec.name} has no parameter {key!r}",
                    hint=did_you_mean(key, known) if known else f"{spec.name} takes no parameters",
                )
    for parameter in spec.parameters:
        per_input = parameter.name in shared or all(parameter.name in m for m in per_parent)
        if parameter.required and not per_input:
            scope = "parameters" if parameter.scope.value == "shared" else "per_parent"
            raise ConfigError(
                f"{where}.{scope}: {spec.name} needs {parameter.name!r}",
                hint=f"set {parameter.name} under {scope}" + ("" if scope == "parameters" else " (or parameters)"),
            )


def _per_parent(block: MethodBlock, n_parents: int, where: str) -> list[dict[str, Any]]:
    if block.per_parent is None:
        return [{} for _ in range(n_parents)]
    if isinstance(block.per_parent, dict):
        return [dict(block.per_parent) for _ in range(n_parents)]
    if len(block.per_parent) != n_parents:
        raise ConfigError(
            f"{where}.per_parent: {len(block.per_parent)} entries for {n_parents} parents",
            hint="give one mapping per parent, or a single mapping for all",
        )
    return [dict(p) for p in block.per_parent]


def _sweep_axes(block: MethodBlock, per_parent: list[dict[str, Any]]) -> list[tuple[tuple, list]]:
    """The swept keys and their values; a sweep in a single `per_parent` mapping is one axis for all parents."""
    axes: list[tuple[tuple, list]] = [
        (("shared", k), sweep.values()) for k, v in block.parameters.items() if (sweep := as_sweep(v))
    ]
    if isinstance(block.per_parent, dict):
        return axes + [(("each", k), sweep.values()) for k, v in block.per_parent.items() if (sweep := as_sweep(v))]
    for i, mapping in enumerate(per_parent):
        axes += [((i, k), sweep.values()) for k, v in mapping.items() if (sweep := as_sweep(v))]
    return axes


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, dict):
        yield from _numbers(value.get("value"))


def _check_bounds(shared: dict[str, Any], inputs: list[dict[str, Any]], where: str) -> None:
    for scope, mapping in [("parameters", shared), *[(f"per_parent.{i}", m) for i, m in enumerate(inputs)]]:
        for key, value in mapping.items():
            for number in _numbers(value):
                if not math.isfinite(number):
                    raise ConfigError(f"{where}.{scope}.{key}: {number} is not a finite number")
                if key in PARAMETER_BOUNDS:
                    low, high, low_open = PARAMETER_BOUNDS[key]
                    if number > high or number < low or (low_open and number == low):
                        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
                        raise ConfigError(f"{where}.{scope}.{key}: {number:g} is outside {interval}")


def _mergekit_config(
    method: str,
    parents: ParentSet,
    base_path: Path | None,
    shared: dict[str, Any],
    inputs: list[dict[str, Any]],
    dtype: str,
) -> dict[str, Any]:
    models = [
        {"model": str(p.path), **({"parameters": params} if params else {})}
        for p, params in zip(parents.parents, inputs, strict=True)
    ]
    config: dict[str, Any] = {"merge_method": method, "models": models, "dtype": dtype}
    if base_path is not None:
        config["base_model"] = str(base_path)
    if shared:
        config["parameters"] = shared
    return config


def config_id(config: dict[str, Any], seed: int | None) -> str:
    """A stable content hash of a normalised mergekit config and its seed."""
    canonical = json.dumps({"config": _normalised(config), "seed": seed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _normalised(value: Any) -> Any:
    """The value with every number as a float, so that `t: 1` and `t: 1.0` hash alike."""
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _candidate(
    config: dict, block: MethodBlock, chosen: dict, seed: int | None, parents: ParentSet, base_path
) -> Candidate:
    swept = {
        (k if scope in ("shared", "each") else f"{k}[{parents.parents[scope].name}]"): v
        for (scope, k), v in chosen.items()
    }
    label_parts = [block.label or block.method] + [f"{k}={_short(v)}" for k, v in swept.items()]
    if seed is not None:
        label_parts.append(f"seed={seed}")
    return Candidate(
        id=config_id(config, seed),
        method=block.method,
        label=" ".join(label_parts),
        mergekit_config=config,
        parameters=swept,
        seed=seed,
        mix=_mix(config, parents, base_path),
    )


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value, separators=(",", ":"))


def _mix(config: dict[str, Any], parents: ParentSet, base_path: Path | None) -> float | None:
    """The second parent's share where the merge interpolates exactly two parents, else None."""
    if len(parents.parents) != 2:
        return None
    t = config.get("parameters", {}).get("t")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and base_path in {p.path for p in parents.parents}:
        return float(t) if base_path == parents.parents[0].path else 1.0 - float(t)
    weights = [m.get("parameters", {}).get("weight") for m in config["models"]]
    if config["merge_method"] == "linear" and all(isinstance(w, (int, float)) for w in weights) and sum(weights) > 0:
        return float(weights[1]) / float(sum(weights))
    return None


def validate_with_mergekit(candidate: Candidate):
    """mergekit's own validated `MergeConfiguration` of the candidate; ConfigError if mergekit rejects it."""
    from mergekit.config import MergeConfiguration

    try:
        return MergeConfiguration.model_validate(candidate.mergekit_config)
    except (ValidationError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"candidate {candidate.label}: mergekit rejects its config: {str(error).splitlines()[0]}"
        ) from None


def from_mergekit_yaml(path: Path) -> Candidate:
    """A candidate taken from an existing mergekit YAML file, unchanged but for the hub ids it names as models:
    those become their snapshot folders (whose names are the commits), so that mergekit reads them offline."""
    config = load_yaml(path)
    if not isinstance(config, dict) or "merge_method" not in config:
        raise ConfigError(f"{path}: not a mergekit config (no merge_method)")
    config = _with_local_models(config)
    # A random method taken from a file is seeded too (seed 0, `mergekit-yaml --random-seed 0`): reproducible.
    seed = 0 if is_random(merge_method(config["merge_method"], f"{path}: merge_method")) else None
    candidate = Candidate(
        id=config_id(config, seed), method=config["merge_method"], label=path.stem, mergekit_config=config, seed=seed
    )
    validate_with_mergekit(candidate)
    return candidate


def _with_local_models(value: Any) -> Any:
    """The mergekit config (or part) `value` with every hub id it names as a model replaced by its snapshot folder."""
    if isinstance(value, list):
        return [_with_local_models(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: str(hub.local_path(item))
        if key in MODEL_KEYS and isinstance(item, str) and hub.is_hub_id(item)
        else _with_local_models(item)
        for key, item in value.items()
    }


def to_mergekit_yaml(candidate: Candidate) -> str:
    """The candidate's config as a YAML document that `mergekit-yaml` accepts unchanged."""
    return yaml.safe_dump(candidate.mergekit_config, sort_keys=False)


def export_candidates(candidates: list[Candidate], directory: Path) -> tuple[Path, ...]:
    """One plain mergekit YAML per candidate in `directory` (named by id); returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for candidate in candidates:
        path = directory / f"{candidate.id}.yaml"
        # mergekit takes the seed on its command line, not in the YAML: say which one reproduces the candidate.
        seed = f" --random-seed {candidate.seed}" if candidate.seed is not None else ""
        header = (
            f"# mergescope candidate {candidate.id}: {candidate.label}\n# mergekit-yaml {path.name} OUT_DIR{seed}\n"
        )
        path.write_text(header + to_mergekit_yaml(candidate))
        written.append(path)
    return tuple(written)


@dataclass(frozen=True)
class CandidatePlan:
    """What a sweep spec expands to over a parent set, and where its candidates were exported (if asked)."""

    spec: str
    parents: ParentSet
    candidates: tuple[Candidate, ...]
    exported: tuple[Path, ...] = ()

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready mapping per candidate."""
        files: list[str | None] = [str(p) for p in self.exported] or [None] * len(self.candidates)
        return [
            {"id": c.id, "method": c.method, "label": c.label, "parameters": c.parameters, "seed": c.seed, "file": file}
            for c, file in zip(self.candidates, files, strict=True)
        ]


def plan_candidates(
    spec_path: Path | None, parents: list[str], base: str | None = None, export: Path | None = None
) -> CandidatePlan:
    """The checked candidates of a sweep spec over these parents, exported as mergekit YAMLs to `export`."""
    from mergescope.models.parents import resolve_parents

    spec = load_sweep(spec_path)
    parent_set = resolve_parents(parents or spec.parents or [], base or spec.base)
    candidates = expand(spec, parent_set)
    for candidate in candidates:
        validate_with_mergekit(candidate)
    exported = export_candidates(candidates, export) if export else ()
    return CandidatePlan(
        spec=spec.source or spec.name, parents=parent_set, candidates=tuple(candidates), exported=exported
    )
