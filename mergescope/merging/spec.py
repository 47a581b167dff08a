"""Sweep specs: strict pydantic models of the YAML under `sweeps/` (shipped in this package), and their loader.

A parameter value in a spec is one of
  - a fixed value mergekit understands: a number, a per-layer gradient `[0, 0.5, 1]`, or per-tensor
    filters `[{filter: self_attn, value: [...]}, {value: 0.5}]`;
  - a sweep over such values: `{grid: [v1, v2, ...]}` or `{start: 0, stop: 1, num: 5}`.
Only sweeps multiply candidates; everything else is copied into the mergekit config as written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from mergescope.errors import ConfigError
from mergescope.shipped import resolve_shipped, shipped_folder

SWEEPS_DIR = shipped_folder("mergescope.merging", "sweeps")
DEFAULT_SWEEP = SWEEPS_DIR / "default.yaml"

# Which input acts as mergekit's `base_model` for a method block.
BaseChoice = Literal["auto", "base", "first_parent", "second_parent"]
# The dtypes models are merged and served in (`dtype` of a spec, `--dtype`).
Dtype = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(Dtype)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Grid(Strict):
    """An explicit list of values to sweep."""

    grid: list[Any] = Field(min_length=1)

    def values(self) -> list[Any]:
        return list(self.grid)


class Span(Strict):
    """`num` evenly spaced values from `start` to `stop`, both included."""

    start: float
    stop: float
    num: int = Field(ge=1, le=1000)

    def values(self) -> list[Any]:
        return [round(float(v), 10) for v in np.linspace(self.start, self.stop, self.num)]


def as_sweep(value: Any) -> Grid | Span | None:
    """The sweep a raw parameter value asks for, or None when it is a fixed value."""
    if isinstance(value, dict) and "grid" in value:
        return Grid.model_validate(value)
    if isinstance(value, dict) and {"start", "stop"} <= set(value):
        return Span.model_validate(value)
    return None


class MethodBlock(Strict):
    """One merge method and the grid of its parameters."""

    method: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    # One mapping per parent (in the order parents are given), or one mapping applied to every parent (a sweep
    # in it is then one axis: every parent takes the same value at each point).
    per_parent: list[dict[str, Any]] | dict[str, Any] | None = None
    base_model: BaseChoice = "auto"
    # Random methods (DARE, DELLA) are merged once per seed; deterministic ones ignore seeds.
    seeds: list[int] | None = None
    label: str | None = None

    @field_validator("parameters", "per_parent")
    @classmethod
    def _sweeps_parse(cls, value: Any) -> Any:
        mappings = value if isinstance(value, list) else [value or {}]
        for mapping in mappings:
            for raw in mapping.values():
                as_sweep(raw)  # raises a located ValidationError for a malformed grid or span
        return value


class SweepSpec(Strict):
    """A whole sweep: optional parents and base, and the method blocks to expand."""

    name: str
    description: str = ""
    parents: list[str] | None = None
    base: str | None = None
    dtype: Dtype | None = None  # None: the parents' dtype (merging/dtype.py); --dtype overrides either
    methods: list[MethodBlock] = Field(default_factory=list)
    # Existing mergekit YAML files taken as candidates unchanged (paths relative to the spec file).
    mergekit_configs: list[str] = Field(default_factory=list)
    source: str | None = Field(default=None, exclude=True)


class EvalSettings(Strict):
    """How lm-eval prompts every subject of a run, named as lm-eval's own CLI names them.

    All but `batch_size` are part of a run's identity (`identity`): a resumed run must score its new subjects
    exactly as it scored the stored ones. The batch size only decides how many requests are computed at once.
    """

    num_fewshot: int | None = Field(default=None, ge=0)  # None: each task's own (0 where it sets none)
    apply_chat_template: bool | str = False  # True: the tokenizer's template; a name: that one of its templates
    fewshot_as_multiturn: bool = False  # None given: on exactly when a chat template is applied (lm-eval's CLI)
    system_instruction: str | None = None
    gen_kwargs: dict[str, Any] = Field(default_factory=dict)  # overrides of generating tasks' generation_kwargs
    batch_size: int | None = Field(default=None, ge=1)  # None: the backend's own

    @model_validator(mode="before")
    @classmethod
    def _multiturn_follows_the_template(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("fewshot_as_multiturn") is None:
            return {**values, "fewshot_as_multiturn": bool(values.get("apply_chat_template"))}
        return values

    @field_validator("gen_kwargs", mode="before")
    @classmethod
    def _parse_gen_kwargs(cls, value: Any) -> Any:
        """lm-eval's `key=value,key=value` (values read as Python literals) or a JSON object."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            try:
                return json.loads(value)
            except ValueError as error:
                raise ValueError(f"not a JSON object ({error})") from None
        return _key_value_pairs(value)

    @field_validator("gen_kwargs", mode="after")
    @classmethod
    def _check_generation_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The generation options lm-eval and the backends read must have their type; others pass on as given."""
        for key, given in value.items():
            kind = GENERATION_OPTION_KINDS.get(key)
            if kind and not _is_kind(given, kind):
                raise ValueError(f"{key}={given!r} is not {kind}")
            if kind == "a number" and given < 0 or key == "max_gen_toks" and given < 1:
                raise ValueError(f"{key}={given!r} is out of range")
        return value

    @model_validator(mode="after")
    def _multiturn_needs_a_template(self) -> EvalSettings:
        if self.fewshot_as_multiturn and not self.apply_chat_template:  # lm-eval's CLI refuses it too
            raise ValueError("--fewshot-as-multiturn needs --apply-chat-template")
        return self

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the stored ones."""
        return self.model_dump(mode="json", exclude={"batch_size"})

    def describe(self) -> str:
        """The identity settings as the flags that give them ("lm-eval's defaults" when none differ)."""
        flags = []
        for key, value in self.identity().items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif value not in (None, False, {}):
                text = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
                flags.append(f"{flag} {text!r}" if isinstance(text, str) else f"{flag} {text}")
        return " ".join(flags) or "lm-eval's defaults"


