"""Search spaces: sweep specs whose parameter values are ranges to search instead of grids to enumerate.

A space file looks like a sweep spec with `space:` in place of `methods:`; each block is a `MethodBlock`
whose values may hold, anywhere a number goes (a scalar, a per-layer gradient point, a filter's value):
  - a range `{low: 0, high: 1}` (optionally `step: 0.1` or `log: true`): a number searched in [low, high];
  - a grid `{grid: [a, b, c]}` or a span `{start, stop, num}`: a categorical choice among its values.
With several blocks the method itself is a categorical parameter, `method`, over the blocks' keys (their
labels, else their method names). A trial fills every range with a sampled value, which gives a plain method
block: `trial_block` hands it to the sweep's expansion, so a trial is an ordinary candidate with an ordinary id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from mergescope.errors import ConfigError, MergescopeError
from mergescope.merging.spec import Grid, MethodBlock, Span, Strict, SweepSpec, as_sweep, find_sweep, load_yaml

METHOD_PARAMETER = "method"  # the categorical parameter that picks a block, in a space of several


class Range(Strict):
    """A number searched in [low, high], on a log scale or a grid of `step` if asked."""

    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"range low {self.low:g} > high {self.high:g}: swap them")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        return self


def as_search_leaf(value: Any) -> Range | Grid | Span | None:
    """The range or choice a raw value asks for, or None when it is fixed (ValidationError when malformed)."""
    if isinstance(value, dict) and {"low", "high"} & set(value):
        return Range.model_validate(value)
    return as_sweep(value)


class SearchSpace(Strict):
    """A whole space: the method blocks whose ranges a search samples."""

    name: str
    description: str = ""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    space: list[MethodBlock] = Field(min_length=1)
    source: str | None = Field(default=None, exclude=True)

    def block_key(self, index: int) -> str:
        block = self.space[index]
        return block.label or block.method

    def digest(self) -> str:
        """A content hash of the space as validated: a resumed search must search the same one."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def as_sweep_spec(self) -> SweepSpec:
        """The space as the sweep spec a run's provenance records (its blocks hold the ranges as written)."""
        return SweepSpec(
            name=self.name, description=self.description, dtype=self.dtype, methods=self.space, source=self.source
        )


# -- the leaves of a block: where the ranges are, and their names --------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One searched value of a block: its parameter name (as Optuna and the report name it) and its distribution."""

    name: str
    where: str  # its location in the file, for error messages
    distribution: Range | Grid | Span


def _walk(value: Any, name: str, where: str) -> Iterator[tuple[str, str, Any]]:
    """(name, location, raw value) of every range or choice inside `value`, depth first."""
    if isinstance(value, dict) and ({"low", "high"} & set(value) or as_sweep_keys(value)):
        yield name, where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "filter":  # a filter's value is named by the filter (below), not by the key "value"
                yield from _walk(item, name if key == "value" else f"{name}.{key}", f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            token = (item.get("filter") or "rest") if isinstance(item, dict) and "value" in item else str(index)
            yield from _walk(item, f"{name}[{token}]", f"{where}.{index}")


def as_sweep_keys(value: dict) -> bool:
    return "grid" in value or {"start", "stop"} <= set(value)


def _raw_leaves(block: MethodBlock) -> Iterator[tuple[str, str, Any]]:
    for key, value in block.parameters.items():
        yield from _walk(value, key, f"parameters.{key}")
    if isinstance(block.per_parent, dict):
        for key, value in block.per_parent.items():
            yield from _walk(value, key, f"per_parent.{key}")
    elif block.per_parent:
        for index, mapping in enumerate(block.per_parent):
            for key, value in mapping.items():
                yield from _walk(value, f"{key}@{index}", f"per_parent.{index}.{key}")


def block_leaves(space: SearchSpace, index: int) -> list[Leaf]:
    """The searched values of block `index`, named `KEY/NAME` in a space of several blocks; ValidationError if
    malformed."""
    prefix = f"{space.block_key(index)}/" if len(space.space) > 1 else ""
    return [Leaf(prefix + name, where, _searched(raw)) for name, where, raw in _raw_leaves(space.space[index])]


def filled_block(block: MethodBlock, pick: Callable[[str, Any], Any]) -> MethodBlock:
    """The block with every range or choice replaced by `pick(location, raw value)`: a plain, fixed method block."""

    def fill(value: Any, where: str) -> Any:
        if isinstance(value, dict) and ({"low", "high"} & set(value) or as_sweep_keys(value)):
            return pick(where, value)
        if isinstance(value, dict):
            return {key: fill(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item, f"{where}.{index}") for index, item in enumerate(value)]
        return value

    per_parent = block.per_parent
    if isinstance(per_parent, dict):
        per_parent = fill(per_parent, "per_parent")
    elif per_parent:
        per_parent = [fill(mapping, f"per_parent.{index}") for index, mapping in enumerate(per_parent)]
    return block.model_copy(update={"parameters": fill(block.parameters, "parameters"), "per_parent": per_parent})


# -- loading and validation -----------------------------------------------------------------------------------


def space_problems(path: Path) -> list[str]:
    """Every problem of a space file: schema errors, malformed ranges, and each block's corners expanded by the
    sweep."""
    try:
        raw = load_yaml(path)
    except MergescopeError as error:
        return [error.one_line()]
    if not isinstance(raw, dict):
        return [f"{path}: a search space must be a YAML mapping with a 'space' list of method blocks"]
    try:
        space = SearchSpace.model_validate({**raw, "source": str(path)})
    except ValidationError as error:
        return [f"{path}: {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in error.errors()]
    problems = _key_problems(space, path)
    for index in range(len(space.space)):
        problems += _block_problems(space, index, path)
    if not problems and len(space.space) == 1 and not block_leaves(space, 0):
        problems.append(
            f"{path}: space.0: no range ({{low, high}}) or choice ({{grid: [...]}}) anywhere, so there "
            "is nothing to search (a fixed merge belongs in a sweep spec)"
        )
    return problems


def _key_problems(space: SearchSpace, path: Path) -> list[str]:
    keys = [space.block_key(i) for i in range(len(space.space))]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    return [f"{path}: space: two blocks are called {key!r}: give each a distinct label" for key in repeated]


def _block_problems(space: SearchSpace, index: int, path: Path) -> list[str]:
    """The block's malformed ranges, then the sweep's own checks of the block at its lowest and highest corners."""
    from mergescope.merging.candidates import block_candidates, validate_with_mergekit
    from mergescope.runs.records import stand_in_parents

    block, where = space.space[index], f"{path}: space.{index}"
    problems = []
    for _name, location, raw in _raw_leaves(block):
        try:
            as_search_leaf(raw)
        except ValidationError as error:
            problems += [
                f"{where}.{'.'.join([location, *map(str, e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()
            ]
    if block.seeds is not None and len(block.seeds) > 1:
        problems.append(f"{where}.seeds: a trial is one merge, so a search takes at most one seed per block")
    if problems:
        return problems
    for corner in (_lowest, _highest):
        spec = SweepSpec(name=space.name, dtype=space.dtype, methods=[filled_block(block, corner)], source=str(path))
        try:
            for candidate in block_candidates(spec, 0, stand_in_parents(2)):
                validate_with_mergekit(candidate)
        except MergescopeError as error:
            return [error.one_line().replace(f"{path}: methods.0", where, 1)]
    return []


def _searched(raw: Any) -> Range | Grid | Span:
    """The range or choice of a raw value `_raw_leaves` yielded (so one that is searched, not fixed)."""
    leaf = as_search_leaf(raw)
    if leaf is None:
        raise ValueError(f"{raw!r} is a fixed value, not a range or a choice")
    return leaf


def _lowest(_: str, raw: Any) -> Any:
    leaf = _searched(raw)
    return leaf.low if isinstance(leaf, Range) else leaf.values()[0]


def _highest(_: str, raw: Any) -> Any:
    leaf = _searched(raw)
    return leaf.high if isinstance(leaf, Range) else leaf.values()[-1]


def load_space(path: Path | str) -> SearchSpace:
    """The validated search space at `path` (a file or a shipped space's name); a ConfigError naming its first
    problem (and how many more) if any."""
    path = find_sweep(path, "search space")
    problems = space_problems(path)
    if problems:
        more = f" (and {len(problems) - 1} more: see `mergescope validate {path}`)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, hint="see the README's Search section for the space format")
    return SearchSpace.model_validate({**load_yaml(path), "source": str(path)})