# The generation options lm-eval and our backends read themselves, and what each takes.
GENERATION_OPTION_KINDS: dict[str, str] = {
    "temperature": "a number",
    "top_p": "a number",
    "top_k": "an integer",
    "max_gen_toks": "an integer",
    "seed": "an integer",
    "do_sample": "true or false",
    "until": "a string or a list of strings",
}


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):  # an int to Python, but never a number of tokens or a temperature
        return kind == "true or false"
    return {
        "a number": isinstance(value, (int, float)),
        "an integer": isinstance(value, int),
        "a string or a list of strings": isinstance(value, str)
        or isinstance(value, list)
        and all(isinstance(v, str) for v in value),
    }.get(kind, False)


def _key_value_pairs(text: str) -> dict[str, Any]:
    """lm-eval's `key=value,key=value` with values read as Python literals; every pair needs a key and a value."""
    from lm_eval.utils import simple_parse_args_string

    pairs = [pair for pair in text.split(",") if pair.strip()]
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not (equals and key.strip() and value.strip()):
            raise ValueError(f"{pair.strip()!r} is not key=value")
    return simple_parse_args_string(",".join(pairs))


def eval_settings(**values: Any) -> EvalSettings:
    """Checked evaluation settings; a ConfigError names the flag and what it takes."""
    try:
        return EvalSettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:  # a field's problem: name its flag and the value given
            message = f"--{str(first['loc'][0]).replace('_', '-')} {first['input']}: {message}"
        raise ConfigError(
            message,
            hint="see `mergescope sweep --help`; the flags are lm-eval's (--num-fewshot 5, "
            "--gen-kwargs temperature=0,max_gen_toks=64)",
        ) from None


def _location(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def validation_message(error: ValidationError, source: str) -> str:
    """One line naming the file, the key and the problem of the first validation error."""
    first = error.errors()[0]
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {_location(first)}: {first['msg']}{suffix}"


def load_yaml(path: Path) -> Any:
    """The parsed YAML document at `path`, or a ConfigError naming the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found", hint="give the path of an existing YAML file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None


def find_sweep(name_or_path: Path | str, what: str = "sweep spec") -> Path:
    """The file a `--sweep` (or `--space`) value means: the user's file, else a shipped one (shipped.py's rule)."""
    return resolve_shipped(name_or_path, SWEEPS_DIR, what)


def load_sweep(path: Path | str | None = None) -> SweepSpec:
    """The validated sweep spec at `path`, a file or a shipped spec's name (default: the shipped `default`)."""
    path = find_sweep(path) if path else DEFAULT_SWEEP
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep spec must be a YAML mapping with a 'methods' list")
    try:
        spec = SweepSpec.model_validate({**raw, "source": str(path)})
    except ValidationError as error:
        raise ConfigError(validation_message(error, str(path))) from None
    if not spec.methods and not spec.mergekit_configs:
        raise ConfigError(f"{path}: methods: the spec lists no method block and no mergekit config")
    return spec
